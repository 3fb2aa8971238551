"""The Kafka -> InfluxDB sink against the real broker and the real InfluxDB (no mocks).

Most tests use the shared local stack; the outage tests start an InfluxDB of their own so
they can stop and restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from justwalk import procs
from justwalk.config import Settings
from justwalk.kafka_topics import ensure_topics
from justwalk.records import GaitWindowRecord, Record, StepRecord
from justwalk.schema import MEASUREMENT_GAIT_WINDOW, MEASUREMENT_STEP, clinic_database, qualified
from sinks.dead_letters import DL_DETAIL, DL_OFFSET, DL_PARTITION, DL_REASON, DL_TOPIC
from sinks.influx import InfluxClient, InfluxQueryError, InfluxUnavailable, quote_ident
from sinks.kafka_sink import InfluxSink

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
# recent: steps live in the 90-day raw retention policy
T0_US = (time.time_ns() // 1000 - 3600 * 1_000_000) // 5_000_000 * 5_000_000
Message = tuple[str, bytes | None, bytes | None]  # topic, value, key


# -- records and Kafka helpers ------------------------------------------------------------


def steps(n: int, *, patients: int = 3, start: int = 0) -> list[StepRecord]:
    out = []
    for i in range(start, start + n):
        p = i % patients
        out.append(StepRecord(
            "clinic-a", f"pt-{p:03d}", f"dev-{p:03d}", f"sess-{p}", T0_US + i * 250_000, i,
            None if i == 0 else 0.5 + i / 1000,
        ))
    return out


def windows(n: int, *, patients: int = 3, start: int = 0) -> list[GaitWindowRecord]:
    out = []
    for i in range(start, start + n):
        p, walking = i % patients, i % 4 != 3
        out.append(GaitWindowRecord(
            "clinic-a", f"pt-{p:03d}", f"dev-{p:03d}", f"sess-{p}", T0_US + i * 5_000_000, 5.0,
            n_steps=9 + i % 3 if walking else 0, walking=walking,
            cadence_spm=100.0 + i / 3 if walking else None,
            mean_step_time_s=60 / (100.0 + i / 3) if walking else None,
        ))
    return out


def to_messages(settings: Settings, records: Iterable[Record]) -> list[Message]:
    return [
        (settings.topic_steps if isinstance(r, StepRecord) else settings.topic_windows,
         r.to_json(), r.patient_id.encode())
        for r in records
    ]


Offsets = dict[TopicPartition, int]


class Feed:
    """Produces to the record topics and remembers the offsets it produced up to.

    (The end offsets Tansu 0.6 reports via ListOffsets count batches, not records, so the
    producer's own acknowledgements are the reference.)
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.produced: Offsets = {}

    async def produce(self, messages: Iterable[Message]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap,
                                    linger_ms=5)
        await producer.start()
        try:
            sent = [await producer.send(topic, value, key=key)
                    for topic, value, key in messages]
            for meta in await asyncio.gather(*sent):
                tp = TopicPartition(meta.topic, meta.partition)
                self.produced[tp] = max(self.produced.get(tp, 0), meta.offset + 1)
        finally:
            await producer.stop()

    async def committed(self) -> Offsets:
        """Offsets committed by the sink's group (partitions without a commit left out)."""
        settings = self.settings
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                    group_id=settings.sink_group, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in (settings.topic_steps, settings.topic_windows)
                   for p in range(settings.topic_partitions)]
            committed = {tp: await consumer.committed(tp) for tp in tps}
            return {tp: off for tp, off in committed.items() if off}
        finally:
            await consumer.stop()


# -- InfluxDB helpers ---------------------------------------------------------------------


async def count(client: InfluxClient, measurement: str) -> int:
    try:
        rows = await client.query_rows(
            f"SELECT count(session_id) FROM {qualified(measurement)}"
        )
    except InfluxUnavailable:
        return -1
    except InfluxQueryError as exc:  # before the sink has created the database and its RPs
        if "database not found" in exc.message or "retention policy not found" in exc.message:
            return -1
        raise
    return int(rows[0]["count"]) if rows else 0


