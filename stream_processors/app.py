"""The stream processor on Kafka: the runtime (``stream_processors.runtime``) wired to aiokafka.

    imu.chunks (key = patient id) --> [ProcessorRuntime] --> gait.steps, gait.windows,
        ^          |                                         gait.bouts, gait.events,
        |          |                                         gait.sessions, fall.risk,
        |          |                                         alerts, imu.rejected
        |          +-- states per input partition, stored in processor.state
        |              (compacted, partitioned like imu.chunks, key = state key)
        +-- flush markers for quiet sessions (timer)

One worker is one consumer in the processor group; several share the partitions. On
assignment a partition's states are read back from ``processor.state``
(``kafka_io.read_states``: for each key the stored state with the highest applied offset,
so a late write of a worker that lost the partition cannot roll a state back) and
consumption resumes at the committed offset. Every ``processor_checkpoint_interval_s``,
before a partition is given up (rebalance) and on SIGTERM, the worker stores the states in
the order the runtime's docstring explains and then commits the offsets. The periodic
checkpoint does this in a task while consumption goes on (``_begin_checkpoint``: the states
and offsets are taken at one point; the records made before it are confirmed, then the
states are stored, then the offsets committed), so records keep flowing meanwhile; the
others (``checkpoint``) wait for it first and then store everything before going on. Records
are sent as they are made (latency) and confirmed by the next checkpoint
(``kafka_io.KafkaSender``).

Broker outages. A checkpoint that cannot be stored is retried on a fresh producer, sending
every unconfirmed record and state again in order, for up to ``processor_outage_max_s``;
the worker holds its states and consumes nothing meanwhile. Past that it stops with an
error (nothing is committed past what is stored; the restarted worker replays from the last
checkpoint). Offsets are committed after an outage only once the input partitions are seen
to still hold the last messages handled.

A broker that lost data (``justwalk.broker_loss``: a fetch reports the input log ending
below what this worker read, a write is acknowledged below what it had stored, a topic it
writes is gone, or after a pause in the fetches or a rebalance the last message handled is
no longer where it was: a broker without persistent storage restarted) cannot give back
what it lost, and a worker that carried on would skip every new message up to its old
position. The worker stops consuming and logs, per input partition, the offset it had
processed up to and the end the log had reached: the acknowledged chunks in between are
lost unprocessed. Its states are the only copy left: it waits until the topics exist again
with the right partitions (``ensure_topics``), sends again the output records of the last
``processor_resend_window_s`` (those the sink may not have read), stores every state
rebased to the new log (``ProcessorRuntime.rebase``) under the next epoch of the state log
and exits with ``EXIT_BROKER_LOST``, so its supervisor restarts it on the recreated topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Collection, Iterable, Sequence

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
    missing_topics,
    probe_anchors,
)
from justwalk.clinics import load_clinics
from justwalk.config import Settings
from justwalk.kafka_topics import (
    KeyHashPartitioner,
    discard_producer,
    ensure_topics,
    group_consumer,
    stop_consumer,
    topic_names,
)
from justwalk.warmup import freeze_heap, warm_up
from stream_processors.kafka_io import (
    APPLIED_HEADER,
    EPOCH_HEADER,
    FETCH_MAX_RECORDS,
    DeliveryError,
    KafkaSender,
    Record,
    read_states,
)
from stream_processors.mobility import MobilityOutcomes
from stream_processors.patient_profiles import load_patient_cohorts, load_sensor_heights
from stream_processors.risk_policies import load_risk_policies
from stream_processors.runtime import (
    Checkpoint,
    OutputTopics,
    ProcessorRuntime,
)
from stream_processors.session import SessionProcessor, wall_clock_us

log = logging.getLogger(__name__)

IDLE_CHECK_MIN_S, IDLE_CHECK_MAX_S = 0.5, 30.0
HOUSEKEEPING_S = 60.0
STOP_CHECKPOINT_MAX_S = 5.0
"""How long the last checkpoint (SIGTERM) waits for a broker that does not answer."""


def idle_check_interval_s(timeout_s: float) -> float:
    """How often the timer looks for idle sessions: a quarter of the timeout, 0.5-30 s."""
    return min(max(timeout_s / 4, IDLE_CHECK_MIN_S), IDLE_CHECK_MAX_S)


RETRY_MIN_S, RETRY_MAX_S = 0.5, 5.0
YIELD_EVERY = 64
"""Messages handled between two chances for the producer and the checkpoint to run."""


class ProcessorWorker:
    """One processor worker: consumer, sender (producer), runtime, timers; see the docstring."""

    def __init__(self, settings: Settings, runtime: ProcessorRuntime,
                 consumer: AIOKafkaConsumer, restore: AIOKafkaConsumer,
                 sender: KafkaSender) -> None:
        self.settings = settings
        self.runtime = runtime
        self.consumer = consumer
        self.restore = restore
        self.sender = sender
        self.lock = asyncio.Lock()
        """Held while messages are handled and while a checkpoint runs (also a rebalance's)."""
        self.failed: BaseException | None = None
        self.read_floors = OffsetFloors()
        """Ends of the input and state partitions seen by this worker's fetches."""
        self.position: dict[int, int] = {}
        """Per owned input partition, the offset after the last message handled."""
        self.epochs: dict[int, int] = {}
        """Per owned partition, the epoch its states are stored with."""
        self.anchors: dict[int, Anchor] = {}
        """Per owned input partition, the last message handled (see ``probe_anchors``)."""
        self.gaps = FetchGaps()
        self.checkpoints_ = 0
        self.checkpoint_s_: list[float] = []
        """Wall time of each periodic checkpoint, stored while consumption goes on."""
        self._inflight: asyncio.Task[None] | None = None
        """The periodic checkpoint being stored (``_begin_checkpoint``)."""
        self._inflight_cps: list[Checkpoint] = []
        self._unstored: list[Checkpoint] = []
        """States of a periodic checkpoint that failed: stored before any newer ones."""
        self.lost_unprocessed_ = 0
        """Acknowledged chunks lost by the broker before this worker processed them."""
        self._stop = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> ProcessorWorker:
        """A worker wired to the broker and topics of ``settings``."""
        processor = session_processor(settings)
        sender = KafkaSender(_producer(settings),
                             resend_window_s=settings.processor_resend_window_s)
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
        return cls(settings, runtime, consumer, restore, sender)

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set (then store everything and commit) or a failure."""
        self._stop = stop
        await self.sender.producer.start()
        await self.restore.start()
        try:
            self.consumer.subscribe([self.settings.topic_chunks], listener=_Listener(self))
            await self.consumer.start()
            await self._loop(stop)
            if self.failed is None:
                async with self.lock:
                    await self.checkpoint(self.runtime.partitions,
                                          max_wait_s=STOP_CHECKPOINT_MAX_S)
        except BrokerLostData as exc:
            self.failed = exc
        finally:
            try:
                if isinstance(self.failed, BrokerLostData):
                    async with self.lock:
                        await self._after_loss(self.failed)
            finally:
                if self._inflight is not None:
                    self._inflight.cancel()  # nothing after a failure is committed
                    with contextlib.suppress(BaseException):
                        await self._inflight
                await stop_consumer(self.consumer)
                await stop_consumer(self.restore)
                if isinstance(self.failed, BrokerLostData):
                    await discard_producer(self.sender.producer)
                else:
                    await self.sender.producer.stop()
                took = sorted(self.checkpoint_s_) or [0.0]
                waits = sorted(self.runtime.waits_us) or [0]
                log.info("processor stopped: %d messages, %d records, %d rejected, "
                         "%d checkpoints (periodic ones stored in median %.3f s, max %.3f s); "
                         "gateway receipt -> processing, last %d chunks: p50=%.3fs p99=%.3fs",
                         self.runtime.messages_, self.runtime.records_,
                         self.runtime.rejected_, self.checkpoints_, took[len(took) // 2],
                         took[-1], len(self.runtime.waits_us), waits[len(waits) // 2] / 1e6,
                         waits[min(len(waits) - 1, int(0.99 * len(waits)))] / 1e6)
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
            if self.failed is not None:
                break  # found by a rebalance callback meanwhile: use nothing more
            self._check_input(batch)
            if gaps := self.gaps.after(self.consumer, [tp for tp, m in batch.items() if m]):
                async with self.lock:
                    await self._probe([tp.partition for tp in gaps])
            if batch:
                async with self.lock:
                    on_message = self.runtime.on_message
                    handled = 0
                    for tp, messages in batch.items():
                        for m in messages:
                            await on_message(tp.partition, m.offset, m.key, m.value, m.headers)
                            handled += 1
                            if handled % YIELD_EVERY == 0:
                                # let the producer send what is made (latency) and the
                                # checkpoint in flight go on
                                await asyncio.sleep(0)
                        if messages and tp.partition in self.runtime.parts:
                            last = messages[-1]
                            self.position[tp.partition] = last.offset + 1
                            self.anchors[tp.partition] = Anchor(last.offset, last.timestamp)
            now = loop.time()
            if self._inflight is not None and self._inflight.done():
                async with self.lock:
                    await self._drain_inflight()
            if now >= next_checkpoint and self._inflight is None:
                async with self.lock:
                    if self._unstored:  # the last one failed: store now, retrying if need be
                        await self.checkpoint(self.runtime.partitions)
                    else:
                        self._begin_checkpoint(self.runtime.partitions)
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

    def _check_input(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """BrokerLostData if an input partition ends, or restarted, below what was read."""
        losses = self.read_floors.consumer(self.consumer)
        for tp, messages in batch.items():
            at = self.position.get(tp.partition)
            if messages and at is not None and messages[0].offset < at:
                losses.append(Loss(tp.topic, tp.partition, at, messages[0].offset))
        if losses:
            raise BrokerLostData(losses, "(the input topic)")

    async def _check_topics(self) -> None:
        """BrokerLostData if a topic this worker writes is gone (checked before writing)."""
        gone = await missing_topics(
            self.sender.producer.client,
            {t: self.settings.topic_partitions for t in topic_names(self.settings)})
        if gone:
            self.failed = BrokerLostData(gone)
            raise self.failed

    async def _send_markers(self) -> None:
        markers = self.runtime.idle_markers()
        if markers:
            try:
                await self._check_topics()
            except BrokerLostData:
                raise
            except KafkaError:
                pass  # unreachable: the markers wait in the producer like any record
        for partition, key, value, headers in markers:
            await self.sender.send(self.settings.topic_chunks, key, value,
                                   partition=partition, headers=headers, replayable=False)

    async def checkpoint(self, partitions: Iterable[int], *,
                         max_wait_s: float | None = None, probe: bool = False) -> None:
        """Store the changed states of ``partitions``, then commit their offsets.

        Order: the records sent so far; the patient states; the session states; the
        offsets (each step confirmed before the next). While the broker does not store
        them, everything unconfirmed is sent again, for up to ``max_wait_s`` (default:
        ``processor_outage_max_s``; DeliveryError after that). With ``probe``, the input
        partitions must still hold the last message handled before anything is committed
        (``probe_anchors``; BrokerLostData otherwise). Call with ``lock`` held.
        """
        await self._drain_inflight()
        partitions = list(partitions)
        cps = self._unstored + self.runtime.checkpoint(partitions)
        if not cps:
            return
        loop = asyncio.get_running_loop()
        wait_s = self.settings.processor_outage_max_s if max_wait_s is None else max_wait_s
        deadline = loop.time() + wait_s
        retry_s = RETRY_MIN_S
        topic = self.settings.topic_state
        while True:
            try:
                await self._check_topics()
                await self.sender.flush()
                await self._store(topic, cps, patients=True)
                await self._store(topic, cps, patients=False)
                break
            except BrokerLostData as exc:
                self.failed = exc
                raise
            except (DeliveryError, KafkaError) as exc:
                if loop.time() + retry_s > deadline or self._stop.is_set():
                    raise DeliveryError(f"checkpoint not stored within {wait_s:g} s: {exc}"
                                        ) from exc
                log.warning("checkpoint not stored (%s); the broker seems down: holding the "
                            "states and %d unconfirmed records, retrying in %.1f s", exc,
                            self.sender.unconfirmed, retry_s)
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, RETRY_MAX_S)
                probe = True  # the broker that answers now may have come back without data
                with contextlib.suppress(KafkaError, OSError, TimeoutError):
                    # a fresh producer, so nothing queued in the old one arrives late
                    await self.sender.reconnect(_producer(self.settings))
                    await self.sender.resend()
        if probe and not await self._probe(partitions):
            log.warning("the input partitions could not be checked; offsets not committed")
            self.checkpoints_ += 1
            return
        self._unstored = []
        await self._commit(cps)

    async def _commit(self, cps: Sequence[Checkpoint]) -> None:
        # the newest checkpoint of a partition comes last
        offsets = {TopicPartition(self.settings.topic_chunks, cp.partition): cp.next_offset
                   for cp in cps if cp.next_offset is not None}
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except KafkaError as exc:
                # The states are stored: a missed commit only means more replay later.
                log.warning("offset commit failed (%r); the next checkpoint commits", exc)
        self.checkpoints_ += 1

    def _begin_checkpoint(self, partitions: Iterable[int]) -> None:
        """Start storing the changed states of ``partitions`` while consumption goes on.

        The states are packed now (with the offsets they cover); the records sent so far
        are confirmed, then the patient states, then the session states, then the offsets
        are committed, each step after the one before, as ``checkpoint`` does, but in a
        task, so the records of new chunks keep flowing meanwhile (latency). Call with
        ``lock`` held and no checkpoint in flight.
        """
        cps = self._unstored + self.runtime.checkpoint(partitions)
        self._unstored = []
        if not cps:
            return
        self._inflight_cps = cps
        self._inflight = asyncio.create_task(self._store_checkpoint(cps, self.sender.sent))

    async def _store_checkpoint(self, cps: list[Checkpoint], records_upto: int) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._check_topics()
        await self.sender.confirm(records_upto)
        topic = self.settings.topic_state
        for patients in (True, False):
            await self._send_states(self.sender, topic, cps, patients=patients)
            await self.sender.confirm(self.sender.sent)
        await self._commit(cps)
        self.checkpoint_s_.append(loop.time() - started)

    async def _drain_inflight(self) -> None:
        """Wait for the checkpoint in flight; if it failed, keep its states for the next."""
        task, self._inflight = self._inflight, None
        if task is None:
            return
        try:
            await task
        except BrokerLostData as exc:
            self.failed = exc
            raise
        except (DeliveryError, KafkaError) as exc:
            log.warning("checkpoint not stored (%s); storing it with the next one", exc)
            self._unstored = self._inflight_cps
        self._inflight_cps = []

    async def _probe(self, partitions: Iterable[int]) -> bool:
        """BrokerLostData unless the input partitions still hold the last messages handled.

        False when the broker did not answer (nothing could be checked).
        """
        topic = self.settings.topic_chunks
        anchors = {TopicPartition(topic, p): self.anchors[p] for p in partitions
                   if p in self.anchors}
        losses = await probe_anchors(self.restore, anchors)
        if losses:
            self.failed = BrokerLostData(losses, "(the input topic)")
            raise self.failed
        return losses is not None

    async def _store(self, topic: str, cps: Sequence[Checkpoint], *, patients: bool) -> None:
        await self._send_states(self.sender, topic, cps, patients=patients)
        await self.sender.flush()

    async def _send_states(self, sender: KafkaSender, topic: str, cps: Sequence[Checkpoint], *,
                           patients: bool) -> None:
        for cp in cps:
            epoch = str(self.epochs.get(cp.partition, 0)).encode()
            for key, data, applied in (cp.patients if patients else cp.sessions):
                await sender.send(topic, key.encode(), data, partition=cp.partition,
                                  headers=[(APPLIED_HEADER, str(applied).encode()),
                                           (EPOCH_HEADER, epoch)],
                                  replayable=False)

    async def _after_loss(self, exc: BrokerLostData) -> None:
        """Report what the broker lost, then store the states on the recreated topics."""
        topic = self.settings.topic_chunks
        lines = []
        for p in self.runtime.partitions:
            reached = self.read_floors.seen_end(topic, p)
            done = self.position.get(p)
            if done is None:
                with contextlib.suppress(Exception):
                    done = await asyncio.wait_for(
                        self.consumer.position(TopicPartition(topic, p)), 1.0)
            if done is None:
                lines.append(f"{topic}[{p}]: processed up to an unknown offset, the log had "
                             f"reached {reached}")
                continue
            lost = max(reached - done, 0)
            self.lost_unprocessed_ += lost
            lines.append(f"{topic}[{p}]: processed up to offset {done}, the log had reached "
                         f"{reached}: {lost} acknowledged chunks lost unprocessed")
        log.error("BROKER LOST DATA: %s. %s. This worker stops consuming; its states are the "
                  "only copy left and are stored again on the recreated topics", exc,
                  "; ".join(lines) or "no input partitions owned")
        sessions, patients = self.runtime.rebase()
        for p in self.runtime.partitions:
            self.epochs[p] = self.epochs.get(p, 0) + 1
        replay = self.sender.replayable()
        try:
            await ensure_topics(self.settings, timeout_s=self.settings.processor_outage_max_s)
            await self._reseed(replay)
        except Exception as store_exc:
            log.error("could not store the states again (%r): %d session and %d patient "
                      "states are lost; the restarted worker starts them afresh", store_exc,
                      sessions, patients)
            return
        log.error("stored %d session and %d patient states again (rebased to the recreated "
                  "input topic, epoch %s) and sent %d recent output records again; exiting "
                  "so that the supervisor restarts this worker", sessions, patients,
                  sorted(set(self.epochs.values())), len(replay))

    async def _reseed(self, replay: list[Record]) -> None:
        """Send ``replay`` and every state on a new producer, retrying until stored."""
        producer = _producer(self.settings)
        await producer.start()
        sender = KafkaSender(producer)
        try:
            for r in replay:
                await sender.send(r.topic, r.key, r.value, partition=r.partition,
                                  headers=r.headers)
            cps = self.runtime.checkpoint(self.runtime.partitions)
            for cp in cps:
                for key, data, applied in [*cp.patients, *cp.sessions]:
                    await sender.send(self.settings.topic_state, key.encode(), data,
                                      partition=cp.partition, replayable=False, headers=[
                                          (APPLIED_HEADER, str(applied).encode()),
                                          (EPOCH_HEADER, str(self.epochs[cp.partition]).encode())])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.settings.processor_outage_max_s
            retry_s = RETRY_MIN_S
            while True:
                try:
                    await sender.flush()
                    return
                except (DeliveryError, KafkaError) as exc:
                    # a broker that just came back may refuse the first writes (Tansu
                    # fails writes at offsets it had acknowledged to a missing topic)
                    if loop.time() + retry_s > deadline:
                        raise
                    log.warning("states not stored yet (%s); retrying in %.1f s", exc, retry_s)
                    await asyncio.sleep(retry_s)
                    retry_s = min(retry_s * 2, RETRY_MAX_S)
                    with contextlib.suppress(KafkaError, OSError, TimeoutError):
                        await sender.reconnect(_producer(self.settings))
                        await sender.resend()
        finally:
            await discard_producer(sender.producer)

    async def on_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Store the states of partitions this worker gives up, commit, forget them."""
        mine = [tp.partition for tp in revoked if tp.topic == self.settings.topic_chunks]
        async with self.lock:
            if self.failed is not None:
                return  # stopping; after a broker loss the states are stored again
            try:
                # a rebalance is also how a worker meets a broker that restarted without
                # its data (the group is gone): check the input log before giving up states
                await self.checkpoint(mine, probe=True)
            except BrokerLostData as exc:
                self.failed = exc
                return  # keep the states: they are stored again on the recreated topics
            except Exception as exc:
                # Nothing committed past what is stored: the next owner replays the rest.
                log.exception("checkpoint on revocation failed")
                self.failed = exc
            for p in mine:
                self.runtime.revoke(p)
                self.position.pop(p, None)
                self.epochs.pop(p, None)
                self.anchors.pop(p, None)

    async def on_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Read back the stored states of newly assigned partitions."""
        t = time.monotonic()
        mine = sorted(tp.partition for tp in assigned if tp.topic == self.settings.topic_chunks)
        async with self.lock:
            if self.failed is not None:
                return
            try:
                states = await read_states(self.restore, self.settings.topic_state, mine,
                                           self.read_floors)
            except BrokerLostData as exc:
                self.failed = exc
                return
            self.gaps.forget(assigned)
            for partition in mine:
                self.runtime.assign(partition, states[partition].states)
                self.epochs[partition] = states[partition].epoch
                self.position.pop(partition, None)
                self.anchors.pop(partition, None)
        log.info("assigned partitions %s (states read in %.2f s)",
                 sorted(tp.partition for tp in assigned), time.monotonic() - t)


def session_processor(settings: Settings) -> SessionProcessor:
    """The ``SessionProcessor`` of ``settings`` (risk policies and sensor heights read)."""
    default_risk, clinic_risk = load_risk_policies(settings.risk_policies)
    timezones = ({c.clinic_id: c.timezone for c in load_clinics(settings.clinics)}
                 if settings.clinics.exists() else {})
    return SessionProcessor(
        window_s=settings.cadence_window_s, risk=default_risk, clinic_risk=clinic_risk,
        sensor_height_m=settings.default_sensor_height_m,
        sensor_heights_m=load_sensor_heights(settings),
        session_summary_every_s=settings.session_summary_every_s,
        mobility=MobilityOutcomes(timezones=timezones,
                                  cohorts=load_patient_cohorts(settings.patient_profiles)))


def _producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, client_id="justwalk-processor",
        acks="all", enable_idempotence=False, linger_ms=5, partitioner=KeyHashPartitioner(),
        max_batch_size=256 * 1024, max_request_size=4 * 1024 * 1024,
        request_timeout_ms=max(1000, round(settings.kafka_delivery_timeout_s * 1000)))


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
        chunks=settings.topic_chunks, training=settings.topic_training,
        feedback=settings.topic_feedback)


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
    log.info("%d objects of the start-up left out of full garbage collections", freeze_heap())
    try:
        asyncio.run(serve(settings))
    except BrokerLostData:
        return EXIT_BROKER_LOST  # logged with what was lost
    except DeliveryError as exc:
        log.error("stopping: %s", exc)
        return 1
    return 0
