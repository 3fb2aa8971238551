"""The processor runtime in memory: crashes, checkpoints cut short and rebalances change
nothing in what InfluxDB would hold; late chunks, refusals and flush markers.

An in-memory broker stands in for Kafka (the real one is in tests/test_processor_crash.py):
partitioned topic logs, committed offsets, and a worker that checkpoints in the order of
``stream_processors.app.ProcessorWorker.checkpoint`` (records, patient states, session
states, offsets) and resumes like it (``latest_states`` of the state log, committed offset).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from justwalk.config import Settings
from justwalk.records import decode_record
from justwalk.wire import ChunkFlags, ImuChunk, chunk_headers, decode_chunk, encode_chunk
from stream_processors.app import output_topics
from stream_processors.control import encode_flush
from stream_processors.runtime import Headers, ProcessorRuntime, latest_states
from stream_processors.session import SessionProcessor
from tests.scenario import CLINIC, Message, chunk_messages, influx_points

SETTINGS = Settings()
TOPICS = output_topics(SETTINGS)
OUTPUTS = (TOPICS.steps, TOPICS.windows, TOPICS.bouts, TOPICS.events, TOPICS.alerts,
           TOPICS.risk, TOPICS.sessions)
N_PARTITIONS = 3


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    headers: Headers
    applied: int = -1


@dataclass
class MemBroker:
    """Topic logs (per partition) and committed offsets of one consumer group."""

    logs: dict[str, list[list[Rec]]] = field(
        default_factory=lambda: defaultdict(lambda: [[] for _ in range(N_PARTITIONS)]))
    committed: dict[int, int] = field(default_factory=dict)

    def partition_of(self, key: bytes) -> int:
        return zlib.crc32(key) % N_PARTITIONS

    def append(self, topic: str, key: bytes | None, value: bytes | None,
               headers: Headers = (), partition: int | None = None) -> None:
        p = self.partition_of(key or b"") if partition is None else partition
        applied = next((int(v) for k, v in headers if k == "jw-applied"), -1)
        self.logs[topic][p].append(Rec(key, value, list(headers), applied))

    def outputs(self) -> list[bytes]:
        return [r.value for t in OUTPUTS for part in self.logs[t] for r in part
                if r.value is not None]


class MemSender:
    """The runtime's sender: records go to the broker at once (delivery is certain)."""

    def __init__(self, broker: MemBroker) -> None:
        self.broker = broker

    async def send(self, topic: str, key: bytes, value: bytes | None, *,
                   partition: int | None = None, headers: Headers | None = None) -> None:
        self.broker.append(topic, key, value, headers or (), partition)


class Crash(Exception):
    pass


