"""A fall streamed by a device reaches the clinic's webhook, signed, once, within a second."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from ingest.registry import provision
from justwalk.alert_receiver import AlertReceiver, channels_for
from justwalk.gait.cadence import window_start
from justwalk.pipeline import Pipeline
from justwalk.schema import MEASUREMENT_ALERT, clinic_database, qualified
from justwalk.simulator.device import stream_samples
from sinks.influx import InfluxClient
from tests.test_end_to_end import _free_port
from tests.test_falls_detectors import fall_recording, walking

pytestmark = pytest.mark.integration


async def test_a_fall_reaches_the_clinic_webhook(stack_settings, tmp_path):
    receiver = AlertReceiver(secret=b"clinic-a-webhook-secret")
    await receiver.start()
    channels = tmp_path / "channels.json"
    channels.write_text(json.dumps(channels_for(receiver, ["clinic-a"])))
    settings = stack_settings.replace(device_registry=tmp_path / "devices.json",
                                      gateway_port=_free_port(), alert_channels=channels,
                                      alert_suppression_s=60.0)
    creds = provision(settings.device_registry, tmp_path / "creds.json",
                      [("dev-f", "pt-fall", "clinic-a"), ("dev-w", "pt-walk", "clinic-a")])
    pipeline = Pipeline(settings, log_dir=tmp_path / "logs", with_alerts=True)
    pipeline.start()  # from this thread: children die with the thread that started them
    try:
        fall, impact_s = fall_recording()
        start_us = window_start(time.time_ns() // 1000 - 30_000_000, 5_000_000)
        stats = await asyncio.gather(
            # the fall in real time, so latency is what a live patient would see
            stream_samples(pipeline.gateway_url, creds[0], fall.astype(np.float32),
                           start_us=start_us, sample_rate_hz=100.0, speed=1.0),
            stream_samples(pipeline.gateway_url, creds[1], walking(20.0).astype(np.float32),
                           start_us=start_us, sample_rate_hz=100.0, speed=0),
        )
        assert all(s.completed and not s.errors for s in stats)
        await receiver.wait_for(1, timeout_s=20)
        await asyncio.sleep(1.0)  # anything else (a duplicate, a false alarm) would show now
    finally:
        codes = await asyncio.to_thread(pipeline.stop)  # the receiver keeps answering
        await receiver.stop()
    assert codes == {"gateway": 0, "processor-0": 0, "sink": 0, "alerts": 0}, codes

    assert receiver.bad_signatures == 0
    assert len(receiver.received) == 1, [r.body for r in receiver.received]
    got = receiver.received[0]
    alert = got.alert
    assert (alert["type"], alert["severity"]) == ("fall", "critical")
    assert (alert["clinic_id"], alert["patient_id"]) == ("clinic-a", "pt-fall")
    assert abs(alert["evidence"]["peak_us"] - (start_us + impact_s * 1e6)) < 300_000
    # from the gateway receiving the chunk that completed the event to the clinic
    assert got.latency_s is not None and 0 < got.latency_s < 1.0, got.latency_s

    # the sink also wrote it to InfluxDB, for the dashboards' annotations
    async with InfluxClient(settings.influx_url,
                            clinic_database(settings.influx_db, "clinic-a")) as client:
        rows = await client.query_rows(
            f'SELECT * FROM {qualified(MEASUREMENT_ALERT)} GROUP BY "patient_id"', epoch="u")
    assert [(r["patient_id"], r["alert_id"]) for r in rows] == [("pt-fall", alert["alert_id"])]
    assert rows[0]["time"] == alert["event_start_us"]
