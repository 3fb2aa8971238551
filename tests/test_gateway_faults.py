"""Faults against the real gateway and broker: poison headers mid-stream, an upload flood.

Each test reads the chunk topic back: every acknowledged chunk is there exactly once, and
every chunk that is not was answered with a reason (or told to come back).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.gateway import create_app
from ingest.limits import DeviceLimits
from ingest.publisher import KafkaPublisher
from ingest.registry import DeviceRegistry, provision
from justwalk.config import Settings
from justwalk.device_protocol import (
    HEALTH_PATH,
    RETRYABLE_CODES,
    STREAM_PATH,
    UPLOAD_PATH,
    DeviceCredential,
    auth_headers,
)
from justwalk.kafka_topics import ensure_topics
from justwalk.simulator.device import DeviceStats, SimulatedDevice
from justwalk.wire import ImuChunk, Placement, decode_chunk, encode_chunk, frame_upload
from tests.test_gateway import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(120)]

FS = 100.0
N = 50
POISON_SEQ = 2**32 - 1
DEVICES = [(f"dev-{i}", f"ms-{i:04d}", "clinic-a") for i in range(5)]


def make_chunk(seq: int, start_us: int, *, device: str = "dev-0", patient: str = "ms-0000",
               session: str = "s1") -> ImuChunk:
    samples = np.zeros((N, 6), dtype=np.float32)
    samples[:, 0] = 9.81
    samples[:, 1] = seq / 100
    return ImuChunk(patient_id=patient, device_id=device, session_id=session, sequence=seq,
                    t0_us=start_us + seq * 500_000, sample_rate_hz=FS,
                    placement=Placement.LOWER_BACK, samples=samples)


def poisoned_stream(start_us: int) -> tuple[list[bytes], set[int]]:
    """60 chunks with the issue's two poison headers among them; (messages, poison indexes)."""
    chunks = [make_chunk(i, start_us) for i in range(60)]
    wild = dataclasses.replace(chunks[20], sequence=POISON_SEQ)
    ahead = dataclasses.replace(chunks[40], t0_us=chunks[40].t0_us + 250_000_000)
    messages = [encode_chunk(c) for c in chunks]
    messages.insert(40, encode_chunk(ahead))
    messages.insert(20, encode_chunk(wild))
    return messages, {20, 41}


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    settings: Settings
    credentials: dict[str, DeviceCredential]

    def headers(self, device: str) -> dict[str, str]:
        return auth_headers(self.credentials[device].token)


@contextlib.asynccontextmanager
async def gateway(settings: Settings, tmp_path: Path,
                  limits: DeviceLimits | None = None) -> AsyncIterator[Gateway]:
    credentials = provision(tmp_path / "devices.json", tmp_path / "creds.json", DEVICES)
    registry = DeviceRegistry.load(tmp_path / "devices.json")
    await ensure_topics(settings)
    async with KafkaPublisher(settings.kafka_bootstrap) as kafka:
        app = create_app(settings, kafka, registry, limits=limits)  # the real wall clock
        async with TestClient(TestServer(app)) as client:
            yield Gateway(client, settings, {c.device_id: c for c in credentials})


def stored(records: list[Any]) -> Counter[tuple[str, int]]:
    """How often each (patient, sequence) is in the chunk topic."""
    return Counter((decode_chunk(r.value).patient_id, decode_chunk(r.value).sequence)
                   for r in records)


