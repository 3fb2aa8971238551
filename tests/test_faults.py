"""Faults mid-stream on the real broker, the real InfluxDB and the real pipeline processes.

Simulated devices stream three walking patients through the gateway (``justwalk.pipeline``
with its supervisor, which restarts a process that exits) while something breaks:

- the broker (Tansu) is killed (SIGKILL) and started again 5 s later: on memory storage
  it comes back empty, on s3 storage (``LocalStack(broker_storage="s3")``) with everything
  it had acknowledged;
- InfluxDB is down for 45 s;
- the gateway is killed (SIGKILL) and the devices reconnect to its restarted process.

Every chunk must be acknowledged in the end (devices keep what was not, and send it again)
and be in the chunk topic, and InfluxDB must hold exactly what an uninterrupted processor
makes of the chunk topic (``reference``: the same runtime in memory, fed the topic's
messages in their order, resends included), no point missing, extra or different. For
the broker restart the chunks a broker lost after acknowledging them and before the
processor read them cannot come back: the gateway and the processor must say how many
(their ``BROKER LOST DATA`` lines), and InfluxDB must hold exactly the reference of what the
processor had read of the lost log followed by the recreated one. On s3 storage nothing
may be lost: InfluxDB must hold exactly what an uninterrupted processor makes of the
devices' recordings, and nobody may report lost data.

The broker restart tests print a ``FIGURES`` line (chunks acknowledged, steps in InfluxDB
and of an uninterrupted run, chunks lost) for the README's Guarantees (``pytest -s``).
"""

from __future__ import annotations

import ast
import asyncio
import re
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from ingest.registry import provision
from justwalk.config import Settings
from justwalk.device_protocol import DeviceCredential
from justwalk.localstack import LocalStack
from justwalk.pipeline import Pipeline
from justwalk.schema import (
    MEASUREMENT_DAILY,
    MEASUREMENT_STEP,
    MEASUREMENT_WEEKLY,
    RETENTION_DURATION,
    RETENTION_POLICY,
    clinic_database,
)
from justwalk.simulator.device import (
    DEFAULT_MAX_IN_FLIGHT,
    DeviceStats,
    make_chunks,
    stream_samples,
)
from justwalk.simulator.gait_model import GaitProfile, synthesize
from justwalk.simulator.run import simulation_start_us
from justwalk.wire import chunk_headers, encode_chunk
from sinks.influx import InfluxClient
from stream_processors.app import output_topics, session_processor
from stream_processors.runtime import Headers, ProcessorRuntime
from tests.test_processor_crash import influx_contents, lag

pytestmark = [pytest.mark.integration, pytest.mark.fault]

CLINIC = "clinic-faults"
CADENCES = (95.0, 108.0, 121.0)
DURATION_S = 40.0
"""Device time per patient: 80 chunks of 0.5 s."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """A broker and an InfluxDB of this test's own: it kills and restarts them."""
    stack = LocalStack(log_dir=tmp_path / "stack-logs", workdir=tmp_path / "stack")
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def durable_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """Like ``own_stack``, with the broker on s3 storage (it outlives broker restarts)."""
    stack = LocalStack(log_dir=tmp_path / "stack-logs", workdir=tmp_path / "stack",
                       broker_storage="s3")
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def fault_settings(stack: LocalStack, tmp_path: Path) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    base = Settings()
    topics = {f: f"{getattr(base, f)}.{suffix}" for f in base.__dataclass_fields__
              if f.startswith("topic_") and f != "topic_partitions"}
    return stack.settings(base).replace(
        **topics, topic_partitions=4, influx_db=f"faults_{suffix}",
        processor_group=f"proc-{suffix}", sink_group=f"sink-{suffix}",
        kafka_session_timeout_s=6.0, kafka_heartbeat_interval_s=0.5,
        kafka_rebalance_timeout_s=3.0, processor_checkpoint_interval_s=1.0,
        kafka_delivery_timeout_s=3.0, session_idle_timeout_s=0.0,
        gateway_port=_free_port(), device_registry=tmp_path / "devices.json",
        risk_policies=tmp_path / "none.json", patient_profiles=tmp_path / "none.json")