class MemWorker:
    """One processor worker on the in-memory broker."""

    def __init__(self, broker: MemBroker, *, idle_timeout_s: float = 0.0) -> None:
        self.broker = broker
        self.now_us = 0
        processor = SessionProcessor(window_s=5.0, clock=lambda: 0)
        self.runtime = ProcessorRuntime(processor, MemSender(broker), TOPICS,
                                        clock=lambda: self.now_us,
                                        idle_timeout_s=idle_timeout_s)
        self.position: dict[int, int] = {}

    def assign(self, partition: int) -> None:
        stored = [(r.key.decode(), r.value, r.applied)
                  for r in self.broker.logs[SETTINGS.topic_state][partition] if r.key]
        self.runtime.assign(partition, latest_states(stored))
        self.position[partition] = self.broker.committed.get(partition, 0)

    async def step(self, partition: int) -> bool:
        """Handle the next input message of ``partition``; False at the end of the log."""
        log = self.broker.logs[SETTINGS.topic_chunks][partition]
        pos = self.position[partition]
        if pos >= len(log):
            return False
        r = log[pos]
        self.position[partition] = pos + 1
        await self.runtime.on_message(partition, pos, r.key, r.value, r.headers)
        return True

    async def checkpoint(self, partitions: Sequence[int], *, crash: str = "") -> None:
        """The app's checkpoint order; ``crash`` cuts it short after "patients" or half of
        the "sessions"."""
        cps = self.runtime.checkpoint(partitions)
        state = SETTINGS.topic_state
        for cp in cps:
            for key, data, applied in cp.patients:
                self.broker.append(state, key.encode(), data,
                                   [("jw-applied", str(applied).encode())], cp.partition)
        if crash == "patients":
            raise Crash
        for cp in cps:
            sessions = cp.sessions[: len(cp.sessions) // 2] if crash else cp.sessions
            for key, data, applied in sessions:
                self.broker.append(state, key.encode(), data,
                                   [("jw-applied", str(applied).encode())], cp.partition)
        if crash:
            raise Crash
        for cp in cps:
            if cp.next_offset is not None:
                self.broker.committed[cp.partition] = cp.next_offset

    async def run(self, partitions: Sequence[int], *, checkpoint_every: int = 200,
                  stop_after: int | None = None, crash: str = "") -> int:
        """Round-robin over the partitions until the logs end (or ``stop_after`` messages,
        then a crash: nothing more is stored). Returns the messages handled."""
        n = 0
        active = list(partitions)
        while active:
            for p in list(active):
                if not await self.step(p):
                    active.remove(p)
                    continue
                n += 1
                if stop_after is not None and n >= stop_after:
                    if crash:
                        await self.checkpoint(partitions, crash=crash)
                    return n
                if n % checkpoint_every == 0:
                    await self.checkpoint(partitions)
        await self.checkpoint(partitions)
        return n


@pytest.fixture(scope="module")
def messages() -> list[Message]:
    return chunk_messages()


def load(broker: MemBroker, messages: list[Message]) -> None:
    for key, value, headers in messages:
        broker.append(SETTINGS.topic_chunks, key, value, headers)


async def reference(messages: list[Message]) -> dict:
    broker = MemBroker()
    load(broker, messages)
    worker = MemWorker(broker)
    for p in range(N_PARTITIONS):
        worker.assign(p)
    await worker.run(range(N_PARTITIONS))
    return influx_points(broker.outputs())


@pytest.fixture(scope="module")
def expected(messages) -> dict:
    import asyncio

    return asyncio.run(reference(messages))


async def test_the_scenario_gives_every_kind_of_record(expected) -> None:
    kinds = defaultdict(int)
    for head, _ in expected:
        kinds[head.split(",", 1)[0]] += 1
    assert kinds["step"] > 500 and kinds["gait_window"] > 100 and kinds["gait_bout"] >= 5
    assert kinds["session"] == 4 and kinds["fall_risk"] > 0
    events = [f["event_type"] for (h, _), f in expected.items() if h.startswith("gait_event")]
    assert '"near_fall"' in events and '"fall"' in events
    assert any(h.startswith("alert") for h, _ in expected)


@pytest.mark.parametrize(("at", "crash"), [
    (0.03, ""), (0.4, ""), (0.77, ""), (0.5, "patients"), (0.9, "sessions"), (0.97, "")])
async def test_a_crash_at_any_point_changes_nothing(messages, expected, at, crash) -> None:
    """Crash after a fraction ``at`` of the input (during a checkpoint: ``crash``)."""
    stop_after = round(at * len(messages))
    broker = MemBroker()
    load(broker, messages)
    first = MemWorker(broker)
    for p in range(N_PARTITIONS):
        first.assign(p)
    with pytest.raises(Crash) if crash else _nothing():
        await first.run(range(N_PARTITIONS), stop_after=stop_after, crash=crash)
    # the first worker is gone with everything it held in memory; a new one resumes
    second = MemWorker(broker)
    for p in range(N_PARTITIONS):
        second.assign(p)
    await second.run(range(N_PARTITIONS))
    assert influx_points(broker.outputs()) == expected


async def test_a_partition_moving_to_another_worker_changes_nothing(messages, expected) -> None:
    broker = MemBroker()
    load(broker, messages)
    a, b = MemWorker(broker), MemWorker(broker)
    for p in range(N_PARTITIONS):
        a.assign(p)
    await a.run(range(N_PARTITIONS), stop_after=len(messages) // 2)
    # rebalance: a gives partition 1 up (checkpoint, revoke), b takes it
    await a.checkpoint([1])
    a.runtime.revoke(1)
    b.assign(1)
    await b.run([1])
    await a.run([0, 2])
    assert influx_points(broker.outputs()) == expected


async def test_states_rebased_onto_a_recreated_log_change_nothing(messages, expected) -> None:
    """A broker lost every topic mid-stream (states, offsets, unprocessed input): the
    worker's states, rebased and stored on the new broker, and a new log holding what was
    not processed yet (numbered from 0, beginning with two resends of processed chunks)
    give what an uninterrupted run gives."""
    old = MemBroker()
    load(old, messages)
    first = MemWorker(old)
    for p in range(N_PARTITIONS):
        first.assign(p)
    await first.run(range(N_PARTITIONS), stop_after=len(messages) // 2,
                    checkpoint_every=10**9)
    new = MemBroker()
    for p in range(N_PARTITIONS):
        done = first.position[p]
        new.logs[SETTINGS.topic_chunks][p] = list(old.logs[SETTINGS.topic_chunks][p][done - 2:])
    sessions, patients = first.runtime.rebase()
    assert sessions >= 4 and patients >= 4
    first.broker = new
    await first.checkpoint(range(N_PARTITIONS))
    stored = [r for part in new.logs[SETTINGS.topic_state] for r in part]
    assert len(stored) == sessions + patients and {r.applied for r in stored} == {-1}
    assert new.committed == {}  # nothing committed: the new log starts at 0
    second = MemWorker(new)
    for p in range(N_PARTITIONS):
        second.assign(p)
    await second.run(range(N_PARTITIONS))
    assert influx_points(old.outputs() + new.outputs()) == expected


async def test_states_are_compact(messages) -> None:
    broker = MemBroker()
    load(broker, messages)
    w = MemWorker(broker)
    for p in range(N_PARTITIONS):
        w.assign(p)
    await w.run(range(N_PARTITIONS), stop_after=len(messages) // 2, checkpoint_every=10**9)
    sizes = [len(data) for cp in w.runtime.checkpoint(range(N_PARTITIONS))
             for _, data, _ in cp.sessions if data is not None]
    assert sizes and max(sizes) <= 20_000, sizes


def _chunk(seq: int, t0_us: int, *, last: bool = False, n: int = 50) -> bytes:
    import numpy as np

    samples = np.zeros((n, 6), np.float32)
    samples[:, 0] = 9.81
    return encode_chunk(ImuChunk("pt-x", "dev-x", "s", seq, t0_us, 100.0, 1, samples,
                                 flags=ChunkFlags.LAST if last else ChunkFlags.NONE))


async def test_refusals_go_to_the_rejects_topic_with_their_reason() -> None:
    broker = MemBroker()
    w = MemWorker(broker)
    w.assign(0)
    h = chunk_headers(CLINIC, 0)
    t0 = 1_767_607_200_000_000
    for off, (value, headers) in enumerate([
            (_chunk(0, t0), h),
            (_chunk(1, t0 + 500_000), []),                    # no clinic header
            (b"JW garbage", h),                               # undecodable
            (_chunk(2, t0 + 100_000), h),                     # overlaps chunk 0
            (_chunk(0, t0), h),                               # a resend: no output, no reject
            (_chunk(3, t0 + 1_000_000, last=True), h),
            (_chunk(4, t0 + 1_500_000), h)]):                 # after the end
        await w.runtime.on_message(0, off, b"pt-x", value, headers)
    codes = [decode_reject(r.value) for part in broker.logs[TOPICS.rejects] for r in part]
    assert codes == ["missing_clinic", "truncated", "timestamp_overlap", "session_ended"]


def decode_reject(value: bytes) -> str:
    import json

    return json.loads(value)["code"]


async def test_a_replayed_message_is_not_applied_twice() -> None:
    broker = MemBroker()
    w = MemWorker(broker)
    w.assign(0)
    h = chunk_headers(CLINIC, 0)
    t0 = 1_767_607_200_000_000
    await w.runtime.on_message(0, 0, b"pt-x", _chunk(0, t0), h)
    n = len(broker.outputs())
    await w.runtime.on_message(0, 0, b"pt-x", _chunk(0, t0), h)  # the same offset again
    assert len(broker.outputs()) == n
    (cp,) = w.runtime.checkpoint([0])
    assert cp.next_offset == 1 and {k for k, _, _ in cp.sessions} == {"s|pt-x|dev-x|s"}


async def test_a_flush_marker_flushes_only_a_session_still_quiet() -> None:
    broker = MemBroker()
    w = MemWorker(broker, idle_timeout_s=10.0)
    w.assign(0)
    h = chunk_headers(CLINIC, 0)
    t0 = 1_767_607_200_000_000
    key = "s|pt-x|dev-x|s"
    await w.runtime.on_message(0, 0, b"pt-x", _chunk(0, t0), h)
    assert w.runtime.idle_markers() == []  # not quiet yet
    w.now_us += 11_000_000
    ((partition, k, value, headers),) = w.runtime.idle_markers()
    assert partition == 0 and k == b"pt-x"
    # data arrives before the marker is consumed: the marker finds the session busy
    await w.runtime.on_message(0, 1, b"pt-x", _chunk(1, t0 + 500_000), h)
    await w.runtime.on_message(0, 2, k, value, headers)
    assert w.runtime.parts[0].sessions[key].is_open
    # a marker naming the session's last chunk flushes it
    value, headers = encode_flush(key, 1)
    before = len(broker.logs[TOPICS.sessions][broker.partition_of(b"pt-x")])
    await w.runtime.on_message(0, 3, k, value, headers)
    assert not w.runtime.parts[0].sessions[key].is_open
    assert len(broker.logs[TOPICS.sessions][broker.partition_of(b"pt-x")]) == before + 1


async def test_a_late_upload_is_analysed_and_its_steps_are_published(messages) -> None:
    broker = MemBroker()
    load(broker, messages)
    w = MemWorker(broker)
    for p in range(N_PARTITIONS):
        w.assign(p)
    await w.run(range(N_PARTITIONS))
    steps = [decode_record(r.value) for part in broker.logs[TOPICS.steps] for r in part]
    slow = sorted(s.t_us for s in steps if s.patient_id == "pt-slow")
    gap = [decode_chunk(v) for k, v, _ in messages if k == b"pt-slow"]
    lo = min(c.t0_us for c in gap if 120 <= c.sequence < 160)
    hi = max(c.end_us for c in gap if 120 <= c.sequence < 160)
    inside = [t for t in slow if lo <= t < hi]
    # 20 s at 80 steps/min: about 26 steps, less the edges of the two segments
    assert len(inside) >= 20, len(inside)
    assert len(set(slow)) == len(slow)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_records_carry_the_receipt_time_of_the_chunk_that_made_them(messages) -> None:
    broker = MemBroker()
    for key, value, _ in messages[:400]:
        broker.append(SETTINGS.topic_chunks, key, value, chunk_headers(CLINIC, 1234567))
    w = MemWorker(broker)
    for p in range(N_PARTITIONS):
        w.assign(p)
    await w.run(range(N_PARTITIONS))
    out = [r for t in OUTPUTS for part in broker.logs[t] for r in part]
    assert out and all(r.headers == [("jw-received-us", b"1234567")] for r in out)


async def test_sessions_past_their_retention_are_deleted_and_tombstoned() -> None:
    broker = MemBroker()
    w = MemWorker(broker)
    w.assign(0)
    h = chunk_headers(CLINIC, 0)
    t0 = 1_767_607_200_000_000
    await w.runtime.on_message(0, 0, b"pt-x", _chunk(0, t0, last=True), h)
    key = "s|pt-x|dev-x|s"
    w.runtime.checkpoint([0])  # the ended session is stored (and kept packed in memory)
    retention_us = w.runtime.retention_us
    assert w.runtime.expire(t0 + retention_us) == 0  # not yet: its data ends after t0
    assert w.runtime.expire(t0 + 500_000 + retention_us + 1) == 1
    (cp,) = w.runtime.checkpoint([0])
    assert (key, None, -1) in cp.sessions  # the tombstone
    assert key not in w.runtime.parts[0].packed and key not in w.runtime.parts[0].sessions
    # on restore, the tombstone after the stored state deletes the key
    assert latest_states([(key, b"x", 3), (key, None, -1)]) == {}
