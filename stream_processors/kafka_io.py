"""What the processor writes to Kafka and reads back from it.

``KafkaSender`` is the runtime's ``Sender`` on an aiokafka producer: records are confirmed by
``flush`` and kept until then (and the output records of a recent window after that), so
they can be sent again after a failed flush or into topics a broker recreated.
``read_states`` reads a partition's stored states back (the newest epoch only).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgpack
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from justwalk.broker_loss import BrokerLostData, Loss, OffsetFloors
from justwalk.kafka_topics import discard_producer
from stream_processors.runtime import Headers, latest_states

APPLIED_HEADER = "jw-applied"
"""Header of a stored state: the input offset of the last message applied to it."""
EPOCH_HEADER = "jw-epoch"
"""Header of a stored state: the epoch of the state log (see ``read_states``)."""
FETCH_MAX_RECORDS = 2000
READ_STATES_TIMEOUT_S = 60.0


class DeliveryError(RuntimeError):
    """A record or state could not be stored: the worker must stop before committing."""


@dataclass(frozen=True, slots=True)
class Record:
    """One record sent, kept to be sent again."""

    topic: str
    key: bytes
    value: bytes | None
    partition: int | None
    headers: Headers | None
    replayable: bool
    """An output record (sent again after a broker loss); states and markers are not."""


class ResendWindow:
    """The output records confirmed in the last ``window_s``, compressed per confirmation.

    A broker that lost data may take with it records the sink had not read yet; the worker
    sends these again (``records``). They are only read then, so each confirmed group is kept
    as one zlib stream of msgpack (a tenth of the records' size as Python objects).
    """

    def __init__(self, window_s: float, clock: Callable[[], float]) -> None:
        self.window_s = window_s
        self.clock = clock
        self._groups: deque[tuple[float, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._groups)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return sum(len(g) for _, g in self._groups)

    def pack(self, records: Iterable[Record]) -> bytes | None:
        """The group of ``records`` to ``add``, uncompressed (None: nothing to keep)."""
        if self.window_s <= 0:
            return None
        rows = [[r.topic, r.key, r.value, r.partition, r.headers]
                for r in records if r.replayable]
        return msgpack.packb(rows) if rows else None

    @staticmethod
    def compress(packed: bytes) -> bytes:
        """``pack``'s group compressed (zlib releases the GIL: it may run in a thread)."""
        return zlib.compress(packed, 1)

    def add(self, group: bytes | None) -> None:
        """Keep a compressed group confirmed now; drop the groups older than the window."""
        now = self.clock()
        if group is not None:
            self._groups.append((now, group))
        while self._groups and self._groups[0][0] < now - self.window_s:
            self._groups.popleft()

    def records(self) -> list[Record]:
        """Every record kept, in the order sent."""
        return [Record(topic, key, value, partition,
                       tuple((k, v) for k, v in headers) if headers else None, True)
                for _, group in self._groups
                for topic, key, value, partition, headers in msgpack.unpackb(
                    zlib.decompress(group))]


class KafkaSender:
    """The runtime's ``Sender`` on an aiokafka producer; ``flush`` confirms every send.

    Every record is kept until a flush confirms it, so that a failed flush can send them all
    again in order (``resend``); the output records confirmed in the last
    ``resend_window_s`` are kept too (``replayable``). Acknowledgements are checked against
    ``floors``: one below what this sender had stored raises ``BrokerLostData``.
    """

    def __init__(self, producer: AIOKafkaProducer, *, floors: OffsetFloors | None = None,
                 resend_window_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.producer = producer
        self.floors = floors if floors is not None else OffsetFloors()
        self._pending: list[tuple[Record, asyncio.Future[object]]] = []
        self._confirmed = 0
        self.window = ResendWindow(resend_window_s, clock)

    async def send(self, topic: str, key: bytes, value: bytes | None, *,
                   partition: int | None = None, headers: Headers | None = None,
                   replayable: bool = True) -> None:
        """Queue a record in the producer."""
        record = Record(topic, key, value, partition, tuple(headers) if headers else None,
                         replayable)
        self._pending.append((record, await self._send(record)))

    async def _send(self, r: Record) -> asyncio.Future[object]:
        future: asyncio.Future[object] = await self.producer.send(
            r.topic, value=r.value, key=r.key, partition=r.partition,
            headers=list(r.headers) if r.headers else None)
        return future

    @property
    def unconfirmed(self) -> int:
        """Records sent and not yet confirmed by a flush."""
        return len(self._pending)

    @property
    def sent(self) -> int:
        """How many records were sent so far: ``confirm(sender.sent)`` covers all of them."""
        return self._confirmed + len(self._pending)

    async def flush(self) -> None:
        """Wait until every record queued so far is stored; DeliveryError if one was not.

        The records stay unconfirmed after a DeliveryError (``resend`` sends them again).
        """
        if not self._pending:
            return
        await self.producer.flush()
        await self.confirm(self.sent)

    async def confirm(self, upto: int) -> None:
        """Wait until the records sent before the ``upto``-th are stored (see ``sent``).

        Records sent meanwhile are not waited for, so the caller may go on sending while
        this runs (one ``confirm`` at a time, and no ``resend`` until it returns). Raises
        like ``flush``; the records stay unconfirmed then.
        """
        k = upto - self._confirmed
        if k <= 0:
            return
        head = self._pending[:k]
        undone = [f for _, f in head if not f.done()]
        if undone:
            await asyncio.wait(undone)
        errors: list[BaseException] = []
        losses: list[Loss] = []
        for _, f in head:
            if (e := f.exception()) is not None:
                errors.append(e)
                continue
            meta = f.result()
            loss = self.floors.ack(meta.topic, meta.partition, meta.offset)  # type: ignore[attr-defined]
            if loss is not None:
                losses.append(loss)
        if losses:
            raise BrokerLostData(losses, "(a write was acknowledged below records it had stored)")
        if errors:
            raise DeliveryError(
                f"{len(errors)} of {len(head)} records were not stored: {errors[0]!r}")
        packed = self.window.pack(r for r, _ in head)
        # records sent meanwhile are appended after ``head``, which stays at the front
        group = None if packed is None else await asyncio.to_thread(self.window.compress, packed)
        del self._pending[:k]
        self._confirmed += k
        self.window.add(group)

    async def reconnect(self, producer: AIOKafkaProducer) -> None:
        """Drop the producer (and the records queued in it) for ``producer``, once started.

        The records queued in the old one are not delivered late, after those ``resend``
        sends again (see ``kafka_topics.discard_producer``).
        """
        await discard_producer(self.producer)
        try:
            await producer.start()  # raises while the broker is away; call again later
        except BaseException:
            await discard_producer(producer)
            raise
        self.producer = producer

    async def resend(self) -> None:
        """Send every unconfirmed record again, in the order they were first sent."""
        records = [r for r, _ in self._pending]
        self._pending = []
        for r in records:
            self._pending.append((r, await self._send(r)))

    def replayable(self) -> list[Record]:
        """The output records of the resend window and the unconfirmed ones, in order."""
        return self.window.records() + [r for r, _ in self._pending if r.replayable]


@dataclass(frozen=True, slots=True)
class StoredStates:
    """The states read back for one partition, and the epoch of the records they come from."""

    states: dict[str, bytes]
    epoch: int


async def read_states(consumer: AIOKafkaConsumer, topic: str, partitions: Iterable[int],
                      floors: OffsetFloors | None = None) -> dict[int, StoredStates]:
    """The stored states of ``partitions`` (``runtime.latest_states`` of each one's records).

    Only the records of a partition's newest epoch (``EPOCH_HEADER``) count: a worker that
    stores its states again after a broker loss writes the next epoch, and whatever the
    broker still holds of an earlier one (Tansu keeps writes it acknowledged to topics it
    did not have) refers to an input log that is gone.

    ``consumer`` is a started consumer outside any group (it is assigned here); the
    partitions are read together. With ``floors``, a partition that ends below what an
    earlier read saw raises ``BrokerLostData``.
    """
    tps = [TopicPartition(topic, p) for p in partitions]
    stored: dict[TopicPartition, list[tuple[str, bytes | None, int, int]]] = \
        {tp: [] for tp in tps}
    if not tps:
        return {}
    consumer.assign(tps)
    # The end is the high watermark of a fetch answer: Tansu (0.x, the local broker)
    # answers ListOffsets with the last batch's base offset + 1, short of the end, and not
    # at all for a while about a topic just recreated. (Offset 0 is the start: the state
    # topic is compacted, nothing deletes its head; a later start resets to the earliest.)
    for tp in tps:
        consumer.seek(tp, 0)
    pending = set(tps)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READ_STATES_TIMEOUT_S
    while pending:
        if loop.time() > deadline:
            raise DeliveryError(f"the states of {sorted(tp.partition for tp in pending)} "
                                f"could not be read within {READ_STATES_TIMEOUT_S:g} s")
        batch = await consumer.getmany(*pending, timeout_ms=1000,
                                       max_records=FETCH_MAX_RECORDS)
        for tp, messages in batch.items():
            for m in messages:
                if m.key is not None:
                    headers = dict(m.headers or ())
                    stored[tp].append((m.key.decode(), m.value,
                                       int(headers.get(APPLIED_HEADER, b"-1")),
                                       int(headers.get(EPOCH_HEADER, b"0"))))
        for tp in list(pending):
            hw = consumer.highwater(tp)
            if hw is not None and await consumer.position(tp) >= hw:
                pending.discard(tp)
    read_ends = {tp: consumer.highwater(tp) for tp in tps}
    consumer.unsubscribe()
    if floors is not None:
        losses = [loss for tp in tps
                  if (loss := floors.end(topic, tp.partition, read_ends[tp])) is not None]
        if losses:
            raise BrokerLostData(losses, "(the state topic)")
    out = {}
    for tp in tps:
        epoch = max((e for *_, e in stored[tp]), default=0)
        out[tp.partition] = StoredStates(
            latest_states([(k, v, a) for k, v, a, e in stored[tp] if e == epoch]), epoch)
    return out