@dataclass
class Devices:
    """The simulated patients: credentials, recordings and their chunk messages."""

    creds: list[DeviceCredential]
    samples: list[np.ndarray]
    start_us: int
    session_id: str

    def messages(self, i: int) -> list[bytes]:
        """Patient ``i``'s chunks as the device sends them, by sequence number."""
        return [encode_chunk(c) for c in make_chunks(
            self.creds[i], self.samples[i], start_us=self.start_us, sample_rate_hz=100.0,
            session_id=self.session_id)]


def devices(settings: Settings, tmp_path: Path, speed: float) -> Devices:
    creds = provision(settings.device_registry, tmp_path / "creds.json",
                      [(f"dev-{i}", f"pt-{i}", CLINIC) for i in range(len(CADENCES))])
    samples = [synthesize(GaitProfile(cadence_spm=c, step_time_cv=0.03,
                                      walking_s=((1.0, DURATION_S - 4.0),)),
                          DURATION_S, 100.0, np.random.default_rng(40 + i)).samples
               for i, c in enumerate(CADENCES)]
    start_us = simulation_start_us(time.time_ns() // 1000, DURATION_S, speed)
    return Devices(creds, samples, start_us, f"s-{uuid.uuid4().hex[:6]}")


async def stream(pipeline: Pipeline, d: Devices, speed: float) -> list[DeviceStats]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        return list(await asyncio.gather(*(
            stream_samples(pipeline.gateway_url, cred, d.samples[i], start_us=d.start_us,
                           sample_rate_hz=100.0, speed=speed, session_id=d.session_id,
                           http=http, reconnect_delay_s=0.1, give_up_after_s=60.0)
            for i, cred in enumerate(d.creds))))


class _Records:
    """The runtime's sender in memory: the output records, in order."""

    def __init__(self, outputs: set[str]) -> None:
        self.outputs = outputs
        self.values: list[bytes] = []

    async def send(self, topic: str, key: bytes, value: bytes | None, *,
                   partition: int | None = None, headers: Headers | None = None) -> None:
        if topic in self.outputs and value is not None:
            self.values.append(value)


async def reference(settings: Settings, chunks: list[list[bytes]], name: str
                    ) -> dict[tuple[str, tuple[Any, ...], int], dict]:
    """InfluxDB's contents after an uninterrupted processor got ``chunks[i]`` of each patient.

    The records are made by the processor's runtime in memory and written to a database
    ``{influx_db}_{name}`` by the same client the sink uses; read back like the real one.
    """
    from justwalk.records import decode_record
    from justwalk.schema import record_to_line

    topics = output_topics(settings)
    records = _Records({topics.steps, topics.windows, topics.bouts, topics.events,
                        topics.alerts, topics.risk, topics.sessions})
    runtime = ProcessorRuntime(session_processor(settings), records, topics, clock=lambda: 0)
    runtime.assign(0, {})
    offset = 0
    for patient in chunks:
        for value in patient:
            await runtime.on_message(0, offset, b"", value, chunk_headers(CLINIC, 0))
            offset += 1
    db = f"{settings.influx_db}_{name}"
    async with InfluxClient(settings.influx_url, clinic_database(db, CLINIC)) as client:
        await client.ensure_database(RETENTION_POLICY, RETENTION_DURATION)
        lines = [record_to_line(decode_record(v)) for v in records.values]
        await client.write_lines("\n".join(lines), retention_policy=None)
    return await influx_contents(settings.replace(influx_db=db), CLINIC)


async def chunk_log(settings: Settings) -> dict[str, list[bytes]]:
    """Every chunk message of the chunk topic, per patient, in the topic's order."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic_chunks, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        out: dict[str, list[bytes]] = {}
        # to the end of every partition (the high watermark of a fetch answer: Tansu's
        # ListOffsets is unreliable), however slow the first answers are
        pending = set(tps)
        deadline = asyncio.get_running_loop().time() + 60.0
        while pending and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                for m in messages:
                    if m.key is not None and m.value is not None:
                        out.setdefault(m.key.decode(), []).append(m.value)
            for tp in list(pending):
                hw = consumer.highwater(tp)
                if hw is not None and await consumer.position(tp) >= hw:
                    pending.discard(tp)
        assert not pending, f"the chunk topic could not be read to its end: {pending}"
        return out
    finally:
        await consumer.stop()


def sequences(messages: list[bytes]) -> list[int]:
    from justwalk.wire import peek_sequence_and_session

    out = []
    for v in messages:
        sequence, _ = peek_sequence_and_session(v)
        out.append(-1 if sequence is None else sequence)
    return out


def by_patient(contents: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key, fields in contents.items():
        out.setdefault(dict(key[1]).get("patient_id", ""), {})[key] = fields
    return out


def differences(expected: dict, actual: dict) -> tuple[list, list, list]:
    # the rollups are InfluxDB's continuous queries over these points, run on its own
    # schedule in the sink's database only: the points themselves are compared
    expected, actual = ({k: v for k, v in d.items()
                         if k[0] not in (MEASUREMENT_DAILY, MEASUREMENT_WEEKLY)}
                        for d in (expected, actual))
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    changed = sorted(k for k in expected.keys() & actual.keys() if expected[k] != actual[k])
    return missing, extra, changed


async def drained(settings: Settings, timeout_s: float = 60.0) -> None:
    """Wait until the processor and the sink have committed everything and InfluxDB holds
    still."""
    outputs = [settings.topic_steps, settings.topic_windows, settings.topic_bouts,
               settings.topic_events, settings.topic_alerts, settings.topic_risk,
               settings.topic_sessions]
    deadline = time.monotonic() + timeout_s
    previous, still, last = -1, 0, ""
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        try:
            waiting = (await lag(settings, settings.processor_group, [settings.topic_chunks])
                       + await lag(settings, settings.sink_group, outputs))
            n = len(await influx_contents(settings, CLINIC))
        except Exception as exc:  # a server still coming back
            still, last = 0, repr(exc)
            continue
        still = still + 1 if (waiting == 0 and n == previous) else 0
        previous, last = n, f"{waiting} messages not committed, {n} points"
        if still >= 3:
            return
    raise AssertionError(f"not drained after {timeout_s} s (last: {last})")


def all_acked(stats: list[DeviceStats]) -> None:
    for s in stats:
        assert s.completed and s.acked == s.chunks and not s.errors, (
            s.device_id, s.acked, s.chunks, s.error_codes)


def log_text(pipeline: Pipeline, name: str) -> str:
    return (pipeline.log_dir / f"{name}.log").read_text(errors="replace")


def steps(contents: dict) -> int:
    return sum(1 for key in contents if key[0] == MEASUREMENT_STEP)


def figures(storage: str, stats: list[DeviceStats], contents: dict, uninterrupted: dict,
            lost: int) -> None:
    """The line the README's broker-restart table is made from."""
    print(f"\nFIGURES broker restart, {storage} storage: chunks acked "
          f"{sum(s.acked for s in stats)}, steps in InfluxDB {steps(contents)}, steps of an "
          f"uninterrupted run {steps(uninterrupted)}, chunks lost {lost}")


async def kill_broker_mid_stream(stack: LocalStack, pipeline: Pipeline, settings: Settings,
                                 streaming: asyncio.Task[list[DeviceStats]], speed: float
                                 ) -> tuple[float, float]:
    """Kill the broker (SIGKILL) holding acknowledged chunks the processor has not read
    (it is paused 1.5 s first), start it again 5 s later; (killed, restarted) wall times."""
    await asyncio.sleep(0.3 * DURATION_S / speed)
    assert not streaming.done()
    processor = pipeline.procs["processor-0"]
    processor.send_signal(signal.SIGSTOP)
    await asyncio.sleep(1.5)
    stack.kill_kafka()
    killed = time.time()
    processor.send_signal(signal.SIGCONT)
    await asyncio.sleep(5.0)
    restarted = time.time()
    await asyncio.to_thread(stack.start_kafka, topics=[settings])
    return killed, restarted


# ---------------------------------------------------------------------------------- tests


@pytest.mark.timeout(120)
async def test_broker_restart_every_ack_is_in_influxdb_or_reported_lost(
        own_stack: LocalStack, tmp_path: Path) -> None:
    speed = 4.0
    settings = fault_settings(own_stack, tmp_path)
    d = devices(settings, tmp_path, speed)
    pipeline = Pipeline(settings, log_dir=tmp_path / "logs", supervise=True)
    pipeline.start()
    try:
        streaming = asyncio.create_task(stream(pipeline, d, speed))
        # the processor falls behind (paused) while the gateway acknowledges chunks, so
        # the broker dies holding acknowledged chunks nobody has processed
        killed, restarted = await kill_broker_mid_stream(own_stack, pipeline, settings,
                                                         streaming, speed)
        stats = await asyncio.wait_for(streaming, 90)
        await drained(settings)
        contents = await influx_contents(settings, CLINIC)
        recreated = await chunk_log(settings)
    finally:
        pipeline.stop()
    all_acked(stats)
    # devices were told to retry, and sent those chunks again
    assert sum(s.retried + s.reconnects for s in stats) > 0
    acked_before = [sum(1 for t in s.acked_at.values() if t < restarted) for s in stats]
    assert all(0 < n < s.chunks for n, s in zip(acked_before, stats, strict=True))
    assert all(t < killed + 1.0 for s in stats for t in s.acked_at.values() if t < restarted)
    # every chunk acknowledged after the restart is in the recreated topic
    for s, b in zip(stats, acked_before, strict=True):
        assert set(range(b, s.chunks)) <= set(sequences(recreated[s.patient_id]))

    # the loss was noticed and said: by the gateway (what it had acknowledged) and the
    # processor (what it had processed); each exited non-zero and was started again
    gateway_log, processor_log = log_text(pipeline, "gateway"), log_text(pipeline, "processor-0")
    assert "BROKER LOST DATA" in gateway_log and "BROKER LOST DATA" in processor_log
    exits = dict(pipeline.exits)
    assert exits.get("processor-0") == 3 and exits.get("gateway", 0) != 0, pipeline.exits
    acked = ast.literal_eval(re.search(r"Acknowledged ends per partition of this gateway: "
                                       r"(\{.*?\}\})", gateway_log)[1])[settings.topic_chunks]
    processed = {int(p): int(done) for p, done, _ in re.findall(
        re.escape(settings.topic_chunks) + r"\[(\d+)\]: processed up to offset (\d+), the log "
        r"had reached (\d+)", processor_log)}
    reported_lost = sum(end - processed.get(p, 0) for p, end in acked.items())
    assert "stored" in processor_log and "states again" in processor_log

    # InfluxDB holds what an uninterrupted processor makes of the chunks it had read of
    # the lost log (chunks 0..a-1 of each patient; a is found here) followed by the
    # recreated log; chunks a..b-1 were acknowledged and lost, and their number is what
    # the gateway and the processor reported
    actual = by_patient(contents)
    lost_total = 0
    for i, s in enumerate(stats):
        pid, msgs = s.patient_id, d.messages(i)
        b = acked_before[i]
        tried = []
        for a in range(b, max(b - 40, 0), -1):
            expected = by_patient(await reference(settings, [msgs[:a] + recreated[pid]],
                                                  f"{pid}_{a}")).get(pid, {})
            diff = differences(expected, actual.get(pid, {}))
            if diff == ([], [], []):
                lost_total += len(set(range(a, b)) - set(sequences(recreated[pid])))
                break
            tried.append((sum(map(len, diff)), a, [d[:2] for d in diff]))
        else:
            raise AssertionError((pid, b, min(tried)))
    # the broker's acknowledgements the gateway counted include chunks whose ack never
    # reached the device (in flight when it stopped): those were sent again, not lost
    in_flight = DEFAULT_MAX_IN_FLIGHT * len(stats)
    assert 0 < lost_total <= reported_lost <= lost_total + in_flight, (
        lost_total, acked, processed)
    figures("memory", stats, contents,
            await reference(settings, [d.messages(i) for i in range(len(stats))], "clean"),
            lost_total)


@pytest.mark.timeout(240)
async def test_broker_restart_on_durable_storage_loses_nothing(
        durable_stack: LocalStack, tmp_path: Path) -> None:
    speed = 4.0
    # Tansu on s3 reads each partition's objects at every fetch, and moto's server lists
    # a bucket by scanning all of it: fewer partitions and fetches keep the store's work
    # (and the test) within bounds on a busy machine
    settings = fault_settings(durable_stack, tmp_path).replace(
        topic_partitions=1, kafka_fetch_max_wait_ms=500)
    d = devices(settings, tmp_path, speed)
    pipeline = Pipeline(settings, log_dir=tmp_path / "logs", supervise=True)
    pipeline.start()
    try:
        streaming = asyncio.create_task(stream(pipeline, d, speed))
        killed, restarted = await kill_broker_mid_stream(durable_stack, pipeline, settings,
                                                         streaming, speed)
        stats = await asyncio.wait_for(streaming, 90)
        # a broker on s3 storage reads slowly (tens of seconds behind on a busy machine)
        await drained(settings, timeout_s=150.0)
        contents = await influx_contents(settings, CLINIC)
        log = await chunk_log(settings)
    finally:
        pipeline.stop()
    all_acked(stats)
    # the broker was down while the devices streamed: they were told to retry, or lost
    # their connection, and sent again from their last acknowledged chunk
    assert sum(s.retried + s.reconnects for s in stats) > 0
    assert all(any(t < killed for t in s.acked_at.values())
               and any(t > restarted for t in s.acked_at.values()) for s in stats)
    # nobody lost anything: no loss reported, every chunk in the topic
    for path in sorted(pipeline.log_dir.glob("*.log")):
        assert "BROKER LOST DATA" not in path.read_text(errors="replace"), path.name
    assert all(sorted(set(sequences(log[s.patient_id]))) == list(range(s.chunks))
               for s in stats)
    # InfluxDB holds what an uninterrupted processor makes of the devices' recordings
    uninterrupted = await reference(settings, [d.messages(i) for i in range(len(stats))],
                                    "clean")
    missing, extra, changed = differences(uninterrupted, contents)
    assert (len(missing), len(extra), len(changed)) == (0, 0, 0), (
        missing[:3], extra[:3], changed[:3])
    assert steps(contents) == steps(uninterrupted) > 0
    figures("s3", stats, contents, uninterrupted, 0)


@pytest.mark.timeout(120)
async def test_influxdb_down_45_s_loses_and_doubles_nothing(
        own_stack: LocalStack, tmp_path: Path) -> None:
    speed = 2.0
    settings = fault_settings(own_stack, tmp_path)
    d = devices(settings, tmp_path, speed)
    pipeline = Pipeline(settings, log_dir=tmp_path / "logs", supervise=True)
    pipeline.start()
    try:
        streaming = asyncio.create_task(stream(pipeline, d, speed))
        await asyncio.sleep(3.0)
        await asyncio.to_thread(own_stack.stop_influx)
        await asyncio.sleep(45.0)
        await asyncio.to_thread(own_stack.start_influx)
        stats = await asyncio.wait_for(streaming, 30)
        await drained(settings)
        contents = await influx_contents(settings, CLINIC)
        log = await chunk_log(settings)
    finally:
        pipeline.stop()
    all_acked(stats)
    assert not pipeline.exits, pipeline.exits  # nothing had to restart
    assert "InfluxDB write failed" in log_text(pipeline, "sink")
    assert all(sorted(set(sequences(log[s.patient_id]))) == list(range(s.chunks))
               for s in stats)
    expected = await reference(settings, list(log.values()), "ref")
    missing, extra, changed = differences(expected, contents)
    assert (len(missing), len(extra), len(changed)) == (0, 0, 0), (
        missing[:3], extra[:3], changed[:3])


@pytest.mark.timeout(120)
async def test_gateway_restart_devices_reconnect_and_nothing_is_lost_or_doubled(
        local_stack: LocalStack, tmp_path: Path) -> None:
    speed = 4.0
    settings = fault_settings(local_stack, tmp_path)
    d = devices(settings, tmp_path, speed)
    pipeline = Pipeline(settings, log_dir=tmp_path / "logs", supervise=True)
    pipeline.start()
    try:
        streaming = asyncio.create_task(stream(pipeline, d, speed))
        await asyncio.sleep(0.4 * DURATION_S / speed)
        pipeline.procs["gateway"].send_signal(signal.SIGKILL)
        stats = await asyncio.wait_for(streaming, 60)
        await drained(settings)
        contents = await influx_contents(settings, CLINIC)
        log = await chunk_log(settings)
    finally:
        pipeline.stop()
    all_acked(stats)
    assert ("gateway", -signal.SIGKILL) in pipeline.exits
    assert sum(s.reconnects for s in stats) >= len(stats)
    assert sum(s.resent for s in stats) > 0  # unanswered chunks went again
    assert all(sorted(set(sequences(log[s.patient_id]))) == list(range(s.chunks))
               for s in stats)
    expected = await reference(settings, list(log.values()), "ref")
    missing, extra, changed = differences(expected, contents)
    assert (len(missing), len(extra), len(changed)) == (0, 0, 0), (
        missing[:3], extra[:3], changed[:3])
