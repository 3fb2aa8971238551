"""Issue #3, item 5: a recording replayed in real time through the gateway gives the results of
the offline evaluation (``justwalk evaluate gait``): same code path, event time.

The integration test streams real Mobilise-D recordings like devices do (0.5 s chunks over
the WebSocket, paced by the device clock) through gateway -> Kafka -> processor -> Kafka ->
sink -> InfluxDB, reads the per-step and per-bout points back from InfluxDB and compares
them with ``run_ours`` (the evaluation's runner) on the same samples with the same sensor
height. The patients' sensor heights come from the processor's patient profiles, and differ
from the deployment default, so a processor ignoring the profile fails the test.

The device clock is a stand-in: it is restamped to an hour before now (keeping the
recording's phase in the window grid): the 2020 recordings are older than the gateway
accepts and than the InfluxDB retention policies keep, and an hour's offset from the wall
clock makes any wall-clock timestamp stand out.

The recording's last chunk carries the wire's end-of-session flag (``ChunkFlags.LAST``, set
by the simulated device): the processor closes the session on it exactly as
``GaitPipeline.flush`` closes the recording offline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import json
import math
import time
from pathlib import Path

import pytest

from ingest.registry import provision
from justwalk.device_protocol import DeviceCredential
from justwalk.evaluation.gait import run_ours
from justwalk.evaluation.gait_reference import (
    Detection,
    Trial,
    load_trials,
    window_cadence_errors,
)
from justwalk.gait.cadence import window_start
from justwalk.pipeline import Pipeline
from justwalk.records import BoutRecord, GaitWindowRecord, StepRecord
from justwalk.schema import MEASUREMENT_BOUT, MEASUREMENT_STEP, clinic_database, qualified
from justwalk.simulator.device import make_chunks, stream_samples
from justwalk.wire import decode_chunk, encode_chunk
from sinks.influx import InfluxClient
from stream_processors.patient_profiles import (
    PatientProfileError,
    load_patient_profiles,
    parse_patient_profiles,
)
from stream_processors.session import SessionProcessor
from tests.test_end_to_end import _free_port

CLINIC = "clinic-replay"
CLOCK_OFFSET_US = 3_600_000_000
"""The replaying devices' clocks run an hour behind the wall clock."""
REPLAYS = (
    # patient, trial, slice (s) or None for all of it
    ("pt-replay-ms001", "MS/001 Test5 Trial1", None),  # 14.5 s, one reference bout
    ("pt-replay-ha001", "HA/001 Test11 Trial1", (25.0, 55.0)),  # two reference bouts
)
"""Trials on which the gait core's output depends on how the samples are chunked: the
processor's results differ from the evaluation's (``run_ours`` feeds a recording whole)."""


@functools.cache
def _trials(shared_data: Path) -> dict[str, Trial]:
    return {t.name: t for t in load_trials(shared_data / "mobilised")}


def _restamped(trial: Trial, window_s: float, now_us: int,
               span_s: tuple[float, float] | None = None) -> Trial:
    """``trial`` (or a slice of it) on a device clock ``CLOCK_OFFSET_US`` behind ``now_us``.

    The first sample keeps its phase within the window grid, so the windows hold the same
    samples as on the recording's own clock.
    """
    fs = trial.sample_rate_hz
    a, b = (0, trial.n_samples) if span_s is None else (round(span_s[0] * fs),
                                                        round(span_s[1] * fs))
    first_us = trial.t0_us + round(a * 1e6 / fs)
    window_us = round(window_s * 1e6)
    t0_us = window_start(now_us - CLOCK_OFFSET_US, window_us) + first_us % window_us
    return dataclasses.replace(trial, samples=trial.samples[a:b], t0_us=t0_us)


def _device_us(trial: Trial, sample: int) -> int:
    """Device time of a sample (``GaitPipeline.time_us``)."""
    return trial.t0_us + round(sample * 1e6 / trial.sample_rate_hz)


def _same(ours: float | None, offline: float) -> bool:
    """A stored value equals the offline one (NaN offline = not written)."""
    if not math.isfinite(offline):
        return ours is None
    return ours is not None and ours == pytest.approx(offline, rel=1e-9, abs=1e-12)


def assert_steps_equal(trial: Trial, offline: Detection, steps: list[dict]) -> None:
    """Stored step points (time, side, step_index) against the offline ICs."""
    steps = sorted(steps, key=lambda r: r["time"])
    assert len(steps) == len(offline.ics), (trial.name, len(steps), len(offline.ics))
    # event time: device clock of the sample, to the microsecond
    assert [r["time"] for r in steps] == [_device_us(trial, int(i)) for i in offline.ics]
    assert [r["side"] for r in steps] == offline.ic_sides
    assert [r["step_index"] for r in steps] == list(range(len(steps)))


