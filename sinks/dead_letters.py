"""The sink's dead letters: records it cannot write to InfluxDB, kept with the reason.

A dead letter is the original record (key and value) on the dead-letter topic
(``settings.topic_dead_letter``) with headers saying why and where it came from:
``DL_REASON`` (``undecodable``: not a record; ``invalid``: no valid point, e.g. an
identifier with a line break; ``rejected``: InfluxDB refused the point, HTTP 400),
``DL_DETAIL`` (the error text), ``DL_TOPIC``, ``DL_PARTITION``, ``DL_OFFSET``. The sink
commits a record's offset only once its dead letter is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaTimeoutError

from justwalk.kafka_topics import abandon

log = logging.getLogger(__name__)

DL_REASON = "jw-dl-reason"
DL_DETAIL = "jw-dl-detail"
DL_TOPIC, DL_PARTITION, DL_OFFSET = "jw-dl-topic", "jw-dl-partition", "jw-dl-offset"
DL_DETAIL_MAX = 2000
"""Bytes of the error text kept in ``DL_DETAIL``."""
UNDECODABLE, INVALID, REJECTED = "undecodable", "invalid", "rejected"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the sink could not write, and why."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str

    def headers(self) -> list[tuple[str, bytes]]:
        """The dead letter's Kafka headers."""
        return [(DL_REASON, self.reason.encode()),
                (DL_DETAIL, self.detail.encode()[:DL_DETAIL_MAX]),
                (DL_TOPIC, self.tp.topic.encode()),
                (DL_PARTITION, str(self.tp.partition).encode()),
                (DL_OFFSET, str(self.offset).encode())]


class DeadLetters:
    """Dead letters waiting to be stored (``letters``) and those stored, per reason."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, *,
                 timeout_s: float = 10.0) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s
        self.letters: list[DeadLetter] = []
        self.counts: Counter[str] = Counter()

    def add(self, message: ConsumerRecord, reason: str, detail: str) -> None:
        """Set a consumed record aside (logged with where it came from)."""
        log.warning("record %s[%d]@%d to the dead-letter topic: %s: %s", message.topic,
                    message.partition, message.offset, reason, detail)
        self.letters.append(DeadLetter(TopicPartition(message.topic, message.partition),
                                       message.offset, message.key, message.value, reason,
                                       detail))

    def drop(self, partitions: Collection[TopicPartition]) -> None:
        """Forget the letters of partitions given up (their next owner redoes them)."""
        self.letters = [d for d in self.letters if d.tp not in partitions]

    async def store(self) -> None:
        """Store every waiting letter; a ``KafkaError`` keeps them all for the next try."""
        if not self.letters:
            return
        letters = list(self.letters)
        futures = [await self.producer.send(self.topic, value=d.value, key=d.key,
                                            headers=d.headers()) for d in letters]
        done, _ = await asyncio.wait(futures, timeout=self.timeout_s)
        failures = [exc for f in done if (exc := f.exception()) is not None]
        if failures:
            abandon(f for f in futures if f not in done)
            raise failures[0]
        if len(done) < len(futures):
            abandon(f for f in futures if f not in done)
            raise KafkaTimeoutError(f"dead letters not stored within {self.timeout_s} s")
        self.letters.clear()
        stored = Counter(d.reason for d in letters)
        self.counts.update(stored)
        log.warning("%d records to the dead-letter topic %s (%s); %d so far", len(letters),
                    self.topic, counts_text(stored), sum(self.counts.values()))


def counts_text(counts: Counter[str]) -> str:
    """``reason: n, ...`` (or ``none``)."""
    return ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "none"
