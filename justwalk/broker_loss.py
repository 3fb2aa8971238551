"""Noticing a broker that lost records it had acknowledged or served.

A partition's log only grows: its end offset (the high watermark) never goes down, and a
new write lands at or after the end. A broker that restarted without its data (Tansu keeps
topics in memory), a topic deleted and recreated, or an unclean leader election breaks
that, and clients do not notice on their own: a producer gets acknowledgements at offset
0 again, a consumer waits at its old position in a log that restarted below it, and every
new record up to that position is skipped.

``OffsetFloors`` remembers, per partition, the highest end this process has seen: from the
acknowledgements of its writes (``ack``) and the high watermarks of its fetches
(``end``/``consumer``). A write acknowledged below it, or an end reported below it, is a
``Loss``; the caller raises ``BrokerLostData`` naming every loss and stops.

A consumer group rebalance after a broker restart can reset a consumer's position before
any fetch shows it a lower end. ``probe_anchors`` checks directly that each partition
still holds the last record the process read (``Anchor``: same offset, same timestamp).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError


@dataclass(frozen=True, slots=True)
class Loss:
    """A partition whose log now ends (or takes writes) below what this process saw."""

    topic: str
    partition: int
    seen_end: int
    """The end offset this process had seen (records 0 .. seen_end - 1 existed)."""
    now_end: int
    """Where the log ends now (or the offset a new write was acknowledged at).

    ``partition`` -1: the topic's partition count changed from ``seen_end`` to this (0:
    the topic is gone; see ``missing_topics``)."""

    def __str__(self) -> str:
        if self.partition < 0:  # the topic itself changed
            if self.now_end == 0:
                return f"{self.topic} no longer exists (it had {self.seen_end} partitions)"
            return f"{self.topic} has {self.now_end} partitions, had {self.seen_end}"
        return (f"{self.topic}[{self.partition}] is at offset {self.now_end} but had reached "
                f"{self.seen_end}")


EXIT_BROKER_LOST = 3
"""Exit code of every service that stopped because the broker lost data it had acknowledged
(gateway, processor, sink, alert service): its supervisor restarts it on the recreated topics."""


class BrokerLostData(KafkaError):
    """The broker no longer has records it acknowledged or served; see ``OffsetFloors``."""

    retriable = False

    def __init__(self, losses: Iterable[Loss], what: str = "") -> None:
        self.losses = list(losses)
        text = "; ".join(str(loss) for loss in self.losses)
        super().__init__(
            f"the Kafka broker lost records{' ' + what if what else ''}: {text} (its topics "
            "were deleted, recreated or truncated, e.g. a broker without persistent storage "
            "restarted)")


class OffsetFloors:
    """Per partition, the highest end offset this process has seen; see the module docstring."""

    def __init__(self) -> None:
        self._ends: dict[tuple[str, int], int] = {}

    def seen_end(self, topic: str, partition: int) -> int:
        """The highest end seen (0 when nothing was seen)."""
        return self._ends.get((topic, partition), 0)

    def ends(self, topic: str) -> dict[int, int]:
        """The highest end seen of every partition of ``topic`` seen so far."""
        return {p: end for (t, p), end in sorted(self._ends.items()) if t == topic}

    def end(self, topic: str, partition: int, end: int | None) -> Loss | None:
        """A partition's log ends at ``end`` now (a fetch's high watermark); a Loss if it fell."""
        if end is None:
            return None
        key = (topic, partition)
        seen = self._ends.get(key, 0)
        if end < seen:
            return Loss(topic, partition, seen, end)
        self._ends[key] = end
        return None

    def ack(self, topic: str, partition: int, offset: int) -> Loss | None:
        """A write was acknowledged at ``offset``; a Loss if that is below the end seen."""
        key = (topic, partition)
        seen = self._ends.get(key, 0)
        if offset < seen:
            return Loss(topic, partition, seen, offset)
        self._ends[key] = offset + 1
        return None

    def consumer(self, consumer: AIOKafkaConsumer,
                 partitions: Iterable[TopicPartition] | None = None) -> list[Loss]:
        """Check the high watermarks of a consumer's latest fetches (its assignment by default)."""
        tps = consumer.assignment() if partitions is None else partitions
        losses = []
        for tp in tps:
            loss = self.end(tp.topic, tp.partition, consumer.highwater(tp))
            if loss is not None:
                losses.append(loss)
        return losses

    def forget(self, topic: str) -> None:
        """Forget a topic (it was recreated on purpose and starts afresh)."""
        for key in [k for k in self._ends if k[0] == topic]:
            del self._ends[key]


