"""The InfluxDB sink: the processor's gait, event, fall-risk and alert records -> points.

Every record becomes one point of its measurement (``justwalk.schema.record_to_line``),
written to that measurement's retention policy.

Delivery is at-least-once. Records are buffered by ``add()`` and written in one
``write(batch)``; the consumed offsets are committed only after InfluxDB has acknowledged
the batch. A replay after a crash rewrites the same points (event-time timestamps,
identity tags), so duplicates are harmless.

* InfluxDB down (connection errors, 5xx): the batch is retried with capped exponential
  backoff; nothing is committed or dropped. When the buffer is full the partitions are
  paused, so the consumer keeps polling (and stays in its group) without fetching more.
* A record that cannot be decoded is logged with topic/partition/offset and skipped.
* A batch rejected by InfluxDB (HTTP 400) is split in halves until the bad points are
  isolated; those are logged and skipped, the rest is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from justwalk.config import Settings
from justwalk.kafka_topics import ensure_topics, group_consumer
from justwalk.records import decode_record
from justwalk.schema import RETENTION_DURATION, RETENTION_POLICY, record_to_line
from justwalk.wire import received_us_from_headers
from sinks.influx import (
    InfluxClient,
    InfluxDatabaseMissing,
    InfluxQueryError,
    InfluxUnavailable,
    InfluxWriteError,
)
from sinks.latency import LatencyLog

log = logging.getLogger(__name__)

__all__ = ["BufferedPoint", "InfluxSink", "build_consumer", "run_sink"]


@dataclass(frozen=True, slots=True)
class BufferedPoint:
    """One InfluxDB line waiting to be written, and the Kafka message it came from."""

    tp: TopicPartition
    offset: int
    line: str
    received_us: int | None = None
    """The gateway's receipt time of the chunk behind the record (latency), if known."""


