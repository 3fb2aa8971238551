"""A crash, a deploy or a scale-out changes nothing in InfluxDB (real broker, real InfluxDB,
the processor and sink as the child processes production runs).

The same input (``tests.scenario``: four simulated patients with a near-fall, a fall, a gap
filled by a late upload and a device that goes quiet, plus the real MS recording) is
streamed into the chunk topic, paced, once with an uninterrupted processor and once with
each disturbance mid-stream:

- the processor killed with SIGKILL and started again;
- the processor stopped with SIGTERM (a deploy) and started again;
- a second processor joining the group (the partitions are split between the two).

Each run's InfluxDB database must hold exactly the reference run's points: every
measurement, tag set, time and field, step and bout numbers included.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from justwalk import procs
from justwalk.config import Settings, child_env
from justwalk.kafka_topics import ensure_topics
from justwalk.pipeline import consumer_ready
from justwalk.schema import MEASUREMENTS, backfill_statements, clinic_database
from sinks.influx import InfluxClient
from tests.scenario import CLINIC, Message, chunk_messages

pytestmark = pytest.mark.integration

RATE_PER_S = 150.0
"""Input messages per second (the scenario lasts about 12 s at this pace)."""


@pytest.fixture(scope="module")
def messages(shared_data_or_none: Path | None) -> list[Message]:
    ms = None
    if shared_data_or_none is not None:
        from justwalk.simulator.replay import load_recording

        mat = shared_data_or_none / "mobilised" / "data" / "lab" / "MS" / "001" / "data.mat"
        if mat.is_file():
            ms = load_recording(mat, "Test11", "Trial1")
    return chunk_messages(ms)


@pytest.fixture(scope="module")
def shared_data_or_none() -> Path | None:
    from tests.conftest import SHARED_DATA

    return SHARED_DATA if SHARED_DATA.is_dir() else None


def run_settings(local_stack: Any, tmp_path: Path, name: str) -> Settings:
    """Settings of one run: topics, database and groups of its own."""
    suffix = f"{name}-{uuid.uuid4().hex[:6]}"
    base = Settings()
    topics = {f: f"{getattr(base, f)}.{suffix}" for f in base.__dataclass_fields__
              if f.startswith("topic_") and f != "topic_partitions"}
    return local_stack.settings(base).replace(
        **topics, topic_partitions=4, influx_db=f"crash_{suffix.replace('-', '_')}",
        processor_group=f"proc-{suffix}", sink_group=f"sink-{suffix}",
        kafka_session_timeout_s=6.0, kafka_heartbeat_interval_s=0.5,
        kafka_rebalance_timeout_s=3.0, processor_checkpoint_interval_s=1.0,
        session_idle_timeout_s=3.0, device_registry=tmp_path / "none.json",
        risk_policies=tmp_path / "none.json", patient_profiles=tmp_path / "none.json")


class Run:
    """The processors and the sink of one run, as child processes."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.children: dict[str, Any] = {}
        self.n = 0

    def start(self, what: str) -> str:
        name = f"{what}-{self.n}"
        self.n += 1
        cmd = [sys.executable, "-m", "justwalk.cli", "--log-level", "info", what]
        self.children[name] = procs.spawn(cmd, log_path=self.log_dir / f"{name}.log",
                                          env=child_env(self.settings))
        return name

    def wait_assigned(self, name: str, timeout_s: float = 60.0) -> None:
        """Wait until processor ``name`` has taken partitions (its log says so)."""
        deadline = time.monotonic() + timeout_s
        log = self.log_dir / f"{name}.log"
        while not consumer_ready("processor", log.read_text() if log.exists() else ""):
            if time.monotonic() > deadline or self.children[name].poll() is not None:
                raise AssertionError(f"{name} took no partitions:\n" + procs.log_tail(log))
            time.sleep(0.2)

    def signal(self, name: str, sig: int) -> int:
        child = self.children.pop(name)
        child.send_signal(sig)
        return child.wait(timeout=30)

    def stop(self) -> dict[str, int | None]:
        return {name: procs.stop(child) for name, child in self.children.items()}