def assert_bouts_equal(trial: Trial, offline: Detection, bouts: list[dict]) -> None:
    """Stored bout points (start, end, parameters) against the offline bouts."""
    bouts = sorted(bouts, key=lambda r: r["time"])
    assert len(bouts) == len(offline.bouts), (trial.name, bouts, offline.bouts)
    # numbered within the session; chains too short for a bout take a number too
    assert all(a["bout_index"] < b["bout_index"] for a, b in itertools.pairwise(bouts))
    for i, (row, b) in enumerate(zip(bouts, offline.bouts, strict=True)):
        where = (trial.name, i, row, b)
        assert row["time"] == _device_us(trial, b.start), where
        end_us = row["time"] + round(row["duration_s"] * 1e6)
        assert abs(end_us - _device_us(trial, b.end)) <= 1, where
        assert _same(row["cadence_spm"], b.cadence_spm), where
        assert _same(row["walking_speed_mps"], b.walking_speed_mps), where
        assert _same(row["stride_length_m"], b.stride_length_m), where
        assert _same(row["stride_time_cv_pct"], b.stride_time_cv_pct), where


def assert_window_cadence_scores_equal(trial: Trial, offline: Detection,
                                       windows: list[GaitWindowRecord]) -> None:
    """The ``gait_window`` points are the windows ``evaluate gait`` scores: same windows,
    same walking flags, same cadences, hence the same errors against the reference."""
    by_start = {w.window_start_us: w for w in windows}
    assert len(by_start) == len(windows)
    walking = {w.window_start_us for w in windows if w.walking}
    assert walking == {w.window_start_us for w in offline.windows if w.walking}
    scored = window_cadence_errors(trial, offline.windows)
    assert scored, trial.name
    for start_us, ours, ref in scored:
        published = by_start[start_us].cadence_spm
        assert published is not None and published == pytest.approx(ours, rel=1e-9), (
            trial.name, start_us)
        if math.isfinite(ref):  # the evaluation's error is the published window's error
            assert abs(published - ref) == pytest.approx(abs(ours - ref), abs=1e-9)


# ----------------------------------------------------------------------------- in memory


@pytest.mark.realdata
@pytest.mark.parametrize("name", [
    "HA/001 Test5 Trial1", "HA/001 Test5 Trial2", "HA/001 Test11 Trial1",
    "HA/002 Test11 Trial1", "MS/001 Test5 Trial1", "MS/001 Test5 Trial2",
    "MS/001 Test11 Trial1"])