async def test_poison_headers_mid_stream_cost_only_their_own_chunks(
    stack_settings: Settings, tmp_path: Path,
) -> None:
    start_us = time.time_ns() // 1000 - 120_000_000
    messages, poison = poisoned_stream(start_us)
    async with gateway(stack_settings, tmp_path) as gw:
        answers = []
        async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers("dev-0")) as ws:
            for m in messages:  # one at a time, as a live device sends them
                await ws.send_bytes(m)
                answers.append(json.loads(await ws.receive_str(timeout=15)))
        # the same poisoned stream uploaded under another session
        upload = [encode_chunk(dataclasses.replace(decode_chunk(m), session_id="s2"))
                  for m in messages]
        resp = await gw.client.post(UPLOAD_PATH, data=frame_upload(upload),
                                    headers=gw.headers("dev-0"))
        summary = await resp.json()

    refused = {i: a for i, a in enumerate(answers) if a["type"] == "error"}
    assert set(refused) == poison
    assert {a["code"] for a in refused.values()} == {"off_timeline"}
    assert refused[20]["sequence"] == POISON_SEQ and "not stored" in refused[20]["reason"]
    acked = [a["sequence"] for a in answers if a["type"] == "ack"]
    assert acked == list(range(60))  # none of the 20 and 30 chunks after the poison lost
    assert resp.status == 422
    assert (summary["accepted"], summary["errors_by_code"]) == (60, {"off_timeline": 2})
    assert [r["index"] for r in summary["rejected"]] == sorted(poison)
    assert summary["resend_from"] is None  # nothing to send again: the rest is stored

    records = await read_topic(stack_settings, stack_settings.topic_chunks, 120)
    per_session = Counter((decode_chunk(r.value).session_id, decode_chunk(r.value).sequence)
                          for r in records)
    # every acknowledged chunk exactly once; the poison never reached Kafka
    assert per_session == Counter({(s, i): 1 for s in ("s1", "s2") for i in range(60)})


async def stream_device(gw: Gateway, device: str, patient: str, start_us: int,
                        http: aiohttp.ClientSession) -> DeviceStats:
    samples = np.zeros((3000, 6), dtype=np.float32)  # 30 s: 60 chunks
    samples[:, 0] = 9.81
    device_client = SimulatedDevice(
        gw.credentials[device], str(gw.client.make_url("/")).rstrip("/"), sample_rate_hz=FS,
        speed=10.0, session_id=f"{patient}-live", give_up_after_s=60.0, http=http)
    return await device_client.run(samples, start_us)


async def test_an_upload_flood_beside_streaming_devices_loses_and_doubles_nothing(
    stack_settings: Settings, tmp_path: Path,
) -> None:
    limits = DeviceLimits(frame_burst=6_000, frames_per_s=300.0)
    start_us = time.time_ns() // 1000 - 60_000_000
    flood_answers: list[tuple[int, dict[str, Any], str | None]] = []
    health: list[int] = []
    async with gateway(stack_settings, tmp_path, limits) as gw, aiohttp.ClientSession() as http:
        streaming = [asyncio.create_task(stream_device(gw, f"dev-{i}", f"ms-{i:04d}",
                                                       start_us, http)) for i in range(1, 4)]
        # the flooder: a real recording first, then empty frames until it is held back
        valid = [encode_chunk(make_chunk(i, start_us, device="dev-4", patient="ms-0004"))
                 for i in range(200)]
        resp = await gw.client.post(UPLOAD_PATH, data=frame_upload(valid),
                                    headers=gw.headers("dev-4"))
        flood_answers.append((resp.status, await resp.json(), resp.headers.get("Retry-After")))
        while not all(t.done() for t in streaming):
            resp = await gw.client.post(UPLOAD_PATH, data=bytes(1024 * 1024),
                                        headers=gw.headers("dev-4"))
            flood_answers.append((resp.status, await resp.json(),
                                  resp.headers.get("Retry-After")))
            health.append((await gw.client.get(HEALTH_PATH)).status)
        stats = [await t for t in streaming]

    # the streaming devices: every chunk acknowledged, none refused
    for s in stats:
        assert (s.acked, s.errors, s.completed) == (60, [], True), s
    assert set(health) == {200}
    # the flooder: its recording stored; every empty frame answered, bounded, then 429
    assert (flood_answers[0][0], flood_answers[0][1]["accepted"]) == (200, 200)
    statuses = Counter(status for status, _, _ in flood_answers[1:])
    assert set(statuses) <= {422, 429} and statuses[429] >= 1, statuses
    for status, answer, retry_after in flood_answers[1:]:
        assert answer["code"] in ("too_many_errors", "rate_limited"), answer
        assert answer["reason"]
        assert len(answer["rejected"]) <= limits.listed_rejections
        if status == 429:
            assert retry_after is not None and int(retry_after) >= 1
            assert answer["code"] in RETRYABLE_CODES

    records = await read_topic(stack_settings, stack_settings.topic_chunks, 380)
    expected = Counter({(f"ms-{d:04d}", i): 1 for d in (1, 2, 3) for i in range(60)})
    expected.update({("ms-0004", i): 1 for i in range(200)})
    assert stored(records) == expected  # every acknowledged chunk once, nothing else