async def missing_topics(client: AIOKafkaClient, partitions: Mapping[str, int]) -> list[Loss]:
    """The topics of ``partitions`` (name -> partition count seen) the broker no longer has.

    Asks for the metadata of all topics: naming a missing topic would make Tansu create
    it, and a write to it before that is acknowledged and kept where it later collides
    with the recreated topic's records. Check before writing after a broker came back.
    """
    cluster = await client.fetch_all_metadata()
    present = cluster.topics()
    return [Loss(t, -1, n, 0) for t, n in sorted(partitions.items()) if t not in present]


@dataclass(frozen=True, slots=True)
class Anchor:
    """The last record a process read from a partition: its offset and timestamp."""

    offset: int
    timestamp: int


async def probe_anchors(consumer: AIOKafkaConsumer, anchors: Mapping[TopicPartition, Anchor],
                        *, timeout_s: float = 5.0) -> list[Loss] | None:
    """Check that each partition still holds its anchor record; the losses, None if unknown.

    A partition's log was recreated or truncated when the record at the anchor's offset is
    gone (the log ends before it) or is another record (another timestamp): this catches a
    recreated log even after it grew past the old position, which the ends alone cannot.
    ``consumer`` is a started consumer outside any group; it is assigned here and
    unsubscribed after. None when the broker did not answer within ``timeout_s``.
    """
    if not anchors:
        return []
    tps = list(anchors)
    consumer.assign(tps)
    for tp, anchor in anchors.items():
        consumer.seek(tp, anchor.offset)
    found: dict[TopicPartition, ConsumerRecord] = {}
    pending = set(tps)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while pending and loop.time() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=200, max_records=len(tps))
            for tp, messages in batch.items():
                if messages:
                    found[tp] = messages[0]
                    pending.discard(tp)
            for tp in list(pending):
                hw = consumer.highwater(tp)
                if hw is not None and hw <= anchors[tp].offset:
                    pending.discard(tp)  # the log ends before the anchor
        ends = {tp: consumer.highwater(tp) for tp in tps}
    finally:
        consumer.unsubscribe()
    if pending:
        return None
    losses = []
    for tp, anchor in anchors.items():
        m = found.get(tp)
        if m is None:
            losses.append(Loss(tp.topic, tp.partition, anchor.offset + 1, ends[tp] or 0))
        elif m.offset != anchor.offset or m.timestamp != anchor.timestamp:
            # another record where ours was: a new log that has grown past our position
            losses.append(Loss(tp.topic, tp.partition, anchor.offset + 1, 0))
    return losses


class FetchGaps:
    """Partitions whose fetches stopped for a while: the broker may have come back another.

    Brokers answer a fetch within the fetch wait even when there is nothing new, so the
    time of a partition's last fetch answer (``AIOKafkaConsumer.last_poll_timestamp``)
    advances steadily; a jump of more than ``gap_s`` means no answer came for that long
    (an outage, a restart, or this process paused). A log recreated meanwhile can have grown
    past the consumer's position, so the records fetched after such a gap are used only
    once ``probe_anchors`` has found the last record read still in place.
    """

    def __init__(self, gap_s: float = 2.0) -> None:
        self.gap_ms = round(gap_s * 1000)
        self._last: dict[TopicPartition, int] = {}

    def after(self, consumer: AIOKafkaConsumer,
              partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        """Of ``partitions`` (just fetched), those whose previous answer is over a gap ago."""
        out = []
        for tp in partitions:
            try:
                ts = consumer.last_poll_timestamp(tp)
            except Exception:  # not assigned (any more)
                continue
            prev = self._last.get(tp)
            if ts is not None:
                self._last[tp] = ts
                if prev is not None and ts - prev > self.gap_ms:
                    out.append(tp)
        return out

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions (re)assigned: their positions start afresh."""
        for tp in partitions:
            self._last.pop(tp, None)
