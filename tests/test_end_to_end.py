"""End to end on the real broker and the real InfluxDB: devices -> gateway -> Kafka ->
processor -> Kafka -> sink -> InfluxDB, with the same child processes production runs."""

from __future__ import annotations

import asyncio
import json
import struct
import time

import aiohttp
import numpy as np
import pytest

from ingest.registry import provision
from justwalk.device_protocol import auth_headers
from justwalk.gait.cadence import window_start
from justwalk.pipeline import Pipeline
from justwalk.schema import (
    MEASUREMENT_BOUT,
    MEASUREMENT_DMO_DAILY,
    MEASUREMENT_FALL_RISK,
    MEASUREMENT_GAIT_WINDOW,
    MEASUREMENT_SESSION,
    MEASUREMENT_STEP,
    clinic_database,
    qualified,
)
from justwalk.simulator.device import stream_samples
from justwalk.simulator.gait_model import GaitProfile, synthesize
from justwalk.simulator.run import simulation_start_us, stream_simulated_patients
from justwalk.wire import ImuChunk, Placement, encode_chunk
from sinks.influx import InfluxClient
from tests.conftest import own_names

pytestmark = pytest.mark.integration

CADENCES = (90.0, 105.0, 120.0)
DURATION_S = 60.0
WALKING_S = (0.0, 50.0)
"""The patients walk, then stand: the walking bout ends, so its gait_bout point is written."""


async def poll_rows(client: InfluxClient, query: str, patient_ids,
                    timeout_s: float = 60.0) -> dict[str, list[dict]]:
    """Wait until every patient has at least one row of ``query`` (GROUP BY patient_id)."""
    deadline = time.monotonic() + timeout_s
    while True:
        by_patient: dict[str, list[dict]] = {p: [] for p in patient_ids}
        for r in await client.query_rows(query, epoch="u", missing_ok=True):
            by_patient.setdefault(r["patient_id"], []).append(r)
        if all(by_patient[p] for p in patient_ids):
            return by_patient
        if time.monotonic() > deadline:
            counts = {p: len(v) for p, v in by_patient.items()}
            raise AssertionError(f"rows after {timeout_s} s for {query!r}: {counts}")
        await asyncio.sleep(0.5)


async def poll_windows(client: InfluxClient, patient_ids, expected_per_patient: int,
                       timeout_s: float = 90.0) -> dict[str, list[dict]]:
    """Wait until every patient has ``expected_per_patient`` windows in InfluxDB."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await client.query_rows(
            f'SELECT "cadence_spm", "walking", "n_steps" FROM {qualified(MEASUREMENT_GAIT_WINDOW)} '
            'GROUP BY "patient_id"', epoch="u", missing_ok=True)
        by_patient: dict[str, list[dict]] = {p: [] for p in patient_ids}
        for r in rows:
            by_patient.setdefault(r["patient_id"], []).append(r)
        if all(len(by_patient[p]) >= expected_per_patient for p in patient_ids):
            return by_patient
        if time.monotonic() > deadline:
            counts = {p: len(v) for p, v in by_patient.items()}
            raise AssertionError(f"windows in InfluxDB after {timeout_s} s: {counts}")
        await asyncio.sleep(0.5)


def clinic_db(settings):
    """The database the sink writes the test clinic's points to."""
    return clinic_database(settings.influx_db, "clinic-test")