async def produce(settings: Settings, messages: list[Message], *, rate: float,
                  at: dict[float, Callable[[], None]]) -> None:
    """Send the messages at ``rate`` per second; call ``at[f]`` after a fraction ``f``."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=2)
    await producer.start()
    try:
        marks = sorted(at)
        t0 = time.monotonic()
        for i, (key, value, headers) in enumerate(messages):
            await producer.send(settings.topic_chunks, value, key=key, headers=headers)
            while marks and i >= marks[0] * len(messages):
                await producer.flush()
                at[marks.pop(0)]()
            delay = t0 + (i + 1) / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await producer.flush()
    finally:
        await producer.stop()


async def lag(settings: Settings, group: str, topics: list[str]) -> int:
    """Messages of ``topics`` not yet committed by ``group``.

    The ends are the high watermarks of fetch answers (Tansu's ListOffsets undercounts),
    waited for on every partition: a broker on s3 storage answers a first fetch slowly.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()  # not subscribed: it does not join the group
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        deadline = time.monotonic() + 10.0
        while any(consumer.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError("no high watermark from the broker")
            await consumer.getmany(timeout_ms=300, max_records=1)
        total = 0
        for tp in tps:
            total += (consumer.highwater(tp) or 0) - (await consumer.committed(tp) or 0)
        return total
    finally:
        await consumer.stop()


async def influx_contents(settings: Settings, clinic: str = CLINIC,
                         ) -> dict[tuple[str, tuple[Any, ...], int], dict]:
    """Every point of the run's clinic database: (measurement, tags, time) -> fields."""
    out: dict[tuple[str, tuple[Any, ...], int], dict] = {}
    db = clinic_database(settings.influx_db, clinic)  # the sink writes the clinic's own
    async with InfluxClient(settings.influx_url, db) as client:
        for m in MEASUREMENTS:
            for result in await client.query(f"SELECT * FROM {m.qualified} GROUP BY *",
                                             epoch="ns"):
                for series in result.get("series", ()):
                    tags = tuple(sorted((series.get("tags") or {}).items()))
                    cols = series["columns"]
                    for values in series["values"]:
                        row = dict(zip(cols, values, strict=True))
                        t = row.pop("time")
                        out[(m.name, tags, t)] = {k: v for k, v in row.items() if v is not None}
    return out


async def roll_up(settings: Settings) -> None:
    """Recompute the rollups over every day of the run's points.

    The continuous queries run on InfluxDB's own clock: one that fell inside a run left a
    rollup of the data so far (a day's point) that another run may not have. Recomputed
    over whole periods (``backfill_statements``, as ``justwalk rollups backfill`` does),
    each run's rollups are those of all its points, and comparable.
    """
    times = [k[2] for k in await influx_contents(settings)]
    if not times:
        return
    start = datetime.fromtimestamp(min(times) / 1e9, UTC) - timedelta(days=1)
    end = datetime.fromtimestamp(max(times) / 1e9, UTC) + timedelta(days=8)
    db = clinic_database(settings.influx_db, CLINIC)
    async with InfluxClient(settings.influx_url, db) as client:
        for statement in backfill_statements(db, start, end):
            await client.query(statement)


async def drained(settings: Settings, timeout_s: float = 120.0) -> None:
    """Wait until the processor and the sink have committed everything and InfluxDB holds
    still (the quiet device's flush included)."""
    outputs = [settings.topic_steps, settings.topic_windows, settings.topic_bouts,
               settings.topic_events, settings.topic_alerts, settings.topic_risk,
               settings.topic_sessions]
    quiet_s = 5.0 + settings.session_idle_timeout_s  # the idle device's flush falls inside
    deadline = time.monotonic() + timeout_s
    previous, still_since, checks = -1, 0.0, 0
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        waiting = (await lag(settings, settings.processor_group, [settings.topic_chunks])
                   + await lag(settings, settings.sink_group, outputs))
        n = len(await influx_contents(settings))
        now = time.monotonic()
        if waiting == 0 and n == previous:
            # held still at every check since ``still_since``; one check takes a second and
            # more, so the quiet time is measured on the clock (at least 3 checks), not
            # counted in checks
            still_since, checks = (now, 1) if checks == 0 else (still_since, checks + 1)
            if checks >= 3 and now - still_since >= quiet_s:
                return
        else:
            checks = 0
        previous = n
    raise AssertionError(f"not drained after {timeout_s} s")


async def one_run(local_stack: Any, tmp_path: Path, messages: list[Message], name: str,
                  disturb: Callable[[Run], None] | None) -> tuple[dict, Path]:
    settings = run_settings(local_stack, tmp_path, name)
    await ensure_topics(settings)
    # The clinic's database is set up before data flows, as `justwalk influx setup` does in
    # production: its rollup CQs run once when created, and must find it empty.
    async with InfluxClient(settings.influx_url,
                            clinic_database(settings.influx_db, CLINIC)) as client:
        await client.ensure_database()
    run = Run(settings, tmp_path / name)
    run.start("sink")
    first = run.start("processor")
    try:
        run.wait_assigned(first)  # the processor owns the partitions before data arrives
        marks = {0.5: (lambda: disturb(run))} if disturb else {}
        await produce(settings, messages, rate=RATE_PER_S, at=marks)
        await drained(settings)
        await roll_up(settings)
        contents = await influx_contents(settings)
    finally:
        codes = run.stop()
    assert all(c == 0 for c in codes.values()), (codes, first)
    return contents, run.log_dir


@pytest.fixture(scope="module")
def reference(local_stack, tmp_path_factory, messages) -> dict:
    contents, _ = asyncio.run(one_run(local_stack, tmp_path_factory.mktemp("ref"), messages,
                                      "ref", None))
    kinds = {k[0] for k in contents}
    assert {"step", "gait_window", "gait_bout", "gait_event", "session", "fall_risk",
            "alert"} <= kinds, kinds
    return contents


def kill_and_restart(run: Run) -> None:
    (name,) = [n for n in run.children if n.startswith("processor")]
    assert run.signal(name, signal.SIGKILL) == -signal.SIGKILL
    run.start("processor")


def terminate_and_restart(run: Run) -> None:
    (name,) = [n for n in run.children if n.startswith("processor")]
    assert run.signal(name, signal.SIGTERM) == 0
    run.start("processor")


def second_processor(run: Run) -> None:
    run.start("processor")


@pytest.mark.parametrize("disturb", [kill_and_restart, terminate_and_restart,
                                     second_processor], ids=lambda f: f.__name__)
async def test_influxdb_holds_exactly_what_an_uninterrupted_run_wrote(
        local_stack, tmp_path, messages, reference, disturb) -> None:
    contents, logs = await one_run(local_stack, tmp_path, messages, disturb.__name__, disturb)
    # the disturbance was real: the processor that took over resumed from stored states
    restored = [int(n) for f in sorted(logs.glob("processor-*.log"))[1:]
                for n in re.findall(r": (\d+) states restored", f.read_text())]
    assert sum(restored) > 0, restored
    missing = reference.keys() - contents.keys()
    extra = contents.keys() - reference.keys()
    changed = [k for k in reference.keys() & contents.keys() if reference[k] != contents[k]]
    assert (len(missing), len(extra), len(changed)) == (0, 0, 0), (
        sorted(missing)[:5], sorted(extra)[:5],
        [(k, reference[k], contents[k]) for k in sorted(changed)[:3]])
