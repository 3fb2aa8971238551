"""The InfluxDB sink: the processor's gait, event, fall-risk and alert records -> points.

Every record becomes one point of its measurement (``justwalk.schema.record_to_line``),
written to that measurement's retention policy.

Delivery is at-least-once. Records are buffered by ``add()`` and written in one
``write(batch)``; the consumed offsets are committed only after InfluxDB has acknowledged
the batch and the dead letters of the batch are stored. A replay after a crash rewrites
the same points (event-time timestamps, identity tags), so duplicates are harmless.

* InfluxDB down (connection errors, 5xx): the batch is retried with capped exponential
  backoff; nothing is committed or dropped. When the buffer is full the partitions are
  paused, so the consumer keeps polling (and stays in its group) without fetching more.
* Nothing is skipped silently. A record that cannot be decoded (``undecodable``), that
  makes no valid point (``invalid``: e.g. an identifier with a line break) or whose point
  InfluxDB rejects (``rejected``, HTTP 400; a rejected batch is split in halves until the
  bad points are isolated) goes to the dead-letter topic (``sinks.dead_letters``). It is
  counted (``dead_letters_``) and logged; the counts are logged with the latency report
  and at the end.
* A partition given up in a rebalance is written first (its offsets committed), so the
  next owner does not redo it.
* A broker that lost the records topics (``justwalk.broker_loss``: a fetch reports a log
  ending below what the sink read, or after a rebalance, a pause in the fetches or a
  failed commit the last record read is no longer where it was) is reported loudly: per
  partition the offset read up to and the end the log had reached (the records in
  between never reach InfluxDB, unless the processor sends them again); what is buffered
  is still written, nothing is committed, and ``run`` raises ``BrokerLostData``
  (``justwalk sink`` exits with code 3 and its supervisor restarts it, reading the
  recreated topics from their start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import KafkaError

from justwalk.broker_loss import (
    EXIT_BROKER_LOST,
    Anchor,
    BrokerLostData,
    FetchGaps,
    Loss,
    OffsetFloors,
    probe_anchors,
)
from justwalk.config import Settings
from justwalk.db.optional import open_repository
from justwalk.kafka_topics import (
    KeyHashPartitioner,
    ensure_topics,
    group_consumer,
    stop_consumer,
)
from justwalk.records import WalkTestRecord, decode_record
from justwalk.schema import RETENTION_DURATION, RETENTION_POLICY, record_to_line
from justwalk.wire import received_us_from_headers
from sinks.dead_letters import (
    INVALID,
    REJECTED,
    UNDECODABLE,
    DeadLetter,
    DeadLetters,
    counts_text,
)
from sinks.influx import (
    InfluxClient,
    InfluxDatabaseMissing,
    InfluxQueryError,
    InfluxUnavailable,
    InfluxWriteError,
)
from sinks.latency import LatencyLog
from sinks.session_results import SessionResults

log = logging.getLogger(__name__)

__all__ = ["EXIT_BROKER_LOST", "BufferedPoint", "InfluxSink", "build_consumer", "run_sink"]

"""Exit code of ``justwalk sink`` after a broker lost records it had not written yet."""

@dataclass(frozen=True, slots=True)
class BufferedPoint:
    """One InfluxDB line waiting to be written, and the Kafka message it came from."""

    tp: TopicPartition
    offset: int
    line: str
    received_us: int | None = None
    """The gateway's receipt time of the chunk behind the record (latency), if known."""
    produced_us: int | None = None
    """When the processor sent the record (its Kafka create time), if known."""
    key: bytes | None = None
    value: bytes | None = None
    """The record itself (dead-lettered if InfluxDB rejects its point)."""