async def wait_until(check: Callable[[], bool | Awaitable[bool]], what: str,
                     timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def wait_for_points(client: InfluxClient, n_steps: int, n_windows: int,
                          timeout_s: float = 20.0) -> None:
    async def check() -> bool:
        return (await count(client, MEASUREMENT_STEP) == n_steps
                and await count(client, MEASUREMENT_GAIT_WINDOW) == n_windows)

    await wait_until(check, f"{n_steps} steps and {n_windows} windows in InfluxDB", timeout_s)


async def stored_steps(client: InfluxClient) -> set[tuple[Any, ...]]:
    rows = await client.query_rows(f"SELECT * FROM {qualified(MEASUREMENT_STEP)} GROUP BY *")
    return {(r["clinic_id"], r["patient_id"], r["device_id"], r["session_id"], r["time"],
             r["step_index"], r.get("step_time_s")) for r in rows}


def expected_steps(records: Iterable[StepRecord]) -> set[tuple[Any, ...]]:
    return {(r.clinic_id, r.patient_id, r.device_id, r.session_id, r.t_us * 1000,
             r.step_index, r.step_time_s) for r in records}


async def stored_windows(client: InfluxClient) -> set[tuple[Any, ...]]:
    rows = await client.query_rows(
        f"SELECT * FROM {qualified(MEASUREMENT_GAIT_WINDOW)} GROUP BY *"
    )
    return {(r["patient_id"], r["session_id"], r["time"], r["n_steps"], r["walking"],
             r.get("cadence_spm"), r.get("mean_step_time_s"), float(r["window_s"]))
            for r in rows}


def expected_windows(records: Iterable[GaitWindowRecord]) -> set[tuple[Any, ...]]:
    return {(r.patient_id, r.session_id, r.window_start_us * 1000, r.n_steps, r.walking,
             r.cadence_spm, r.mean_step_time_s, r.window_s) for r in records}


# -- running a sink -----------------------------------------------------------------------


def make_sink(settings: Settings, **kwargs: Any) -> InfluxSink:
    kwargs.setdefault("retry_initial_s", 0.1)
    kwargs.setdefault("retry_max_s", 1.0)
    return InfluxSink.from_settings(settings, **kwargs)


@asynccontextmanager
async def running(sink: InfluxSink) -> AsyncIterator[asyncio.Task[None]]:
    """Run the sink in a task; on exit ask it to stop (flush + commit) and wait for it."""
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def settings(stack_settings: Settings) -> Settings:
    settings = stack_settings.replace(sink_flush_interval_s=0.1)
    await ensure_topics(settings)
    return settings


@pytest.fixture
def feed(settings: Settings) -> Feed:
    return Feed(settings)


@pytest.fixture
async def influx(settings: Settings) -> AsyncIterator[InfluxClient]:
    client = InfluxClient(settings.influx_url, clinic_database(settings.influx_db, "clinic-a"))
    try:
        yield client
        await client.query(f"DROP DATABASE {quote_ident(client.db)}")
    finally:
        await client.close()


# -- tests against the shared stack -------------------------------------------------------


async def test_sink_writes_steps_and_windows_end_to_end(
    feed: Feed, settings: Settings, influx: InfluxClient
) -> None:
    step_records, window_records = steps(120), windows(24)
    await feed.produce(to_messages(settings, [*step_records, *window_records]))
    total = len(step_records) + len(window_records)

    sink = make_sink(settings.replace(sink_batch_points=25))
    async with running(sink):
        await wait_for_points(influx, len(step_records), len(window_records))
        await wait_until(lambda: sink.points_written_ == total, "the sink's count")

    assert await stored_steps(influx) == expected_steps(step_records)
    assert await stored_windows(influx) == expected_windows(window_records)
    assert sink.points_written_ == total
    assert sink.dead_lettered_ == 0
    assert sink.batches_written_ >= total // 25
    assert await feed.committed() == feed.produced
    assert sum(feed.produced.values()) == total


async def test_records_it_cannot_write_go_to_the_dead_letter_topic_and_the_rest_lands(
    feed: Feed, settings: Settings, influx: InfluxClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sinks.kafka_sink")
    good_steps, good_windows = steps(30), windows(6)
    bad_kind = {**json.loads(good_steps[1].to_json()), "kind": "stride"}
    missing_field = json.loads(good_windows[1].to_json())
    del missing_field["n_steps"]
    injected = StepRecord("clinic-a", "pt-x\nstep,patient_id=evil", "d", "s", T0_US, 1, 0.5)
    far_future = StepRecord("clinic-a", "pt-x", "d", "s", 2**62, 2, 0.5)  # past year 2262
    too_old = StepRecord("clinic-a", "pt-x", "d", "s", 0, 3, 0.5)  # outside the retention
    s, w = settings.topic_steps, settings.topic_windows
    undecodable: list[Message] = [
        (s, b"\xff not json", b"pt-000"),
        (s, json.dumps(bad_kind).encode(), b"pt-001"),
        (w, json.dumps(missing_field).encode(), b"pt-002"),
        (w, None, b"pt-000"),  # a tombstone
    ]
    invalid: list[Message] = [(s, injected.to_json(), b"pt-001")]
    rejected = to_messages(settings, [far_future, too_old])
    messages = to_messages(settings, [*good_steps, *good_windows])
    # Bad records in the middle of the good ones, so they share batches.
    messages[10:10] = undecodable[:3]
    messages[25:25] = rejected
    messages[30:30] = [undecodable[3], *invalid]
    await feed.produce(messages)
    bad = [*undecodable, *invalid, *rejected]

    sink = make_sink(settings)
    async with running(sink):
        await wait_until(
            lambda: sink.points_written_ + sink.dead_lettered_ == len(messages),
            "all records written or dead-lettered",
        )
    await wait_for_points(influx, len(good_steps), len(good_windows), timeout_s=2)
    assert await stored_steps(influx) == expected_steps(good_steps)
    assert await stored_windows(influx) == expected_windows(good_windows)
    assert sink.points_written_ == len(good_steps) + len(good_windows)
    assert sink.points_rejected_ == len(rejected)
    assert sink.dead_letters_ == {"undecodable": len(undecodable), "invalid": len(invalid),
                                  "rejected": len(rejected)}
    # Dead-lettered records are committed too: they are stored, with the reason.
    assert await feed.committed() == feed.produced
    letters = await read_all(settings, settings.topic_dead_letter)
    assert sorted((m.value or b"") for m in letters) == sorted((v or b"") for _, v, _ in bad)
    by_value = {m.value: dict(m.headers) for m in letters}
    h = by_value[injected.to_json()]
    assert h[DL_REASON] == b"invalid" and b"line break" in h[DL_DETAIL]
    assert h[DL_TOPIC] == s.encode() and int(h[DL_OFFSET]) >= 0 and h[DL_PARTITION].isdigit()
    h = by_value[far_future.to_json()]
    assert h[DL_REASON] == b"rejected" and b"out of range" in h[DL_DETAIL]
    h = by_value[too_old.to_json()]
    assert h[DL_REASON] == b"rejected" and b"beyond retention policy" in h[DL_DETAIL]
    assert by_value[None][DL_REASON] == b"undecodable"
    assert sorted(m.key for m in letters) == sorted(k for _, _, k in bad)
    # Every dead letter is logged with where it came from; the counts at the end.
    log = caplog.text
    assert log.count("to the dead-letter topic: ") == len(undecodable) + len(invalid)
    assert f"{s}[" in log and f"{w}[" in log
    assert log.count("InfluxDB rejected the point") == len(rejected)
    assert "points beyond retention policy" in log
    assert "7 records dead-lettered (invalid: 1, rejected: 2, undecodable: 4)" in log


async def read_all(settings: Settings, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        out: list[Any] = []
        while batch := await consumer.getmany(timeout_ms=1000):
            out += [m for msgs in batch.values() for m in msgs]
        return out
    finally:
        await consumer.stop()


async def test_two_sinks_in_one_group_share_the_partitions(
    feed: Feed, settings: Settings, influx: InfluxClient
) -> None:
    first, second = make_sink(settings), make_sink(settings)
    async with running(first):
        await feed.produce(to_messages(settings, steps(60)))
        await wait_for_points(influx, 60, 0)
        async with running(second):  # a rebalance while records keep coming
            for k in range(6):
                await feed.produce(to_messages(settings, steps(10, start=60 + 10 * k)))
                await asyncio.sleep(0.3)
            await wait_for_points(influx, 120, 0)
            await wait_until(lambda: bool(second.consumer.assignment()), "an assignment")
    assert await stored_steps(influx) == expected_steps(steps(120))
    # At least once: records of a revoked partition may be written by both owners.
    assert first.points_written_ + second.points_written_ >= 120
    assert await feed.committed() == feed.produced


async def test_a_records_topic_the_broker_lost_stops_the_sink_loudly(
    feed: Feed, settings: Settings, influx: InfluxClient, caplog: pytest.LogCaptureFixture
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from justwalk.broker_loss import BrokerLostData

    sink = make_sink(settings)
    task = asyncio.create_task(sink.run(asyncio.Event()))
    try:
        await feed.produce(to_messages(settings, steps(30)))
        await wait_for_points(influx, 30, 0)
        # the steps topic lost and recreated (a broker without storage restarted): shorter
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([settings.topic_steps])
            await asyncio.sleep(0.2)
            await admin.create_topics([NewTopic(settings.topic_steps,
                                                settings.topic_partitions, 1)])
        finally:
            await admin.close()
        await feed.produce(to_messages(settings, steps(3, start=100)))
        with pytest.raises(BrokerLostData, match=settings.topic_steps):
            await asyncio.wait_for(asyncio.shield(task), 30)
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    assert "BROKER LOST DATA" in caplog.text
    assert sink.points_written_ == 30


async def test_sink_recreates_a_dropped_database(
    feed: Feed, settings: Settings, influx: InfluxClient
) -> None:
    sink = make_sink(settings)
    async with running(sink):
        await feed.produce(to_messages(settings, steps(10)))
        await wait_for_points(influx, 10, 0)
        await influx.query(f"DROP DATABASE {quote_ident(influx.db)}")
        await feed.produce(to_messages(settings, steps(10, start=10)))
        await wait_for_points(influx, 10, 0)
    assert await stored_steps(influx) == expected_steps(steps(10, start=10))
    assert sink.points_written_ == 20


async def test_run_sink_flushes_commits_and_exits_on_sigterm(
    feed: Feed, settings: Settings, influx: InfluxClient, tmp_path: Path
) -> None:
    # One full batch of 48 is written at once; the other 5 records wait for a flush
    # interval that never comes, so only the SIGTERM handler's final flush writes them.
    await feed.produce(to_messages(settings, [*steps(45), *windows(8)]))
    settings = settings.replace(sink_batch_points=48, sink_flush_interval_s=600.0)
    log_path = tmp_path / "sink.log"
    proc = procs.spawn([sys.executable, "-m", "justwalk.cli", "sink"], log_path=log_path,
                       env={**os.environ, **settings.to_env()}, cwd=REPO)
    try:
        async def first_batch_written() -> bool:
            n = await count(influx, MEASUREMENT_STEP) + await count(influx, MEASUREMENT_GAIT_WINDOW)
            return n == 48

        await wait_until(first_batch_written, "the first batch", timeout_s=30)
        await asyncio.sleep(1.0)  # the remaining 5 records reach the sink's buffer
        assert sum((await feed.committed()).values()) == 48  # the buffered 5: not yet
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 15)
    finally:
        await asyncio.to_thread(procs.stop, proc)
    assert code == 0, procs.log_tail(log_path)
    assert "sink stopped: 53 points written in 2 batches" in log_path.read_text()
    await wait_for_points(influx, 45, 8, timeout_s=1)
    assert await feed.committed() == feed.produced


# -- outages, with an InfluxDB of the test's own ------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnInfluxd:
    """An influxd this test starts, stops and restarts (same port, same data)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root / "influxdb.conf"
        self.config.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{_free_port()}"\n'
            f'[meta]\n  dir = "{root / "meta"}"\n'
            f'[data]\n  dir = "{root / "data"}"\n  wal-dir = "{root / "wal"}"\n'
            "  query-log-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}  # no INFLUXDB_* overrides
        self.proc = procs.spawn(["influxd", "-config", self.config],
                                log_path=self.root / "influxd.log", env=env)
        async with InfluxClient(self.url, "_", timeout_s=1) as client:
            for _ in range(300):
                if self.proc.poll() is not None:
                    raise RuntimeError(procs.log_tail(self.root / "influxd.log"))
                try:
                    await client.ping()
                    return
                except InfluxUnavailable:
                    await asyncio.sleep(0.05)
        raise RuntimeError("influxd did not answer /ping")

    async def stop(self) -> None:
        if self.proc is not None:
            await asyncio.to_thread(procs.stop, self.proc)
            self.proc = None


@pytest.fixture
async def own_influxd(tmp_path: Path) -> AsyncIterator[OwnInfluxd]:
    server = OwnInfluxd(tmp_path / "influxd")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def outage_settings(settings: Settings, own_influxd: OwnInfluxd) -> Settings:
    return settings.replace(influx_url=own_influxd.url, sink_batch_points=20)


@pytest.fixture
async def own_client(outage_settings: Settings) -> AsyncIterator[InfluxClient]:
    db = clinic_database(outage_settings.influx_db, "clinic-a")  # the sink writes there
    async with InfluxClient(outage_settings.influx_url, db) as client:
        yield client


@pytest.mark.timeout(60)
async def test_influxdb_outage_loses_nothing_and_writes_everything_once(
    feed: Feed, outage_settings: Settings, own_influxd: OwnInfluxd, own_client: InfluxClient
) -> None:
    settings = outage_settings
    before, during = steps(30), [*steps(100, start=30), *windows(10)]
    sink = make_sink(settings)
    async with running(sink):
        await feed.produce(to_messages(settings, before))
        await wait_for_points(own_client, 30, 0)
        committed = await feed.committed()
        assert sum(committed.values()) == 30

        await own_influxd.stop()
        await feed.produce(to_messages(settings, during))
        # The sink keeps retrying; its buffer fills up and fetching pauses.
        await wait_until(lambda: sink.write_failures_ >= 3 and sink.buffered == 20,
                         "failed writes and a full buffer")
        assert sink.consumer.paused()
        committed = await feed.committed()
        assert sum(committed.values()) == 30  # nothing committed during the outage

        await own_influxd.start()
        await wait_for_points(own_client, 130, 10)
        await wait_until(lambda: sink.points_written_ == 140, "the sink's count")

    assert sink.points_written_ == 140  # every record written exactly once by the sink
    assert sink.dead_lettered_ == 0
    assert await stored_steps(own_client) == expected_steps([*before, *steps(100, start=30)])
    assert await stored_windows(own_client) == expected_windows(windows(10))
    assert await feed.committed() == feed.produced


@pytest.mark.timeout(60)
async def test_records_buffered_during_an_outage_are_replayed_by_the_next_run(
    feed: Feed, outage_settings: Settings, own_influxd: OwnInfluxd, own_client: InfluxClient
) -> None:
    settings = outage_settings.replace(sink_batch_points=1000)
    first = make_sink(settings, shutdown_timeout_s=0.5)
    async with running(first):
        await feed.produce(to_messages(settings, steps(10)))
        await wait_for_points(own_client, 10, 0)
        await own_influxd.stop()
        await feed.produce(to_messages(settings, steps(15, start=10)))
        await wait_until(lambda: first.buffered == 15 and first.write_failures_ > 0,
                         "records buffered")
    # The stop gave up on the last batch: it is not committed, so not lost.
    assert first.points_written_ == 10
    committed = await feed.committed()
    assert sum(committed.values()) == 10

    await own_influxd.start()
    second = make_sink(settings)
    async with running(second):
        await wait_for_points(own_client, 25, 0)
    assert second.points_written_ == 15
    assert await feed.committed() == feed.produced
