"""Throughput on pre-loaded messages: a bare aiokafka loop, and ``justwalk processor`` itself.

The processor runs as the child process production runs (``python -m justwalk.cli
processor``), configured through its environment, on the pre-loaded chunk topic, with
output and state topics of its own. Its processing time is taken from the broker's
timestamps of its first and last output records (it publishes a session summary at every
session's first and last chunk), so start-up and the final checkpoint are not counted.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from justwalk import procs
from justwalk.config import Settings, child_env
from justwalk.kafka_topics import ensure_topics
from justwalk.pipeline import consumer_ready
from justwalk.records import decode_record
from justwalk.schema import fold_lines, record_to_line


async def bare_loop(settings: Settings, topic: str, n: int) -> float:
    """Messages/s of a consume -> produce-one-small-record loop over ``topic`` (``n``)."""
    out = f"bench.bare.{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                group_id=f"bare-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=32 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=5, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    try:
        seen, t0 = 0, None
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            if batch and t0 is None:
                t0 = time.perf_counter()
            for messages in batch.values():
                for m in messages:
                    await producer.send(out, m.value[:100], key=m.key)
                    seen += 1
            await consumer.commit()
        await producer.flush()
        assert t0 is not None
        return n / (time.perf_counter() - t0)
    finally:
        await consumer.stop()
        await producer.stop()


@dataclass
class ProcessorRun:
    """What one processor run measured."""

    messages: int
    seconds: float
    rss_mb: list[float]
    """Peak resident memory of each processor process (VmHWM)."""
    state_bytes: list[int]
    """Sizes of the stored session states (every checkpoint's)."""
    points: dict[tuple[str, str], dict[str, str]] = field(repr=False)
    """What InfluxDB would hold after the run's records."""

    @property
    def per_s(self) -> float:
        """Chunks processed per second."""
        return self.messages / self.seconds


def run_settings(base: Settings, chunks_topic: str, name: str) -> Settings:
    """Topics and group of their own, reading ``chunks_topic``."""
    suffix = f"{name}-{uuid.uuid4().hex[:6]}"
    topics = {f: f"{getattr(base, f)}.{suffix}" for f in base.__dataclass_fields__
              if f.startswith("topic_") and f not in ("topic_partitions", "topic_chunks")}
    return base.replace(**topics, topic_chunks=chunks_topic,
                        processor_group=f"bench-proc-{suffix}")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _start(settings: Settings, log: Path, level: str = "warning") -> object:
    cmd = [sys.executable, "-m", "justwalk.cli", "--log-level", level, "processor"]
    return procs.spawn(cmd, log_path=log, env=child_env(settings))


async def committed(settings: Settings, group: str, topic: str) -> int:
    """Messages of ``topic`` committed by ``group``."""
    c = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                         enable_auto_commit=False)
    await c.start()
    try:
        return sum([await c.committed(TopicPartition(topic, p)) or 0
                    for p in range(settings.topic_partitions)])
    finally:
        await c.stop()


async def read_all(settings: Settings, topics: list[str]) -> list[tuple[str, int, bytes | None]]:
    """(topic, timestamp ms, value) of every record of ``topics``."""
    c = AIOKafkaConsumer(*topics, bootstrap_servers=settings.kafka_bootstrap,
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await c.start()
    out: list[tuple[str, int, bytes | None]] = []
    try:
        while True:
            batch = await c.getmany(timeout_ms=1500, max_records=20_000)
            if not batch:
                return out
            out += [(m.topic, m.timestamp, m.value) for ms in batch.values() for m in ms]
    finally:
        await c.stop()


async def processor_run(base: Settings, chunks_topic: str, n: int, work: Path, name: str,
                        *, processors: int = 1, second_at: float | None = None,
                        timeout_s: float = 600.0) -> ProcessorRun:
    """Run ``processors`` processors on the pre-loaded ``chunks_topic`` until it is done.

    Done: all ``n`` messages committed. With ``second_at``, the second processor starts once
    that fraction is committed (a rebalance mid-run).
    """
    settings = run_settings(base, chunks_topic, name)
    await ensure_topics(settings)
    children = [_start(settings, work / f"{name}-0.log")]
    if processors > 1 and second_at is None:
        children += [_start(settings, work / f"{name}-{i}.log") for i in range(1, processors)]
    deadline = time.monotonic() + timeout_s
    rss: list[float] = []
    try:
        while True:
            done = await committed(settings, settings.processor_group, chunks_topic)
            if second_at is not None and len(children) < processors and done >= second_at * n:
                children.append(_start(settings, work / f"{name}-1.log"))
            if done >= n:
                break
            for c in children:
                if c.poll() is not None:  # type: ignore[attr-defined]
                    raise RuntimeError(f"{name}: a processor exited; see {work}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: {done} of {n} committed after {timeout_s} s")
            await asyncio.sleep(0.5)
        rss = [_peak_rss_mb(c.pid) for c in children]  # type: ignore[attr-defined]
    finally:
        for c in children:
            procs.stop(c)  # type: ignore[arg-type]
    outputs = [settings.topic_steps, settings.topic_windows, settings.topic_bouts,
               settings.topic_events, settings.topic_alerts, settings.topic_risk,
               settings.topic_sessions]
    records = await read_all(settings, outputs)
    stamps = [t for _, t, _ in records]
    states = await read_all(settings, [settings.topic_state])
    return ProcessorRun(
        messages=n, seconds=(max(stamps) - min(stamps)) / 1e3, rss_mb=rss,
        state_bytes=[len(v) for _, _, v in states if v is not None],
        points=fold_lines(record_to_line(decode_record(v)) for _, _, v in records
                          if v is not None))


async def idle_rss_mb(base: Settings, work: Path) -> float:
    """Resident memory of a processor that owns partitions but has had no data."""
    settings = run_settings(base, f"bench.empty.{uuid.uuid4().hex[:6]}", "idle")
    await ensure_topics(settings)
    log = work / "idle.log"
    child = _start(settings, log, "info")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            text = log.read_text() if log.exists() else ""
            if consumer_ready("processor", text):
                break
        return _peak_rss_mb(child.pid)  # type: ignore[attr-defined]
    finally:
        procs.stop(child)  # type: ignore[arg-type]