class InfluxSink:
    """Consume gait records from Kafka and write them to InfluxDB in batches.

    The consumer and the client are injected (``from_settings`` builds both). ``run``
    owns them: it starts the consumer and stops it, and closes the client, on the way out.

    Dead letters go to ``dead_letter_topic`` through ``producer`` (also owned by ``run``).

    Counters, for summaries and tests: ``points_written_`` (points acknowledged by
    InfluxDB), ``dead_letters_`` (records stored in the dead-letter topic, per reason),
    ``points_rejected_`` (points InfluxDB rejected), ``batches_written_``,
    ``write_failures_`` (transient write errors, each followed by a retry),
    ``lost_records_`` (records a broker lost before the sink wrote them).
    """

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        client: InfluxClient,
        topics: Sequence[str],
        producer: AIOKafkaProducer,
        dead_letter_topic: str,
        probe: AIOKafkaConsumer | None = None,
        delivery_timeout_s: float = 10.0,
        batch_points: int = 5000,
        flush_interval_s: float = 0.5,
        retention_policy: str | None = None,
        retention_duration: str = RETENTION_DURATION,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        shutdown_timeout_s: float = 10.0,
        poll_max_s: float = 0.25,
        latency_report_s: float = 60.0,
        results: SessionResults | None = None,
    ) -> None:
        if batch_points < 1:
            raise ValueError("batch_points must be at least 1")
        self.consumer = consumer
        self.client = client
        self.topics = list(topics)
        self.producer = producer
        self.dead_letter_topic = dead_letter_topic
        self.probe = probe
        self.delivery_timeout_s = delivery_timeout_s
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
        self.points_rejected_ = 0
        self.batches_written_ = 0
        self.write_failures_ = 0
        self.lost_records_ = 0

        self._buffer: list[BufferedPoint] = []
        self.dead = DeadLetters(producer, dead_letter_topic, timeout_s=delivery_timeout_s)
        # Next offset to commit per partition: covers buffered and dead-lettered records.
        self._pending: dict[TopicPartition, int] = {}
        self._position: dict[TopicPartition, int] = {}
        """Offset after the last record consumed, per partition, since its assignment."""
        self._anchors: dict[TopicPartition, Anchor] = {}
        self._gaps = FetchGaps()
        self.read_floors = OffsetFloors()
        self._lost: BrokerLostData | None = None
        self._verify_before_commit = False
        self._first_pending_at: float | None = None
        self._retry_at = 0.0
        self._backoff_s = retry_initial_s
        self._need_database = True
        self.latency = LatencyLog()
        """Gateway receipt -> acknowledged by InfluxDB, for the current reporting period."""
        self.stage_latency = {"processor": LatencyLog(), "sink": LatencyLog()}
        """The same split where the record was sent: gateway receipt -> sent by the
        processor, and sent -> acknowledged by InfluxDB (Kafka, the sink's batching and the
        write)."""
        self.results = results
        """Where training results go besides InfluxDB (``sinks.session_results``)."""
        self._results: list[WalkTestRecord] = []

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
            "retry_max_s": settings.sink_retry_max_s,
            "latency_report_s": settings.sink_latency_report_s,
            **kwargs,
        }
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, client_id="justwalk-sink",
            acks="all", enable_idempotence=False, linger_ms=5,
            partitioner=KeyHashPartitioner(),
            request_timeout_ms=max(1000, round(settings.kafka_delivery_timeout_s * 1000)))
        probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                 client_id="justwalk-sink-probe", enable_auto_commit=False,
                                 fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms)
        return cls(
            consumer=build_consumer(settings),
            client=client,
            probe=probe,
            topics=[settings.topic_steps, settings.topic_windows, settings.topic_alerts,
                    settings.topic_bouts, settings.topic_events, settings.topic_risk,
                    settings.topic_sessions, settings.topic_training],
            producer=producer,
            dead_letter_topic=settings.topic_dead_letter,
            delivery_timeout_s=settings.kafka_delivery_timeout_s,
            results=None if (repo := open_repository(settings, "sink")) is None
            else SessionResults(repo),
            **options,
        )

    @property
    def buffered(self) -> int:
        """Points waiting to be written."""
        return len(self._buffer)

    # -- buffering and writing ---------------------------------------------------------

    @property
    def dead_letters_(self) -> Counter[str]:
        """Records stored in the dead-letter topic so far, per reason."""
        return self.dead.counts

    @property
    def dead_lettered_(self) -> int:
        """Records stored in the dead-letter topic so far."""
        return sum(self.dead.counts.values())

    def add(self, message: ConsumerRecord) -> None:
        """Buffer one consumed Kafka message (one that makes no point: a dead letter)."""
        tp = TopicPartition(message.topic, message.partition)
        self._pending[tp] = message.offset + 1
        self._position[tp] = message.offset + 1
        self._anchors[tp] = Anchor(message.offset, message.timestamp)
        if self._first_pending_at is None:
            self._first_pending_at = asyncio.get_running_loop().time()
        try:
            if message.value is None:
                raise ValueError("empty message")
            record = decode_record(message.value)
        except Exception as exc:  # any malformed record: set it aside, never stop the sink
            self.dead.add(message, UNDECODABLE, str(exc))
            return
        try:
            line = record_to_line(record)
            if "\n" in line or "\r" in line:
                raise ValueError("line break inside a tag or field")
        except Exception as exc:
            self.dead.add(message, INVALID, str(exc))
            return
        if self.results is not None and isinstance(record, WalkTestRecord):
            self._results.append(record)
        produced = message.timestamp * 1000 if message.timestamp_type == 0 else None
        self._buffer.append(BufferedPoint(tp, message.offset, line,
                                          received_us_from_headers(message.headers),
                                          produced, message.key, message.value))

    async def write(self, batch: Sequence[BufferedPoint]
                    ) -> tuple[int, list[tuple[BufferedPoint, str]]]:
        """Write a batch; return (points written, [(point InfluxDB rejected, its reason)]).

        A permanent rejection is narrowed down by halving the batch, so only the bad points
        are set aside. ``InfluxUnavailable`` propagates: the caller retries the whole batch
        (rewriting points is idempotent).
        """
        if not batch:
            return 0, []
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
                return 0, [(p, exc.message)]
            mid = len(batch) // 2
            w1, r1 = await self.write(batch[:mid])
            w2, r2 = await self.write(batch[mid:])
            return w1 + w2, r1 + r2
        return len(batch), []

    async def flush(self) -> None:
        """Write everything buffered, store the dead letters, then commit the offsets.

        Raises ``InfluxUnavailable`` (nothing committed, buffer kept) if InfluxDB is down,
        ``KafkaError`` (nothing committed, dead letters kept) if they cannot be stored.
        """
        if not self._pending:
            return
        if self._buffer:
            if self._need_database:
                await self._ensure_database()
            batch = list(self._buffer)
            try:
                written, rejected = await self.write(batch)
            except InfluxDatabaseMissing:
                self._need_database = True
                raise
            self._add_latencies(batch)
            self.points_written_ += written
            self.points_rejected_ += len(rejected)
            self.batches_written_ += 1
            # Nothing new can be buffered while we await (one task); a rebalance may have
            # taken partitions away, whose records the new owner replays from its commit.
            self._buffer.clear()
            for p, reason in rejected:
                self.dead.letters.append(
                    DeadLetter(p.tp, p.offset, p.key, p.value, REJECTED, reason))
        if self._results and self.results is not None:  # InfluxDB has them: now the database
            await asyncio.to_thread(self.results.store, self._results)
            self._results = []
        offsets = dict(self._pending)
        await self.dead.store()
        self._pending.clear()
        self._first_pending_at = None
        await self._commit(offsets)

    def _add_latencies(self, batch: Sequence[BufferedPoint]) -> None:
        now_us = time.time_ns() // 1000
        self.latency.add(now_us, [p.received_us for p in batch if p.received_us is not None])
        both = [(p.received_us, p.produced_us) for p in batch
                if p.received_us is not None and p.produced_us is not None]
        self.stage_latency["processor"].add_ages([(s - r) / 1e6 for r, s in both])
        self.stage_latency["sink"].add(now_us, [s for _, s in both])

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self._lost is not None:
            return  # offsets of a lost log must not land in the recreated one
        owned = self.consumer.assignment()
        to_commit = {tp: off for tp, off in offsets.items() if tp in owned}
        if not to_commit:
            return
        if self._verify_before_commit and self.probe is not None:
            # the last commit failed (an outage?): the broker that answers now may be one
            # that lost the logs, where these offsets would skip new records
            anchors = {tp: a for tp, a in self._anchors.items() if tp in to_commit}
            losses = await probe_anchors(self.probe, anchors)
            if losses:
                self._lost = BrokerLostData(losses, "(the records topics)")
                raise self._lost
            if losses is None:
                return
        try:
            await self.consumer.commit(to_commit)
            self._verify_before_commit = False
        except KafkaError as exc:
            # The points are in InfluxDB; the records will be replayed and rewritten.
            self._verify_before_commit = True
            log.warning("offset commit failed (%r); records will be replayed", exc)

    async def on_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Write (and commit) the records of partitions this consumer gives up, if it can.

        First checks that the partitions still hold the last records read: a rebalance is
        also how a sink meets a broker that restarted without its data.
        """
        revoked = set(revoked)
        if self.probe is not None and self._lost is None:
            anchors = {tp: a for tp, a in self._anchors.items() if tp in revoked}
            losses = await probe_anchors(self.probe, anchors)
            if losses:
                self._lost = BrokerLostData(losses, "(the records topics)")
                return  # the loop reports it; the buffer is written, nothing committed
        if self._lost is None and any(tp in revoked for tp in self._pending):
            try:
                await asyncio.wait_for(self.flush(), self.flush_interval_s + 5.0)
            except (InfluxUnavailable, KafkaError, TimeoutError) as exc:
                log.warning("could not write the records of revoked partitions (%r); "
                            "their next owner writes them", exc)
        self._drop_partitions(revoked)

    def _drop_partitions(self, revoked: Collection[TopicPartition]) -> None:
        """Forget buffered records of partitions this consumer no longer owns."""
        revoked = set(revoked)
        for tp in revoked:
            self._position.pop(tp, None)
            self._anchors.pop(tp, None)
        if not revoked or not self._pending:
            return
        self._buffer = [p for p in self._buffer if p.tp not in revoked]
        self.dead.drop(revoked)
        for tp in revoked:
            self._pending.pop(tp, None)
        if not self._pending:
            self._first_pending_at = None

    def _check_fetch(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """BrokerLostData if a partition ends, or restarted, below what the sink read."""
        if self._lost is not None:
            raise self._lost  # found by the rebalance listener
        losses = self.read_floors.consumer(self.consumer)
        for tp, messages in fetched.items():
            at = self._position.get(tp)
            if messages and at is not None and messages[0].offset < at:
                losses.append(Loss(tp.topic, tp.partition, at, messages[0].offset))
        if losses:
            raise BrokerLostData(losses, "(the records topics)")

    async def _after_loss(self, exc: BrokerLostData) -> None:
        self._lost = exc
        lines = []
        for (topic, p), done in sorted(((tp.topic, tp.partition), off)
                                       for tp, off in self._position.items()):
            reached = max(self.read_floors.seen_end(topic, p), done)
            lost = max(reached - done, 0)
            self.lost_records_ += lost
            if lost:
                lines.append(f"{topic}[{p}]: read up to offset {done}, the log had reached "
                             f"{reached}: {lost} records lost before reaching InfluxDB")
        log.error("BROKER LOST DATA: %s. %s. Writing what is buffered (%d points), "
                  "committing nothing, then stopping", exc,
                  "; ".join(lines) or "no records of this sink were unread",
                  len(self._buffer))
        await self._final_flush()

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume and write until ``stop`` is set (then flush and commit) or cancelled.

        Raises ``BrokerLostData`` after the broker lost records (see the module docstring).
        """
        stop = stop if stop is not None else asyncio.Event()
        try:
            await self.producer.start()
            if self.probe is not None:
                await self.probe.start()
            await self._wait_for_database(stop)
            if not stop.is_set():
                self.consumer.subscribe(self.topics, listener=_Listener(self))
                await self.consumer.start()
                try:
                    await self._consume(stop)
                    await self._final_flush()
                except BrokerLostData as exc:
                    await self._after_loss(exc)
                    raise
        finally:
            try:
                # also when it never started: it owns a client
                await stop_consumer(self.consumer)
            finally:
                try:
                    await self.producer.stop()
                    if self.probe is not None:
                        await stop_consumer(self.probe)
                finally:
                    await self.client.close()
            self.report()
            log.info(
                "sink stopped: %d points written in %d batches, %d records dead-lettered",
                self.points_written_, self.batches_written_, self.dead_lettered_,
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

    def report(self) -> None:
        """Log the counts so far and the period's latency percentiles (a new period starts)."""
        log.info("sink: %d points written, %d records dead-lettered (%s)%s",
                 self.points_written_, self.dead_lettered_, counts_text(self.dead.counts),
                 f", {self.lost_records_} records lost by the broker" if self.lost_records_
                 else "")
        summary = self.latency.summary()
        if summary is not None:
            log.info("latency gateway receipt -> InfluxDB: %s", summary)
        for stage, what in (("processor", "gateway receipt -> sent by the processor"),
                            ("sink", "sent by the processor -> InfluxDB")):
            if (part := self.stage_latency[stage].summary()) is not None:
                log.info("latency %s: %s", what, part)
            self.stage_latency[stage].reset()
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
            self._check_fetch(fetched)
            gaps = self._gaps.after(self.consumer, [tp for tp, m in fetched.items() if m])
            if gaps and self.probe is not None:
                anchors = {tp: a for tp, a in self._anchors.items() if tp in gaps}
                if losses := await probe_anchors(self.probe, anchors):
                    raise BrokerLostData(losses, "(the records topics)")
            for messages in fetched.values():
                for message in messages:
                    self.add(message)
            if self._flush_due(loop.time()):
                await self._try_flush()
            if loop.time() >= self._report_at:
                self.report()
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
        except BrokerLostData:
            raise
        except (InfluxUnavailable, KafkaError) as exc:
            self.write_failures_ += 1
            what = "InfluxDB write" if isinstance(exc, InfluxUnavailable) else \
                "storing dead letters"
            log.warning(
                "%s failed (%s); %d points and %d dead letters kept, retry in %.1f s",
                what, exc, len(self._buffer), len(self.dead.letters), self._backoff_s,
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
                if self._lost is not None:
                    self.lost_records_ += len(self._buffer) + len(self.dead.letters)
                    log.error("stopping with %d unwritten points and %d dead letters; their "
                              "records were in the lost log: they are lost",
                              len(self._buffer), len(self.dead.letters))
                    return
                log.warning(
                    "stopping with %d unwritten points; they stay uncommitted and will be "
                    "replayed on restart", len(self._buffer),
                )
                return


class _Listener(ConsumerRebalanceListener):
    """Writes, or else drops, the buffered records of revoked partitions."""

    def __init__(self, sink: InfluxSink) -> None:
        self._sink = sink

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Called by aiokafka before a rebalance."""
        await self._sink.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Called by aiokafka after a rebalance."""
        if self._sink._lost is not None:
            return  # stopping: keep what was read for the report
        self._sink._gaps.forget(assigned)
        for tp in assigned:
            self._sink._position.pop(tp, None)
            self._sink._anchors.pop(tp, None)
        log.info("sink assigned %d partitions", len(assigned))


def build_consumer(settings: Settings) -> AIOKafkaConsumer:
    """An unsubscribed consumer in the sink's group, committing manually."""
    return group_consumer(settings, group_id=settings.sink_group, client_id="justwalk-sink")


async def run_sink(settings: Settings) -> None:
    """The ``justwalk sink`` process: run until SIGTERM/SIGINT, then flush and commit.

    Exits the process with ``EXIT_BROKER_LOST`` after the broker lost records.
    """
    await ensure_topics(settings)
    sink = InfluxSink.from_settings(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await sink.run(stop)
    except BrokerLostData:
        raise SystemExit(EXIT_BROKER_LOST) from None  # logged with what was lost
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)