@pytest.fixture(scope="module")
def pipeline(local_stack, tmp_path_factory):
    """One pipeline for the tests of clean and faulty streams (their patients differ); the
    tests of timeouts and uploads start their own."""
    tmp_path = tmp_path_factory.mktemp("e2e-pipeline")
    settings = own_names(local_stack, tmp_path).replace(
        device_registry=tmp_path / "devices.json", gateway_port=_free_port())
    devices = [(f"dev-{i}", f"pt-{i}", "clinic-test") for i in range(len(CADENCES))]
    devices.append(("dev-faulty", "pt-faulty", "clinic-test"))
    creds = provision(settings.device_registry, tmp_path / "creds.json", devices)
    p = Pipeline(settings, log_dir=tmp_path / "logs")
    p.start()
    try:
        yield p, creds
    finally:
        codes = p.stop()
        assert codes == {"gateway": 0, "processor-0": 0, "sink": 0}, codes


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_three_patients_cadence_reaches_influxdb(pipeline):
    p, creds = pipeline
    settings = p.settings
    profiles = [GaitProfile(cadence_spm=c, step_time_cv=0.02, walking_s=(WALKING_S,))
                for c in CADENCES]
    start_us = simulation_start_us(time.time_ns() // 1000, DURATION_S, 0)
    result = await stream_simulated_patients(
        p.gateway_url, creds[: len(CADENCES)], profiles, DURATION_S, speed=0,
        start_us=start_us, window_s=settings.cadence_window_s, seed=11)
    assert result.ok, [s.error_codes for s in result.stats]

    truths = {t.patient_id: t for t in result.truths}
    # every window that closed before the end of the signal
    window_us = round(settings.cadence_window_s * 1e6)
    end_us = start_us + round(DURATION_S * 1e6)
    expected = (window_start(end_us, window_us) - window_start(start_us, window_us)) \
        // window_us - 1
    async with InfluxClient(settings.influx_url, clinic_db(settings)) as client:
        windows = await poll_windows(client, list(truths), expected)
        # each device's last chunk ends its session: the session's summary says so (written
        # after everything else the session published)
        sessions = await poll_rows(
            client, f'SELECT * FROM {qualified(MEASUREMENT_SESSION)} WHERE "ended" = true '
                    'GROUP BY "patient_id"', list(truths))
        steps = await client.query_rows(
            f'SELECT count("step_index") FROM {qualified(MEASUREMENT_STEP)} GROUP BY "patient_id"')
        # the validated pipeline's bout, and the fall-risk score it updated, per patient;
        # each in its own retention policy (longterm)
        bouts = await poll_rows(
            client, f'SELECT * FROM {qualified(MEASUREMENT_BOUT)} GROUP BY "patient_id"',
            list(truths))
        risk = await poll_rows(
            client, f'SELECT * FROM {qualified(MEASUREMENT_FALL_RISK)} GROUP BY "patient_id"',
            list(truths))
        # the day's Mobilise-D outcomes after that bout (issue #15), with their errors
        dmos = await poll_rows(
            client, f'SELECT * FROM {qualified(MEASUREMENT_DMO_DAILY)} GROUP BY "patient_id"',
            list(truths))
        # the same windows also hold the pipeline's speed, stride length and variability
        metrics = await client.query_rows(
            f'SELECT "walking_speed_mps", "stride_length_m", "stride_time_cv_pct" FROM '
            f'{qualified(MEASUREMENT_GAIT_WINDOW)} WHERE "walking" = true '
            'GROUP BY "patient_id"', epoch="u")

    for pid, truth in truths.items():
        true_by_start = {w.window_start_us: w for w in truth.windows}
        ours = [w for w in windows[pid] if w["walking"]]
        assert len(ours) >= expected - 2, (pid, len(ours), expected)
        errors = []
        for w in ours:
            t = true_by_start.get(w["time"])
            if t is not None and t.walking:
                errors.append(w["cadence_spm"] - t.cadence_spm)
        assert len(errors) >= expected - 3
        # each patient's cadence within +-3 steps/min of the truth, window by window
        assert np.max(np.abs(errors)) <= 3.0, (pid, errors)
        mean_ours = np.mean([w["cadence_spm"] for w in ours])
        assert abs(mean_ours - truth.mean_cadence_spm) <= 3.0
    for pid, truth in truths.items():
        [bout] = bouts[pid]
        true_ics = truth.step_times_us
        true_cadence = 60e6 / float(np.mean(np.diff(true_ics)))
        # the walk starts with the recording: its first contact may lack filter history
        assert -300_000 < bout["time"] - true_ics[0] < 1_000_000, (pid, bout)
        assert abs(bout["cadence_spm"] - true_cadence) <= 3.0, (pid, bout)
        assert abs(bout["n_steps"] - len(true_ics)) <= 3, (pid, bout)
        assert 0.3 < bout["walking_speed_mps"] < 2.0 and 0.5 < bout["stride_length_m"] < 2.0
        assert bout["stride_time_cv_pct"] < 5.0  # 2 % step-time CV in the profile
        [score] = risk[pid]  # one counted bout, no event: one update of the score
        assert score["assessment"] == "update" and score["n_bouts"] == 1
        assert 0.0 <= score["risk_score"] < 0.5 and score["risk_level"] in ("low", "moderate")
        assert score["walking_speed_mps"] == pytest.approx(bout["walking_speed_mps"])
        assert score["time"] == bout["time"] + round(bout["duration_s"] * 1e6)  # bout end
        speeds = [r["walking_speed_mps"] for r in metrics if r["patient_id"] == pid
                  and r["walking_speed_mps"] is not None]
        assert len(speeds) >= expected - 4, (pid, speeds)
        assert abs(np.median(speeds) - bout["walking_speed_mps"]) < 0.15
        [dmo] = dmos[pid]  # one point per patient-day, rewritten per bout
        assert dmo["wb_all_n"] == 1 and dmo["final"] is False and dmo["cohort"] == "MS"
        assert dmo["walkdur_all_s"] == pytest.approx(bout["duration_s"])
        assert dmo["cadence_all_mean_spm"] == pytest.approx(bout["cadence_spm"])
        assert dmo["cadence_all_mean_spm_err"] > 0 and bout["cadence_spm_err"] > 0
        [session] = sessions[pid]  # one point per session, rewritten as it grew
        assert session["time"] == start_us and session["n_bouts"] == 1
        assert session["duration_s"] == pytest.approx(DURATION_S)
        assert session["walking_s"] == pytest.approx(bout["duration_s"])
    # clean walking raises no alert (false alarms would reach clinicians); the same reader
    # does see the processor's other output
    assert await read_topic(settings.kafka_bootstrap, settings.topic_alerts) == []
    assert len(await read_topic(settings.kafka_bootstrap, settings.topic_windows)) >= \
        len(CADENCES) * expected
    counts = {r["patient_id"]: r["count"] for r in steps}
    for pid, truth in truths.items():
        # steps written per patient: all true steps, give or take the edges of the walk
        assert abs(counts[pid] - len(truth.step_times_us)) <= 4, (pid, counts[pid])
        assert sessions[pid][0]["n_steps"] == counts[pid]


async def read_topic(bootstrap: str, topic: str, idle_s: float = 2.0) -> list[bytes]:
    """Every message on ``topic`` (read until it stays idle for ``idle_s``)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        out: list[bytes] = []
        while True:
            batch = await consumer.getmany(timeout_ms=round(idle_s * 1000))
            if not batch:
                return out
            out += [m.value for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()


def _chunk(seq: int, t0_us: int, samples: np.ndarray) -> ImuChunk:
    return ImuChunk("pt-faulty", "dev-faulty", "sess-f", seq, t0_us, 100.0,
                    Placement.LOWER_BACK, samples.astype(np.float32))


async def test_faulty_chunks_are_named_and_the_rest_still_processed(pipeline):
    p, creds = pipeline
    settings = p.settings
    cred = next(c for c in creds if c.patient_id == "pt-faulty")
    duration_s = 30.0
    rec = synthesize(GaitProfile(cadence_spm=100.0, step_time_cv=0.0,
                                 walking_s=((0.0, duration_s),)),
                     duration_s, 100.0, np.random.default_rng(5))
    start_us = window_start(time.time_ns() // 1000 - 60_000_000, 5_000_000)
    chunks = [_chunk(k, start_us + k * 500_000, rec.samples[k * 50:(k + 1) * 50])
              for k in range(int(duration_s * 2))]
    answers: list[dict] = []

    async with aiohttp.ClientSession() as http:
        # a bad token is refused before the WebSocket opens
        async with http.get(p.gateway_url + "/v1/stream",
                            headers=auth_headers("not-a-token")) as r:
            assert r.status == 401
            assert "token" in (await r.text()).lower()
        async with http.ws_connect(p.gateway_url + "/v1/stream",
                                   headers=auth_headers(cred.token)) as ws:
            for k, c in enumerate(chunks):
                await ws.send_bytes(encode_chunk(c))
                answers.append(json.loads(await ws.receive_str()))
                if k == 20:
                    good = encode_chunk(chunks[21])
                    # truncated
                    await ws.send_bytes(good[:-7])
                    answers.append(json.loads(await ws.receive_str()))
                    # wrong sample count in the header
                    bad = bytearray(good)
                    struct.pack_into("<H", bad, 6, 49)
                    await ws.send_bytes(bytes(bad))
                    answers.append(json.loads(await ws.receive_str()))
                    # NaNs
                    nan = chunks[21].samples.copy()
                    nan[3, 0] = np.nan
                    await ws.send_bytes(encode_chunk(_chunk(21, chunks[21].t0_us, nan)))
                    answers.append(json.loads(await ws.receive_str()))

    errors = [a for a in answers if a["type"] == "error"]
    # cut short, and a changed header: both fail the chunk's checksum (wire version 2)
    assert [e["code"] for e in errors] == ["bad_checksum", "bad_checksum", "non_finite"]
    assert "49 samples" in errors[1]["reason"]
    assert "sample 3" in errors[2]["reason"] and "acc_x" in errors[2]["reason"]
    acks = [a["sequence"] for a in answers if a["type"] == "ack"]
    assert acks == list(range(len(chunks)))

    async with InfluxClient(settings.influx_url, clinic_db(settings)) as client:
        windows = await poll_windows(client, ["pt-faulty"], 5)
    walking = [w for w in windows["pt-faulty"] if w["walking"]]
    # windows after the faults (chunk 21 = 10.5 s) are there, at the true cadence
    assert max(w["time"] for w in walking) >= start_us + 20_000_000
    for w in walking[1:]:
        assert abs(w["cadence_spm"] - 100.0) <= 3.0, w


async def test_a_device_that_dies_mid_walk_gets_its_bout_by_the_idle_timeout(
        stack_settings, tmp_path):
    """No end flag: the processor's idle timeout closes the open bout, and publishes it once."""
    settings = stack_settings.replace(device_registry=tmp_path / "devices.json",
                                      gateway_port=_free_port(), session_idle_timeout_s=3.0)
    [cred] = provision(settings.device_registry, tmp_path / "creds.json",
                       [("dev-dies", "pt-dies", "clinic-test")])
    duration_s = 30.0
    rec = synthesize(GaitProfile(cadence_spm=105.0, step_time_cv=0.02,
                                 walking_s=((1.0, duration_s),)),
                     duration_s, 100.0, np.random.default_rng(8))
    start_us = simulation_start_us(time.time_ns() // 1000, duration_s, 0)
    p = Pipeline(settings, log_dir=tmp_path / "logs")
    p.start()
    try:
        stats = await stream_samples(p.gateway_url, cred, rec.samples, start_us=start_us,
                                     sample_rate_hz=100.0, speed=0, session_id="s-dies",
                                     end_session=False)
        assert stats.completed and stats.acked == stats.chunks and not stats.errors
        sent = time.monotonic()
        async with InfluxClient(settings.influx_url, clinic_db(settings)) as client:
            bouts = await poll_rows(
                client, f'SELECT * FROM {qualified(MEASUREMENT_BOUT)} GROUP BY "patient_id"',
                ["pt-dies"], timeout_s=60.0)
            waited_s = time.monotonic() - sent
            risk = await poll_rows(
                client, f'SELECT * FROM {qualified(MEASUREMENT_FALL_RISK)} '
                'GROUP BY "patient_id"', ["pt-dies"])
            await asyncio.sleep(2 * settings.session_idle_timeout_s)  # no second flush
            again = await client.query_rows(f'SELECT * FROM {qualified(MEASUREMENT_BOUT)}')
        published = await read_topic(settings.kafka_bootstrap, settings.topic_bouts)
    finally:
        codes = p.stop()
    assert codes == {"gateway": 0, "processor-0": 0, "sink": 0}, codes
    [bout] = bouts["pt-dies"]
    assert waited_s >= settings.session_idle_timeout_s - 1.0  # not before the timeout
    assert bout["session_id"] == "s-dies" and abs(bout["cadence_spm"] - 105.0) <= 3.0
    assert bout["time"] + round(bout["duration_s"] * 1e6) > start_us + 25_000_000
    [score] = risk["pt-dies"]
    assert score["n_bouts"] == 1
    assert len(again) == 1 and len(published) == 1  # flushed once


async def test_an_upload_filling_a_gap_reaches_influxdb(stack_settings, tmp_path):
    """Store and forward: 20 s the device could not stream live are uploaded afterwards.

    The gateway acknowledges them, and the processor analyses them (a late track of the
    session): the steps of the gap reach InfluxDB, numbered on from the session's others.
    """
    from justwalk.simulator.device import make_chunks
    from justwalk.wire import frame_upload

    settings = stack_settings.replace(device_registry=tmp_path / "devices.json",
                                      gateway_port=_free_port())
    [cred] = provision(settings.device_registry, tmp_path / "creds.json",
                       [("dev-gap", "pt-gap", "clinic-test")])
    duration_s, gap = 80.0, (60, 100)  # chunks 60-99: 30 s to 50 s
    rec = synthesize(GaitProfile(cadence_spm=100.0, step_time_cv=0.02,
                                 walking_s=((1.0, duration_s),)),
                     duration_s, 100.0, np.random.default_rng(9))
    start_us = simulation_start_us(time.time_ns() // 1000, duration_s, 0)
    chunks = make_chunks(cred, rec.samples, start_us=start_us, sample_rate_hz=100.0,
                         session_id="s-gap")
    live = [encode_chunk(c) for c in chunks if not gap[0] <= c.sequence < gap[1]]
    late = [encode_chunk(c) for c in chunks if gap[0] <= c.sequence < gap[1]]
    gap_us = (chunks[gap[0]].t0_us, chunks[gap[1] - 1].end_us)
    p = Pipeline(settings, log_dir=tmp_path / "logs")
    p.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(p.gateway_url + "/v1/stream",
                                       headers=auth_headers(cred.token)) as ws:
                for m in live:
                    await ws.send_bytes(m)
                    assert json.loads(await ws.receive_str())["type"] == "ack"
            async with http.post(p.gateway_url + "/v1/upload", data=frame_upload(late),
                                 headers=auth_headers(cred.token)) as r:
                answer = await r.json()
        assert r.status == 200 and answer["accepted"] == len(late), answer
        async with InfluxClient(settings.influx_url, clinic_db(settings)) as client:
            deadline = time.monotonic() + 60
            while True:
                steps = await client.query_rows(
                    f'SELECT "step_index" FROM {qualified(MEASUREMENT_STEP)}', epoch="u",
                    missing_ok=True)
                inside = [s for s in steps if gap_us[0] <= s["time"] < gap_us[1]]
                if len(inside) >= 25 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        rejected = await read_topic(settings.kafka_bootstrap, settings.topic_rejects, 1.0)
    finally:
        codes = p.stop()
    assert codes == {"gateway": 0, "processor-0": 0, "sink": 0}, codes
    # 20 s at 100 steps/min: 33 steps, less those at the two edges of the late segment
    assert len(inside) >= 25, len(inside)
    indices = [s["step_index"] for s in steps]
    assert len(set(indices)) == len(indices)  # no step number used twice
    assert rejected == []