class InfluxSink:
    """Consume gait records from Kafka and write them to InfluxDB in batches.

    The consumer and the client are injected (``from_settings`` builds both). ``run``
    owns them: it starts the consumer and stops it, and closes the client, on the way out.

    Counters, for summaries and tests: ``points_written_`` (points acknowledged by
    InfluxDB), ``records_skipped_`` (undecodable records plus points InfluxDB rejected),
    ``points_rejected_`` (the latter only), ``batches_written_``, ``write_failures_``
    (transient write errors, each followed by a retry).
    """

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        client: InfluxClient,
        topics: Sequence[str],
        batch_points: int = 5000,
        flush_interval_s: float = 0.5,
        retention_policy: str | None = None,
        retention_duration: str = RETENTION_DURATION,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        shutdown_timeout_s: float = 10.0,
        poll_max_s: float = 0.25,
        latency_report_s: float = 60.0,
    ) -> None:
        if batch_points < 1:
            raise ValueError("batch_points must be at least 1")
        self.consumer = consumer
        self.client = client
        self.topics = list(topics)
        self.batch_points = batch_points
        self.flush_interval_s = flush_interval_s
        self.retention_policy = retention_policy
        self.retention_duration = retention_duration
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.poll_max_s = poll_max_s
        self.latency_report_s = latency_report_s
        self._report_at = 0.0

        self.points_written_ = 0
        self.records_skipped_ = 0
        self.points_rejected_ = 0
        self.batches_written_ = 0
        self.write_failures_ = 0

        self._buffer: list[BufferedPoint] = []
        # Next offset to commit per partition: covers buffered and skipped records.
        self._pending: dict[TopicPartition, int] = {}
        self._first_pending_at: float | None = None
        self._retry_at = 0.0
        self._backoff_s = retry_initial_s
        self._need_database = True
        self.latency = LatencyLog()
        """Gateway receipt -> acknowledged by InfluxDB, for the current reporting period."""

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> InfluxSink:
        """A sink wired to the broker, topics and InfluxDB of ``settings``.

        Keyword arguments override the constructor's parameters (``batch_points``, ...).
        """
        client = InfluxClient(
            settings.influx_url,
            settings.influx_db,
            username=settings.influx_username,
            password=settings.influx_password,
            per_clinic=True,  # each record to its clinic's database
        )
        options: dict[str, Any] = {
            "batch_points": settings.sink_batch_points,
            "flush_interval_s": settings.sink_flush_interval_s,
            "latency_report_s": settings.sink_latency_report_s,
            **kwargs,
        }
        return cls(
            consumer=build_consumer(settings),
            client=client,
            topics=[settings.topic_steps, settings.topic_windows, settings.topic_alerts,
                    settings.topic_bouts, settings.topic_events, settings.topic_risk,
                    settings.topic_sessions],
            **options,
        )

    @property
    def buffered(self) -> int:
        """Points waiting to be written."""
        return len(self._buffer)

    # -- buffering and writing ---------------------------------------------------------

    def add(self, message: ConsumerRecord) -> None:
        """Buffer one consumed Kafka message (undecodable ones are logged and skipped)."""
        tp = TopicPartition(message.topic, message.partition)
        self._pending[tp] = message.offset + 1
        if self._first_pending_at is None:
            self._first_pending_at = asyncio.get_running_loop().time()
        try:
            if message.value is None:
                raise ValueError("empty message")
            line = record_to_line(decode_record(message.value))
            if "\n" in line or "\r" in line:
                raise ValueError("line break inside a tag or field")
        except Exception as exc:  # any malformed record: skip it, never stop the sink
            self.records_skipped_ += 1
            log.warning(
                "skipping undecodable record %s[%d]@%d: %s",
                message.topic, message.partition, message.offset, exc,
            )
            return
        self._buffer.append(BufferedPoint(tp, message.offset, line,
                                          received_us_from_headers(message.headers)))

    async def write(self, batch: Sequence[BufferedPoint]) -> tuple[int, int]:
        """Write a batch; return (points written, points rejected).

        A permanent rejection is narrowed down by halving the batch, so only the bad points
        are lost. ``InfluxUnavailable`` propagates: the caller retries the whole batch
        (rewriting points is idempotent).
        """
        if not batch:
            return 0, 0
        try:
            await self.client.write_lines(
                "\n".join(p.line for p in batch), retention_policy=self.retention_policy
            )
        except InfluxWriteError as exc:
            if len(batch) == 1:
                p = batch[0]
                log.error(
                    "InfluxDB rejected the point from %s[%d]@%d: %s; line: %s",
                    p.tp.topic, p.tp.partition, p.offset, exc.message, p.line,
                )
                return 0, 1
            mid = len(batch) // 2
            w1, r1 = await self.write(batch[:mid])
            w2, r2 = await self.write(batch[mid:])
            return w1 + w2, r1 + r2
        return len(batch), 0

    async def flush(self) -> None:
        """Write everything buffered, then commit the offsets it covers.

        Raises ``InfluxUnavailable`` (nothing committed, buffer kept) if InfluxDB is down.
        """
        if not self._pending:
            return
        if self._need_database:
            await self._ensure_database()
        batch = list(self._buffer)
        offsets = dict(self._pending)
        try:
            written, rejected = await self.write(batch)
        except InfluxDatabaseMissing:
            self._need_database = True
            raise
        self.latency.add(time.time_ns() // 1000,
                         [p.received_us for p in batch if p.received_us is not None])
        self.points_written_ += written
        self.points_rejected_ += rejected
        self.records_skipped_ += rejected
        if batch:
            self.batches_written_ += 1
        # Nothing new can be buffered while we await (one task); a rebalance may have
        # taken partitions away, whose records the new owner replays from its commit.
        self._buffer.clear()
        self._pending.clear()
        self._first_pending_at = None
        await self._commit(offsets)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        owned = self.consumer.assignment()
        to_commit = {tp: off for tp, off in offsets.items() if tp in owned}
        if not to_commit:
            return
        try:
            await self.consumer.commit(to_commit)
        except KafkaError as exc:
            # The points are in InfluxDB; the records will be replayed and rewritten.
            log.warning("offset commit failed (%r); records will be replayed", exc)

    def _drop_partitions(self, revoked: Collection[TopicPartition]) -> None:
        """Forget buffered records of partitions this consumer no longer owns."""
        revoked = set(revoked)
        if not revoked or not self._pending:
            return
        self._buffer = [p for p in self._buffer if p.tp not in revoked]
        for tp in revoked:
            self._pending.pop(tp, None)
        if not self._pending:
            self._first_pending_at = None

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume and write until ``stop`` is set (then flush and commit) or cancelled."""
        stop = stop if stop is not None else asyncio.Event()
        try:
            await self._wait_for_database(stop)
            if not stop.is_set():
                self.consumer.subscribe(self.topics, listener=_Listener(self))
                await self.consumer.start()
                await self._consume(stop)
                await self._final_flush()
        finally:
            try:
                await self.consumer.stop()  # also when it never started: it owns a client
            finally:
                await self.client.close()
            self.report_latency()
            log.info(
                "sink stopped: %d points written in %d batches, %d records skipped",
                self.points_written_, self.batches_written_, self.records_skipped_,
            )

    async def _wait_for_database(self, stop: asyncio.Event) -> None:
        backoff = self.retry_initial_s
        while not stop.is_set():
            try:
                await self._ensure_database()
            except InfluxUnavailable as exc:
                log.warning("InfluxDB not ready (%s); retrying in %.1f s", exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, self.retry_max_s)
            else:
                return

    async def _ensure_database(self) -> None:
        try:
            await self.client.ensure_database(self.retention_policy or RETENTION_POLICY,
                                              self.retention_duration)
        except InfluxQueryError as exc:
            # e.g. a user without admin rights: the database may well exist already.
            log.warning("could not create the database or retention policy (%s); "
                        "assuming they exist", exc.message)
        self._need_database = False

    def report_latency(self) -> None:
        """Log the period's latency percentiles and start a new period."""
        summary = self.latency.summary()
        if summary is not None:
            log.info("latency gateway receipt -> InfluxDB: %s", summary)
        self.latency.reset()

    async def _consume(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._report_at = loop.time() + self.latency_report_s
        while not stop.is_set():
            room = self.batch_points - len(self._buffer)
            self._backpressure(full=room <= 0)
            now = loop.time()
            timeout = self.poll_max_s
            if self._first_pending_at is not None:
                due = max(self._first_pending_at + self.flush_interval_s, self._retry_at)
                timeout = min(timeout, max(0.0, due - now))
            fetched = await self.consumer.getmany(
                timeout_ms=int(timeout * 1000), max_records=max(room, 1)
            )
            for messages in fetched.values():
                for message in messages:
                    self.add(message)
            if self._flush_due(loop.time()):
                await self._try_flush()
            if loop.time() >= self._report_at:
                self.report_latency()
                self._report_at = loop.time() + self.latency_report_s

    def _backpressure(self, *, full: bool) -> None:
        if full:
            assigned = self.consumer.assignment() - self.consumer.paused()
            if assigned:
                log.info("buffer full (%d points); pausing fetch", len(self._buffer))
                self.consumer.pause(*assigned)
        elif paused := self.consumer.paused():
            self.consumer.resume(*paused)

    def _flush_due(self, now: float) -> bool:
        if self._first_pending_at is None or now < self._retry_at:
            return False
        return (
            len(self._buffer) >= self.batch_points
            or now >= self._first_pending_at + self.flush_interval_s
        )

    async def _try_flush(self) -> bool:
        try:
            await self.flush()
        except InfluxUnavailable as exc:
            self.write_failures_ += 1
            log.warning(
                "InfluxDB write failed (%s); %d points kept, retry in %.1f s",
                exc, len(self._buffer), self._backoff_s,
            )
            self._retry_at = asyncio.get_running_loop().time() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, self.retry_max_s)
            return False
        self._retry_at = 0.0
        self._backoff_s = self.retry_initial_s
        return True

    async def _final_flush(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout_s
        while self._pending:
            await asyncio.sleep(max(0.0, min(self._retry_at, deadline) - loop.time()))
            if await self._try_flush():
                return
            if loop.time() >= deadline:
                log.warning(
                    "stopping with %d unwritten points; they stay uncommitted and will be "
                    "replayed on restart", len(self._buffer),
                )
                return


class _Listener(ConsumerRebalanceListener):
    """Drops the buffered records of revoked partitions (their new owner replays them)."""

    def __init__(self, sink: InfluxSink) -> None:
        self._sink = sink

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Called by aiokafka before a rebalance."""
        self._sink._drop_partitions(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Called by aiokafka after a rebalance."""
        log.info("sink assigned %d partitions", len(assigned))


def build_consumer(settings: Settings) -> AIOKafkaConsumer:
    """An unsubscribed consumer in the sink's group, committing manually."""
    return group_consumer(settings, group_id=settings.sink_group, client_id="justwalk-sink")


async def run_sink(settings: Settings) -> None:
    """The ``justwalk sink`` process: run until SIGTERM/SIGINT, then flush and commit."""
    await ensure_topics(settings)
    sink = InfluxSink.from_settings(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await sink.run(stop)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
