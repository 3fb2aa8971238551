"""The stream processor on Kafka: the runtime (``stream_processors.runtime``) wired to aiokafka.

    imu.chunks (key = patient id) --> [ProcessorRuntime] --> gait.steps, gait.windows,
        ^          |                                         gait.bouts, gait.events,
        |          |                                         gait.sessions, fall.risk,
        |          |                                         alerts, imu.rejected
        |          +-- states per input partition, stored in processor.state
        |              (compacted, partitioned like imu.chunks, key = state key)
        +-- flush markers for quiet sessions (timer)

One worker is one consumer in the processor group; several share the partitions. On
assignment a partition's states are read back from ``processor.state`` (for each key the
stored state with the highest applied offset, so a late write of a worker that lost the
partition cannot roll a state back) and consumption resumes at the committed offset. Every
``processor_checkpoint_interval_s``, before a partition is given up (rebalance) and on
SIGTERM, ``checkpoint`` stores the states in the order the runtime's docstring explains and
then commits the offsets. Records are sent as they are made (latency) and confirmed at the
next checkpoint; a record or state that cannot be stored stops the worker with an error
(nothing is committed past it; the restarted worker replays from the last checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Collection, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from justwalk.config import Settings
from justwalk.kafka_topics import ensure_topics, group_consumer
from justwalk.warmup import warm_up
from stream_processors.patient_profiles import load_patient_profiles
from stream_processors.risk_policies import load_risk_policies
from stream_processors.runtime import (
    Checkpoint,
    Headers,
    OutputTopics,
    ProcessorRuntime,
    latest_states,
)
from stream_processors.session import SessionProcessor, wall_clock_us

log = logging.getLogger(__name__)

APPLIED_HEADER = "jw-applied"
"""Header of a stored state: the input offset of the last message applied to it."""
IDLE_CHECK_MIN_S, IDLE_CHECK_MAX_S = 0.5, 30.0
HOUSEKEEPING_S = 60.0
FETCH_MAX_RECORDS = 2000


def idle_check_interval_s(timeout_s: float) -> float:
    """How often the timer looks for idle sessions: a quarter of the timeout, 0.5-30 s."""
    return min(max(timeout_s / 4, IDLE_CHECK_MIN_S), IDLE_CHECK_MAX_S)


class DeliveryError(RuntimeError):
    """A record or state could not be stored: the worker must stop before committing."""


class KafkaSender:
    """The runtime's ``Sender`` on an aiokafka producer; ``flush`` confirms every send."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._pending: list[asyncio.Future[object]] = []

    async def send(self, topic: str, key: bytes, value: bytes | None, *,
                   partition: int | None = None, headers: Headers | None = None) -> None:
        """Queue a record in the producer."""
        self._pending.append(await self.producer.send(
            topic, value=value, key=key, partition=partition,
            headers=list(headers) if headers else None))

    async def flush(self) -> None:
        """Wait until every record queued so far is stored; DeliveryError if one was not."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        await self.producer.flush()
        undone = [f for f in pending if not f.done()]
        if undone:
            await asyncio.wait(undone)
        errors = [e for f in pending if (e := f.exception()) is not None]
        if errors:
            raise DeliveryError(
                f"{len(errors)} of {len(pending)} records were not stored: {errors[0]!r}")


async def read_states(consumer: AIOKafkaConsumer, topic: str, partitions: Iterable[int]
                      ) -> dict[int, dict[str, bytes]]:
    """The stored states of ``partitions`` (``runtime.latest_states`` of each one's records).

    ``consumer`` is a started consumer outside any group (it is assigned here); the
    partitions are read together.
    """
    tps = [TopicPartition(topic, p) for p in partitions]
    stored: dict[TopicPartition, list[tuple[str, bytes | None, int]]] = {tp: [] for tp in tps}
    if not tps:
        return {}
    consumer.assign(tps)
    # Tansu (0.x, the local broker) answers ListOffsets with the last *batch*'s base offset
    # + 1, short of the end; the high watermark of each fetch answer is right.
    ends = await consumer.end_offsets(tps)
    await consumer.seek_to_beginning(*tps)
    pending = {tp for tp in tps if ends[tp] > 0}
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000,
                                       max_records=FETCH_MAX_RECORDS)
        for tp, messages in batch.items():
            for m in messages:
                if m.key is not None:
                    applied = next((int(v) for k, v in m.headers or () if k == APPLIED_HEADER),
                                   -1)
                    stored[tp].append((m.key.decode(), m.value, applied))
        for tp in list(pending):
            if await consumer.position(tp) >= max(ends[tp], consumer.highwater(tp) or 0):
                pending.discard(tp)
    consumer.unsubscribe()
    return {tp.partition: latest_states(stored[tp]) for tp in tps}


class ProcessorWorker:
    """One processor worker: consumer, producer, runtime, timers; see the module docstring."""

    def __init__(self, settings: Settings, runtime: ProcessorRuntime,
                 consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                 restore: AIOKafkaConsumer, sender: KafkaSender) -> None:
        self.settings = settings
        self.runtime = runtime
        self.consumer = consumer
        self.producer = producer
        self.restore = restore
        self.sender = sender
        self.lock = asyncio.Lock()
        """Held while messages are handled and while a checkpoint runs (also a rebalance's)."""
        self.failed: BaseException | None = None
        self.checkpoints_ = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ProcessorWorker:
        """A worker wired to the broker and topics of ``settings``."""
        default_risk, clinic_risk = load_risk_policies(settings.risk_policies)
        processor = SessionProcessor(
            window_s=settings.cadence_window_s, risk=default_risk, clinic_risk=clinic_risk,
            sensor_height_m=settings.default_sensor_height_m,
            sensor_heights_m=load_patient_profiles(settings.patient_profiles),
            session_summary_every_s=settings.session_summary_every_s)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, client_id="justwalk-processor",
            acks="all", enable_idempotence=False, linger_ms=5,
            max_batch_size=256 * 1024, max_request_size=4 * 1024 * 1024)
        sender = KafkaSender(producer)
        runtime = ProcessorRuntime(
            processor, sender, output_topics(settings), clock=wall_clock_us,
            idle_timeout_s=settings.session_idle_timeout_s,
            retention_s=settings.session_retention_s)
        consumer = group_consumer(settings, group_id=settings.processor_group,
                                  client_id="justwalk-processor")
        restore = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                   client_id="justwalk-processor-restore",
                                   enable_auto_commit=False, auto_offset_reset="earliest",
                                   fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms)
        return cls(settings, runtime, consumer, producer, restore, sender)

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set (then store everything and commit) or a failure."""
        await self.producer.start()
        await self.restore.start()
        try:
            self.consumer.subscribe([self.settings.topic_chunks], listener=_Listener(self))
            await self.consumer.start()
            await self._loop(stop)
            if self.failed is None:
                async with self.lock:
                    await self.checkpoint(self.runtime.partitions)
        finally:
            await self.consumer.stop()
            await self.restore.stop()
            await self.producer.stop()
            log.info("processor stopped: %d messages, %d records, %d rejected, %d checkpoints",
                     self.runtime.messages_, self.runtime.records_, self.runtime.rejected_,
                     self.checkpoints_)
        if self.failed is not None:
            raise self.failed

    async def _loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        next_checkpoint = loop.time() + s.processor_checkpoint_interval_s
        idle_every = idle_check_interval_s(s.session_idle_timeout_s)
        next_idle = loop.time() + idle_every
        next_housekeeping = loop.time() + HOUSEKEEPING_S
        wait_ms = s.kafka_fetch_max_wait_ms
        while not stop.is_set() and self.failed is None:
            batch = await self.consumer.getmany(timeout_ms=wait_ms,
                                                max_records=FETCH_MAX_RECORDS)
            if batch:
                async with self.lock:
                    on_message = self.runtime.on_message
                    for tp, messages in batch.items():
                        for m in messages:
                            await on_message(tp.partition, m.offset, m.key, m.value, m.headers)
            now = loop.time()
            if now >= next_checkpoint:
                async with self.lock:
                    await self.checkpoint(self.runtime.partitions)
                next_checkpoint = loop.time() + s.processor_checkpoint_interval_s
            if s.session_idle_timeout_s > 0 and now >= next_idle:
                await self._send_markers()
                next_idle = now + idle_every
            if now >= next_housekeeping:
                async with self.lock:
                    n = self.runtime.expire(wall_clock_us())
                if n:
                    log.info("%d sessions past their retention deleted", n)
                next_housekeeping = now + HOUSEKEEPING_S

    async def _send_markers(self) -> None:
        for partition, key, value, headers in self.runtime.idle_markers():
            await self.sender.send(self.settings.topic_chunks, key, value,
                                   partition=partition, headers=headers)

    async def checkpoint(self, partitions: Iterable[int]) -> None:
        """Store the changed states of ``partitions``, then commit their offsets.

        Order: the records sent so far; the patient states; the session states; the
        offsets (each step confirmed before the next). Call with ``lock`` held.
        """
        cps = self.runtime.checkpoint(list(partitions))
        if not cps:
            return
        topic = self.settings.topic_state
        await self.sender.flush()
        await self._store(topic, cps, patients=True)
        await self._store(topic, cps, patients=False)
        offsets = {TopicPartition(self.settings.topic_chunks, cp.partition): cp.next_offset
                   for cp in cps if cp.next_offset is not None}
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except KafkaError as exc:
                # The states are stored: a missed commit only means more replay later.
                log.warning("offset commit failed (%r); the next checkpoint commits", exc)
        self.checkpoints_ += 1

    async def _store(self, topic: str, cps: Sequence[Checkpoint], *, patients: bool) -> None:
        for cp in cps:
            for key, data, applied in (cp.patients if patients else cp.sessions):
                await self.sender.send(topic, key.encode(), data, partition=cp.partition,
                                       headers=[(APPLIED_HEADER, str(applied).encode())])
        await self.sender.flush()

    async def on_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Store the states of partitions this worker gives up, commit, forget them."""
        mine = [tp.partition for tp in revoked if tp.topic == self.settings.topic_chunks]
        async with self.lock:
            try:
                await self.checkpoint(mine)
            except Exception as exc:
                # Nothing committed past what is stored: the next owner replays the rest.
                log.exception("checkpoint on revocation failed")
                self.failed = exc
            for p in mine:
                self.runtime.revoke(p)

    async def on_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Read back the stored states of newly assigned partitions."""
        t = time.monotonic()
        mine = sorted(tp.partition for tp in assigned if tp.topic == self.settings.topic_chunks)
        async with self.lock:
            states = await read_states(self.restore, self.settings.topic_state, mine)
            for partition in mine:
                self.runtime.assign(partition, states[partition])
        log.info("assigned partitions %s (states read in %.2f s)",
                 sorted(tp.partition for tp in assigned), time.monotonic() - t)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: ProcessorWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Called by aiokafka before a rebalance."""
        await self._worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Called by aiokafka after a rebalance."""
        await self._worker.on_assigned(assigned)


def output_topics(settings: Settings) -> OutputTopics:
    """The runtime's topics from the settings."""
    return OutputTopics(
        steps=settings.topic_steps, windows=settings.topic_windows,
        bouts=settings.topic_bouts, events=settings.topic_events,
        alerts=settings.topic_alerts, risk=settings.topic_risk,
        sessions=settings.topic_sessions, rejects=settings.topic_rejects,
        chunks=settings.topic_chunks)


async def serve(settings: Settings) -> None:
    """Run one worker until SIGTERM/SIGINT, then store its states and commit."""
    await ensure_topics(settings)
    worker = ProcessorWorker.from_settings(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.run(stop)
    finally:
        for sig in signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


def run_processor(settings: Settings) -> int:
    """Run one processor worker (``justwalk processor``); the exit code."""
    log.info("compiled kernels ready in %.1f s", warm_up())  # before owning partitions
    try:
        asyncio.run(serve(settings))
    except DeliveryError as exc:
        log.error("stopping: %s", exc)
        return 1
    return 0
