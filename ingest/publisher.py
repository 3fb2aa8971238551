"""Where the gateway puts accepted chunks and rejection records: Kafka, behind a small protocol.

``KafkaPublisher`` acknowledges nothing the broker does not hold:

* writes use ``acks=all`` (stored on every in-sync replica the topic requires; see
  ``justwalk.kafka_topics`` for ``min.insync.replicas``);
* a write the broker has not confirmed within ``delivery_timeout_s`` fails with
  ``KafkaTimeoutError``; so does a ``send`` that cannot even queue in that time (no
  metadata, a full batch), so an answer always comes within about that bound;
* after such a failure (or a connection error) the producer is replaced: the records
  still queued in it are dropped, not delivered late (their devices were told to send them
  again), and until a new producer is connected ``send`` fails at once with
  ``BrokerUnavailable``;
* at most ``max_in_flight_records`` records and ``max_in_flight_bytes`` bytes wait for the
  broker at once; beyond that ``send`` fails at once with ``PublisherBusy`` instead of
  queueing without bound;
* an acknowledgement below an offset this publisher already had acknowledged on the same
  partition, a topic whose partition count changed, or a topic it wrote to that is gone
  (checked every ``watch_s`` and before writing again after a reconnection) means the
  broker lost acknowledged records (``justwalk.broker_loss``): the write fails with
  ``BrokerLostData``, the loss is
  logged with every partition's acknowledged end, ``ping`` turns false, and, with
  ``stop_on_loss``, the task that started the publisher (the gateway's ``serve``) is
  cancelled and ``stop`` raises the loss, so the process exits non-zero and its supervisor
  restarts it on recreated topics.

Every failure is a ``KafkaError``; the gateway answers it with a retryable code and the
device sends the chunk again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.structs import RecordMetadata

from justwalk.broker_loss import BrokerLostData, Loss, OffsetFloors, missing_topics
from justwalk.kafka_topics import KeyHashPartitioner, abandon, discard_producer

log = logging.getLogger(__name__)


def _retrieve(future: asyncio.Future[RecordMetadata]) -> None:
    if not future.cancelled():
        future.exception()

DEFAULT_DELIVERY_TIMEOUT_S = 10.0
DEFAULT_MAX_IN_FLIGHT_RECORDS = 20_000
DEFAULT_MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024
RECONNECT_S = 1.0
DEFAULT_WATCH_S = 1.0


class PublisherBusy(KafkaError):
    """Too many records are waiting for the broker: try again later."""

    retriable = True


class BrokerUnavailable(KafkaError):
    """The publisher is reconnecting to the broker: try again later."""

    retriable = True


class Publisher(Protocol):
    """Durable, ordered publication of keyed records."""

    async def send(self, topic: str, key: bytes, value: bytes,
                   headers: Sequence[tuple[str, bytes]] = ()) -> Awaitable[object]:
        """Queue a record; returns an awaitable that completes once it is stored.

        Records sent one after another with the same key are stored in that order.
        """
        ...

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Send a record and wait until it is stored."""
        ...

    async def ping(self) -> bool:
        """True if the backend is reachable now."""
        ...