async def test_poison_headers_do_not_stop_the_patients_windows_reaching_influxdb(
    stack_settings: Settings, tmp_path: Path,
) -> None:
    """The whole pipeline (gateway, processor, sink as child processes) behind the poison."""
    from justwalk.gait.cadence import window_start
    from justwalk.pipeline import Pipeline
    from justwalk.simulator.gait_model import GaitProfile, synthesize
    from tests.test_end_to_end import _free_port, clinic_db, poll_windows

    settings = stack_settings.replace(device_registry=tmp_path / "devices.json",
                                      gateway_port=_free_port())
    (cred,) = provision(settings.device_registry, tmp_path / "creds.json",
                        [("dev-p", "pt-poison", "clinic-test")])
    rec = synthesize(GaitProfile(cadence_spm=100.0, step_time_cv=0.0, walking_s=((0.0, 30.0),)),
                     30.0, FS, np.random.default_rng(5))
    start_us = window_start(time.time_ns() // 1000 - 60_000_000, 5_000_000)
    chunks = [ImuChunk("pt-poison", "dev-p", "s1", k, start_us + k * 500_000, FS,
                       Placement.LOWER_BACK, rec.samples[k * N:(k + 1) * N].astype(np.float32))
              for k in range(60)]
    messages = [encode_chunk(c) for c in chunks]
    messages.insert(40, encode_chunk(dataclasses.replace(
        chunks[40], t0_us=chunks[40].t0_us + 250_000_000)))
    messages.insert(20, encode_chunk(dataclasses.replace(chunks[20], sequence=POISON_SEQ)))
    p = Pipeline(settings, log_dir=tmp_path / "logs")
    p.start()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(
                p.gateway_url + STREAM_PATH, headers=auth_headers(cred.token)) as ws:
            answers = []
            for m in messages:
                await ws.send_bytes(m)
                answers.append(json.loads(await ws.receive_str(timeout=15)))
        assert [a["sequence"] for a in answers if a["type"] == "ack"] == list(range(60))
        from sinks.influx import InfluxClient

        async with InfluxClient(settings.influx_url, clinic_db(settings)) as client:
            windows = (await poll_windows(client, ["pt-poison"], 5))["pt-poison"]
    finally:
        codes = p.stop()
    assert codes == {"gateway": 0, "processor-0": 0, "sink": 0}, codes
    walking = [w for w in windows if w["walking"]]
    # windows after both poison chunks (10 s and 20 s in) arrive, at the true cadence
    assert max(w["time"] for w in walking) >= start_us + 20_000_000
    for w in walking[1:]:
        assert abs(w["cadence_spm"] - 100.0) <= 3.0, w


async def test_a_store_and_forward_device_held_back_waits_and_resends_from_where_told(
    stack_settings: Settings, tmp_path: Path,
) -> None:
    """The simulator's device (the protocol's reference client) on the real gateway's 429s."""
    from justwalk.simulator.device import upload_recording

    # 100 frames at once, then 40/s: the 300 frames need 5 s of budget, far more than
    # the gateway takes to read them, so the device is held back
    limits = DeviceLimits(frame_burst=100, frames_per_s=40.0)
    start_us = time.time_ns() // 1000 - 600_000_000
    samples = np.zeros((300 * N, 6), dtype=np.float32)
    samples[:, 0] = 9.81
    samples[:, 1] = np.arange(300 * N) / 1e4
    async with gateway(stack_settings, tmp_path, limits) as gw:
        url = str(gw.client.make_url("/"))
        stats = await upload_recording(url, gw.credentials["dev-4"], samples,
                                       start_us=start_us, sample_rate_hz=FS, chunk_s=N / FS,
                                       session_id="sf1", give_up_after_s=30.0)
    assert stats.completed, stats.errors
    assert stats.errors == []
    assert stats.retried >= 1
    assert stats.acked == 300 and stats.duplicates == 0
    assert stats.sent == 300 + stats.resent
    records = await read_topic(stack_settings, stack_settings.topic_chunks, 300)
    assert stored(records) == Counter({("ms-0004", i): 1 for i in range(300)})
