"""Training sessions in the processor runtime (in memory): a 2-Minute Walk Test started by a
control message on the chunk topic, scored from the steps the gait pipeline detects, and
the same records after a crash at any point (the real broker: tests/test_processor_crash.py
keeps the checkpoint logic; this checks the training state rides along with it)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import numpy as np
import orjson
import pytest

from justwalk.device_protocol import DeviceCredential
from justwalk.falls import EventType
from justwalk.records import FeedbackRecord, WalkMinuteRecord, WalkTestRecord, decode_record
from justwalk.simulator.device import make_chunks
from justwalk.simulator.events import InjectedEvent
from justwalk.simulator.gait_model import GaitProfile, synthesize
from justwalk.training import STRIDE_LENGTH_MAE_M, Plan, SessionKind
from justwalk.training.control import TrainingStart, TrainingStop, encode
from justwalk.wire import chunk_headers, encode_chunk
from tests.scenario import CLINIC, T0_US, influx_points
from tests.test_processor_runtime import (
    N_PARTITIONS,
    SETTINGS,
    TOPICS,
    Crash,
    MemBroker,
    MemWorker,
)

PATIENT, DEVICE, SESSION = "pt-train", "dev-train", "train-s1"
START_US = T0_US + 3_000_000
CADENCE = 105.0


def _messages(stop_at_s: float | None = None, *, end_session: bool = True,
              duration_s: float = 135.0, plan: Plan | None = None,
              events: tuple[InjectedEvent, ...] = ()) -> tuple[list, np.ndarray]:
    profile = GaitProfile(cadence_spm=CADENCE, walking_s=((2.0, 130.0),), events=events)
    rec = synthesize(profile, duration_s, 100.0, np.random.default_rng(7))
    cred = DeviceCredential(DEVICE, PATIENT, CLINIC, "unused")
    chunks = make_chunks(cred, rec.samples.astype(np.float32), start_us=T0_US,
                         sample_rate_hz=100.0, session_id=SESSION, end_session=end_session)
    plan = plan or Plan(kind=SessionKind.TWO_MWT, cadence_low_spm=110, cadence_high_spm=120,
                        progress_every_s=30)
    start = TrainingStart(CLINIC, PATIENT, DEVICE, SESSION, 41, START_US, plan)
    value, headers = encode(start)
    msgs = []
    stop_sent = False
    for c in chunks:
        msgs.append((PATIENT.encode(), encode_chunk(c), chunk_headers(CLINIC, c.end_us)))
        if len(msgs) == 3:  # the device starts the test 3 s into its recording
            msgs.append((PATIENT.encode(), value, headers))
        if stop_at_s is not None and not stop_sent and c.end_us >= T0_US + stop_at_s * 1e6:
            v, h = encode(TrainingStop(CLINIC, PATIENT, DEVICE, SESSION,
                                       round(T0_US + stop_at_s * 1e6)))
            msgs.append((PATIENT.encode(), v, h))
            stop_sent = True
    return msgs, rec.truth.step_times_s


def _outputs(broker: MemBroker) -> list[bytes]:
    topics = (TOPICS.training, TOPICS.feedback)
    return [r.value for t in topics for part in broker.logs[t] for r in part if r.value]


async def _run(msgs: list, *, crash_after: int | None = None) -> MemBroker:
    broker = MemBroker()
    for key, value, headers in msgs:
        broker.append(SETTINGS.topic_chunks, key, value, headers)
    worker = MemWorker(broker)
    for p in range(N_PARTITIONS):
        worker.assign(p)
    if crash_after is not None:
        with pytest.raises(Crash):
            await worker.run(range(N_PARTITIONS), checkpoint_every=17,
                             stop_after=crash_after, crash="sessions")
        worker = MemWorker(broker)
        for p in range(N_PARTITIONS):
            worker.assign(p)
    await worker.run(range(N_PARTITIONS), checkpoint_every=17)
    return broker


def _records(broker: MemBroker) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for v in _outputs(broker):
        kind = orjson.loads(v)["kind"]
        out[kind].append(FeedbackRecord.from_dict(orjson.loads(v)) if kind == "feedback"
                         else decode_record(v))
    return out


@pytest.fixture(scope="module")
def two_minute_test() -> tuple[MemBroker, np.ndarray, list]:
    msgs, truth = _messages()
    return asyncio.run(_run(msgs)), truth, msgs


def test_a_two_minute_walk_test_is_scored_from_the_detected_steps(two_minute_test) -> None:
    broker, truth, _ = two_minute_test
    recs = _records(broker)
    [result] = recs["walk_test"]
    assert isinstance(result, WalkTestRecord)
    assert result.status == "completed" and result.session_type == "2mwt"
    assert result.db_session_id == 41 and result.duration_s == 120.0
    assert result.start_us == START_US and result.end_us == START_US + 120_000_000
    true_steps = [int(np.sum((truth >= m * 60 + 3) & (truth < (m + 1) * 60 + 3)))
                  for m in range(2)]
    minutes = recs["walk_test_minute"]
    assert [m.minute for m in minutes] == [1, 2]
    assert all(isinstance(m, WalkMinuteRecord) for m in minutes)
    for m, n in zip(minutes, true_steps, strict=True):
        assert abs(m.steps - n) <= 3, (m.steps, n)  # the gait pipeline's step detection
        assert m.distance_m > 0 and m.distance_uncertainty_m is not None
    assert result.steps == sum(m.steps for m in minutes)
    assert result.distance_m == pytest.approx(sum(m.distance_m for m in minutes), abs=1e-3)
    assert result.mean_cadence_spm == pytest.approx(CADENCE, abs=3)
    assert result.distance_uncertainty_m == pytest.approx(
        result.distance_m * STRIDE_LENGTH_MAE_M / (2 * result.distance_m / result.steps),
        rel=0.05)
    assert result.dwi_pct is not None and abs(result.dwi_pct) < 5  # steady walker
    assert [m["minute"] for m in result.minutes] == [1, 2]
    kinds = [f.feedback for f in recs["feedback"]]
    # band 110-120 steps/min, the patient walks at 105: told to walk faster
    cues = [f for f in recs["feedback"] if f.feedback == "cadence_cue"]
    assert cues and all(c.values["direction"] == "faster" for c in cues)
    assert cues[0].values["metronome_spm"] == 115.0
    assert kinds.count("progress") == 3  # 30, 60, 90 s (120 s is the test's end)
    assert kinds.count("test_end") == 1
    assert all(f.chunk_received_at_us is not None for f in cues)


def test_influx_points_of_the_results(two_minute_test) -> None:
    broker, _, _ = two_minute_test
    points = influx_points([v for part in broker.logs[TOPICS.training] for v in
                            (r.value for r in part) if v])
    heads = sorted(h.split(",", 1)[0] for h, _ in points)
    assert heads == ["walk_test", "walk_test_minute", "walk_test_minute"]


@pytest.mark.parametrize("at", [0.1, 0.5, 0.8, 0.99])
async def test_a_crash_changes_nothing_in_the_training_records(two_minute_test, at) -> None:
    expected, _, msgs = two_minute_test
    broker = await _run(msgs, crash_after=round(at * len(msgs)))
    assert sorted(set(_outputs(broker))) == sorted(set(_outputs(expected)))


async def test_a_test_stopped_early_and_a_device_gone_quiet() -> None:
    msgs, _ = _messages(stop_at_s=63.0)
    [result] = _records(await _run(msgs))["walk_test"]
    assert result.status == "stopped_early" and result.duration_s == 60.0
    assert result.dwi_pct is None and [m["minute"] for m in result.minutes] == [1]
    msgs, _ = _messages(end_session=False, duration_s=80.0)
    broker = await _run(msgs)
    assert not _records(broker)["walk_test"]  # still running: nothing final yet
    worker = MemWorker(broker)
    for p in range(N_PARTITIONS):
        worker.assign(p)
    for partition, ps in worker.runtime.parts.items():  # the idle timeout's flush marker
        for skey, session in ps.sessions.items():
            from stream_processors.control import encode_flush

            value, headers = encode_flush(skey, session.applied_offset)
            broker.append(SETTINGS.topic_chunks, PATIENT.encode(), value, headers, partition)
    await worker.run(range(N_PARTITIONS))
    [result] = _records(broker)["walk_test"]
    assert result.status == "disconnected"
    assert result.end_us == T0_US + 80_000_000 and result.duration_s == 77.0


async def test_a_near_fall_in_a_guided_walk_gives_a_safety_message() -> None:
    plan = Plan(kind=SessionKind.GUIDED_WALK, duration_s=600, progress_every_s=60)
    msgs, _ = _messages(plan=plan, events=(InjectedEvent(EventType.NEAR_FALL, 70.0,
                                                         severity=0.7),))
    recs = _records(await _run(msgs))
    safety = [f for f in recs["feedback"] if f.feedback == "safety"]
    assert [f.values["event"] for f in safety] == ["near_fall"]
    assert abs(safety[0].t_us - (T0_US + 70_000_000)) < 2_000_000
    assert safety[0].chunk_received_at_us is not None
    [result] = recs["walk_test"]
    assert result.near_falls == 1 and result.session_type == "guided_walk"
    assert result.status == "completed"  # the recording ended (last chunk) before 600 s
    assert result.adherence_pct == pytest.approx(result.duration_s / 600 * 100, abs=0.01)