class KafkaPublisher:
    """A ``Publisher`` on an aiokafka producer (no idempotence, which Tansu lacks).

    See the module docstring for the bounds and the loss check. Use as
    ``async with KafkaPublisher(bootstrap) as publisher: ...``.
    """

    def __init__(self, bootstrap_servers: str, *, linger_ms: int = 5,
                 ping_timeout_s: float = 2.0,
                 delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
                 max_in_flight_records: int = DEFAULT_MAX_IN_FLIGHT_RECORDS,
                 max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES,
                 watch_s: float = DEFAULT_WATCH_S,
                 stop_on_loss: bool = True) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.linger_ms = linger_ms
        self.ping_timeout_s = ping_timeout_s
        self.delivery_timeout_s = delivery_timeout_s
        self.max_in_flight_records = max_in_flight_records
        self.max_in_flight_bytes = max_in_flight_bytes
        self.watch_s = watch_s
        self.stop_on_loss = stop_on_loss
        self._producer: AIOKafkaProducer | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None
        self._owner: asyncio.Task[object] | None = None
        self._floors = OffsetFloors()
        self._partitions: dict[str, int] = {}
        self.in_flight_records = 0
        self.in_flight_bytes = 0
        self.lost: BrokerLostData | None = None
        """The loss found, once the broker lost acknowledged records (nothing is sent after)."""
        self.refused_busy_ = 0
        self.timeouts_ = 0
        self.reconnects_ = 0

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            enable_idempotence=False,
            linger_ms=self.linger_ms,
            partitioner=KeyHashPartitioner(),
            request_timeout_ms=max(1000, round(self.delivery_timeout_s * 1000)),
            # aiokafka keeps one request in flight per broker and one open batch per
            # partition: a send that finds that batch full waits until it is sent. With
            # the default 16 KB (a dozen chunks) every device's chunk queued behind the
            # broker's round trip once a few hundred devices streamed.
            max_batch_size=256 * 1024,
        )

    async def start(self) -> None:
        """Connect to the brokers."""
        producer = self._new_producer()
        await producer.start()
        self._producer = producer
        self._owner = asyncio.current_task()
        self._watch = asyncio.create_task(self._watch_topics())

    async def stop(self) -> None:
        """Flush pending records and disconnect; raises ``BrokerLostData`` after a loss."""
        self._stopping = True  # a reconnect loop that misses its cancellation ends too
        for task in (self._reconnecting, self._watch):
            if task is not None:
                task.cancel()
                # Python 3.11's wait_for can swallow a cancellation that meets a result:
                # never wait on a task for ever
                done, _ = await asyncio.wait({task}, timeout=self.delivery_timeout_s + 5.0)
                if not done:
                    log.warning("a Kafka reconnect task did not stop; leaving it")
                elif not task.cancelled() and task.exception() is not None:
                    log.warning("a Kafka task failed while stopping: %r", task.exception())
        self._reconnecting = self._watch = None
        producer, self._producer = self._producer, None
        if producer is not None:
            if self.lost is not None:
                await discard_producer(producer)
            else:
                try:
                    await asyncio.wait_for(producer.stop(), self.delivery_timeout_s)
                except TimeoutError:
                    log.warning("the Kafka producer did not stop within %.0f s; records "
                                "still queued are dropped", self.delivery_timeout_s)
                    await discard_producer(producer)
        if self.lost is not None and self.stop_on_loss:
            raise self.lost

    async def __aenter__(self) -> KafkaPublisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        """The started producer."""
        if self._producer is None:
            raise RuntimeError("KafkaPublisher is not started")
        return self._producer

    async def send(self, topic: str, key: bytes, value: bytes,
                   headers: Sequence[tuple[str, bytes]] = ()) -> Awaitable[RecordMetadata]:
        """Queue a record; the returned task resolves once the broker stored it.

        Raises at once (``PublisherBusy``, ``KafkaTimeoutError``, ``BrokerLostData``) when
        the record cannot be queued; the task raises when it is not stored in time.
        """
        if self.lost is not None:
            raise self.lost
        producer = self._producer
        if producer is None:
            if self._reconnecting is None:
                raise RuntimeError("KafkaPublisher is not started")
            raise BrokerUnavailable("reconnecting to the Kafka broker")
        size = len(key) + len(value) + sum(len(k) + len(v) for k, v in headers)
        if (self.in_flight_records >= self.max_in_flight_records
                or self.in_flight_bytes + size > self.max_in_flight_bytes):
            self.refused_busy_ += 1
            raise PublisherBusy(
                f"{self.in_flight_records} records ({self.in_flight_bytes} bytes) are waiting "
                "for the broker; the limit is "
                f"{self.max_in_flight_records} records / {self.max_in_flight_bytes} bytes")
        self.in_flight_records += 1
        self.in_flight_bytes += size
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.delivery_timeout_s
        try:
            try:
                # asyncio.timeout, not wait_for: no task per record
                async with asyncio.timeout(self.delivery_timeout_s):
                    future = await producer.send(topic, value=value, key=key,
                                                 headers=list(headers) or None)
            except TimeoutError:
                self.timeouts_ += 1
                self._replace(producer)
                raise KafkaTimeoutError(
                    f"could not queue a record for {topic} within "
                    f"{self.delivery_timeout_s:g} s (no broker?)") from None
            self._check_partitions(topic, producer)
        except BaseException:
            self._release(size)
            raise
        # No task per record: the broker's answer or the deadline, whichever comes first,
        # settles ``result`` from a callback (a task and an ``asyncio.wait`` per chunk were
        # a tenth of the gateway's CPU).
        result: asyncio.Future[RecordMetadata] = loop.create_future()
        result.add_done_callback(_retrieve)  # whoever awaits it gets the outcome too
        timer = loop.call_at(deadline, self._expire, future, result, topic, size, producer)
        future.add_done_callback(
            lambda f: self._delivered(f, result, timer, topic, size, producer))
        return result

    def _delivered(self, future: asyncio.Future[RecordMetadata],
                   result: asyncio.Future[RecordMetadata], timer: asyncio.TimerHandle,
                   topic: str, size: int, producer: AIOKafkaProducer) -> None:
        """The broker answered (or the record failed): settle ``result``."""
        timer.cancel()
        if result.done():
            return  # expired first (``_expire`` released it)
        self._release(size)
        if future.cancelled():
            result.set_exception(KafkaTimeoutError(f"{topic}: the delivery was cancelled"))
            return
        exc = future.exception()
        if exc is not None:
            if isinstance(exc, KafkaError) and exc.retriable:  # connection trouble
                self._replace(producer)
            result.set_exception(exc)
            return
        meta = future.result()
        loss = self._floors.ack(meta.topic, meta.partition, meta.offset)
        if loss is not None:
            result.set_exception(self._broker_lost([loss]))
            return
        result.set_result(meta)

    def _expire(self, future: asyncio.Future[RecordMetadata],
                result: asyncio.Future[RecordMetadata], topic: str, size: int,
                producer: AIOKafkaProducer) -> None:
        """The deadline passed without the broker's answer."""
        if result.done():
            return
        self._release(size)
        abandon([future])
        self.timeouts_ += 1
        self._replace(producer)
        result.set_exception(KafkaTimeoutError(
            f"{topic}: the broker did not confirm the record within "
            f"{self.delivery_timeout_s:g} s"))

    def _release(self, size: int) -> None:
        self.in_flight_records -= 1
        self.in_flight_bytes -= size

    def _replace(self, producer: AIOKafkaProducer) -> None:
        """Drop ``producer`` (and what is queued in it) and connect a new one."""
        if self._producer is not producer or self.lost is not None:
            return  # replaced already (or stopping)
        self._producer = None
        self.reconnects_ += 1
        log.warning("the broker is not confirming records: dropping the ones queued for it "
                    "(their devices are told to send them again) and reconnecting")
        self._reconnecting = asyncio.create_task(self._reconnect(producer))

    async def _reconnect(self, old: AIOKafkaProducer) -> None:
        await discard_producer(old)
        while self.lost is None and not self._stopping:
            producer = self._new_producer()
            try:
                await asyncio.wait_for(producer.start(), self.delivery_timeout_s)
                gone = await missing_topics(producer.client, self._partitions)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("Kafka not reachable yet (%r); retrying", exc)
                await discard_producer(producer)
                await asyncio.sleep(RECONNECT_S)
                continue
            if gone:
                await discard_producer(producer)
                self._broker_lost(gone)
                return
            if self._stopping:  # stop() took the producer away meanwhile
                await discard_producer(producer)
                return
            self._producer = producer
            self._reconnecting = None
            log.info("reconnected to Kafka")
            return

    async def _watch_topics(self) -> None:
        """Every ``watch_s``: are the topics written to still there? (see the docstring)."""
        while self.lost is None:
            await asyncio.sleep(self.watch_s)
            producer = self._producer
            if producer is None or not self._partitions:
                continue
            try:
                gone = await asyncio.wait_for(
                    missing_topics(producer.client, self._partitions), self.ping_timeout_s)
            except (KafkaError, OSError, TimeoutError):
                continue  # unreachable: the deliveries time out and reconnect
            if gone:
                self._broker_lost(gone)

    def _check_partitions(self, topic: str, producer: AIOKafkaProducer) -> None:
        n = len(producer.client.cluster.partitions_for_topic(topic) or ())
        known = self._partitions.setdefault(topic, n)
        if n != known:
            # the topic was recreated (e.g. auto-created by a client after the broker lost
            # it): keys now map to other partitions than the stored states expect
            raise self._broker_lost([Loss(topic, -1, known, n)])

    def _broker_lost(self, losses: list[Loss]) -> BrokerLostData:
        if self.lost is None:
            self.lost = BrokerLostData(losses)
            ends = {t: self._floors.ends(t) for t in sorted(self._partitions)}
            log.error("BROKER LOST DATA: %s. Acknowledged ends per partition of this gateway: "
                      "%s. Chunks acknowledged to devices and not yet processed are gone; "
                      "nothing more is acknowledged by this process%s", self.lost, ends,
                      "; stopping it" if self.stop_on_loss else "")
            owner = self._owner
            if self.stop_on_loss and owner is not None and not owner.done():
                owner.cancel()
        return self.lost

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Send a record and wait for the broker's acknowledgement."""
        await (await self.send(topic, key, value))

    async def ping(self) -> bool:
        """Ask a broker for cluster metadata (false for good once the broker lost data)."""
        if self.lost is not None or self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(),
                                   self.ping_timeout_s)
        except (KafkaError, TimeoutError, RuntimeError) as exc:
            log.warning("Kafka is not reachable: %r", exc)
            return False
        return True