def test_processor_on_gateway_chunks_equals_offline(shared_data: Path, name: str) -> None:
    """Every referenced recording, cut into the device's wire chunks and fed to the
    processor's session adapter (no broker), gives the offline evaluation's steps, bouts and
    scored window cadences."""
    trials = _trials(shared_data)
    if name not in trials:
        pytest.skip(f"{name} not in the data")
    trial = _restamped(trials[name], 5.0, time.time_ns() // 1000)
    offline = run_ours(trial)
    pid = "pt-x"
    cred = DeviceCredential("dev-x", pid, CLINIC, "unused")
    proc = SessionProcessor(window_s=5.0, sensor_heights_m={pid: trial.sensor_height_m})
    state = proc.new_state()
    chunks = make_chunks(cred, trial.samples, start_us=trial.t0_us,
                         sample_rate_hz=trial.sample_rate_hz, session_id="s")
    assert [c.ends_session for c in chunks] == [False] * (len(chunks) - 1) + [True]
    steps: list[StepRecord] = []
    bouts: list[BoutRecord] = []
    windows: list[GaitWindowRecord] = []
    for c in chunks:
        out = proc.process(state, decode_chunk(encode_chunk(c)))
        steps += out.steps
        bouts += out.bouts
        windows += out.windows
    assert state.ended and out.flushed
    assert_window_cadence_scores_equal(trial, offline, windows)
    assert_steps_equal(trial, offline, [
        {"time": s.t_us, "side": s.side, "step_index": s.step_index} for s in steps])
    assert_bouts_equal(trial, offline, [
        {"time": b.start_us, "bout_index": b.bout_index, "duration_s": b.duration_s,
         "cadence_spm": b.cadence_spm, "walking_speed_mps": b.walking_speed_mps,
         "stride_length_m": b.stride_length_m, "stride_time_cv_pct": b.stride_time_cv_pct}
        for b in bouts])


def test_patient_profiles_file(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    assert load_patient_profiles(path) == {}  # no file: the default for everyone
    path.write_text(json.dumps({"patients": {"pt-1": {"sensor_height_m": 0.975},
                                             "pt-2": {}}}))
    assert load_patient_profiles(path) == {"pt-1": 0.975}
    for bad in ({"patients": {"pt-1": {"sensor_height_m": 97.5}}},  # cm, not m
                {"patients": {"pt-1": {"height": 1.0}}},
                {"patient": {}}):
        with pytest.raises(PatientProfileError):
            parse_patient_profiles(bad)
    proc = SessionProcessor(window_s=5.0, sensor_height_m=1.0,
                            sensor_heights_m={"pt-1": 0.975})
    assert proc.pipeline_for("pt-1").sensor_height_m == 0.975
    assert proc.pipeline_for("pt-2").sensor_height_m == 1.0


@pytest.mark.realdata
def test_the_demo_gives_the_replayed_patient_its_sensor_height(shared_data: Path,
                                                               tmp_path: Path) -> None:
    from justwalk.demo import DEFAULT_RECORDING, REPLAY_PATIENT, write_patient_profiles
    from justwalk.simulator.replay import participant_info

    if not DEFAULT_RECORDING.exists():
        pytest.skip(f"{DEFAULT_RECORDING} not in the data")
    path = tmp_path / "patient_profiles.json"
    height = participant_info(DEFAULT_RECORDING).sensor_height_m
    assert height is not None and height != 1.0  # MS/001: 0.975 m, not the default
    assert write_patient_profiles(path, DEFAULT_RECORDING) == {REPLAY_PATIENT: height}
    assert load_patient_profiles(path) == {REPLAY_PATIENT: height}
    assert write_patient_profiles(path, None) == {} and load_patient_profiles(path) == {}


# ----------------------------------------------------------------------------- real stack


async def _poll(client: InfluxClient, query: str, expected: dict[str, int],
                timeout_s: float) -> dict[str, list[dict]]:
    """Rows of ``query`` (GROUP BY patient_id) once each patient has ``expected`` rows."""
    deadline = time.monotonic() + timeout_s
    while True:
        by_patient: dict[str, list[dict]] = {p: [] for p in expected}
        for r in await client.query_rows(query, epoch="u", missing_ok=True):
            by_patient.setdefault(r["patient_id"], []).append(r)
        if all(len(by_patient[p]) >= n for p, n in expected.items()) \
                or time.monotonic() > deadline:
            return by_patient
        await asyncio.sleep(0.5)


async def _replay(gateway_url: str, cred: DeviceCredential, trial: Trial,
                  session_id: str) -> None:
    """Stream ``trial`` in real time; its last chunk ends the session."""
    stats = await stream_samples(gateway_url, cred, trial.samples, start_us=trial.t0_us,
                                 sample_rate_hz=trial.sample_rate_hz, speed=1.0,
                                 session_id=session_id)
    assert stats.completed and not stats.errors and stats.acked == stats.chunks, stats


@pytest.mark.integration
@pytest.mark.realdata
async def test_real_time_replay_through_the_gateway_equals_offline(
        stack_settings, shared_data: Path, tmp_path: Path) -> None:
    trials = _trials(shared_data)
    missing = [t for _, t, _ in REPLAYS if t not in trials]
    if missing:
        pytest.skip(f"recordings not in the data: {missing}")
    settings = stack_settings.replace(
        device_registry=tmp_path / "devices.json", gateway_port=_free_port(),
        patient_profiles=tmp_path / "patient_profiles.json", default_sensor_height_m=1.0)
    creds = provision(settings.device_registry, tmp_path / "creds.json",
                      [(f"dev-{pid}", pid, CLINIC) for pid, _, _ in REPLAYS])
    now_us = time.time_ns() // 1000
    replays = {pid: _restamped(trials[name], settings.cadence_window_s, now_us, span)
               for pid, name, span in REPLAYS}
    # the patients' profiles: their own sensor heights, none equal to the default
    assert all(t.sensor_height_m != settings.default_sensor_height_m for t in replays.values())
    settings.patient_profiles.write_text(json.dumps({"patients": {
        pid: {"sensor_height_m": t.sensor_height_m} for pid, t in replays.items()}}))
    offline = {pid: run_ours(t) for pid, t in replays.items()}  # the evaluation's runner
    assert all(d.bouts for d in offline.values())  # something to compare

    pipeline = Pipeline(settings, log_dir=tmp_path / "logs")
    pipeline.start()  # from this thread: children die with the thread that started them
    try:
        await asyncio.gather(*(
            _replay(pipeline.gateway_url, c, replays[c.patient_id], f"replay-{i}")
            for i, c in enumerate(creds)))
        async with InfluxClient(settings.influx_url,
                                clinic_database(settings.influx_db, CLINIC)) as client:
            steps = await _poll(
                client, f'SELECT "step_index", "side", "session_id" FROM '
                f'{qualified(MEASUREMENT_STEP)} GROUP BY "patient_id"',
                {p: len(d.ics) for p, d in offline.items()}, timeout_s=30.0)
            bouts = await _poll(
                client, f'SELECT * FROM {qualified(MEASUREMENT_BOUT)} GROUP BY "patient_id"',
                {p: len(d.bouts) for p, d in offline.items()}, timeout_s=10.0)
        wall_us = time.time_ns() // 1000
    finally:
        codes = await asyncio.to_thread(pipeline.stop)
    assert codes == {"gateway": 0, "processor-0": 0, "sink": 0}, codes

    for i, (pid, trial) in enumerate(replays.items()):
        assert_steps_equal(trial, offline[pid], steps[pid])
        assert_bouts_equal(trial, offline[pid], bouts[pid])
        assert {r["session_id"] for r in steps[pid] + bouts[pid]} == {f"replay-{i}"}
        # device time, not the wall clock: the device's clock is an hour behind
        times = [r["time"] for r in steps[pid] + bouts[pid]]
        assert all(trial.t0_us <= t < wall_us - CLOCK_OFFSET_US + 60_000_000 for t in times)
