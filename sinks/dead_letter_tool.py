"""``justwalk dead-letters``: what the sink set aside, and sending it back once fixed.

The sink keeps each record it could not write on the dead-letter topic with the reason
(``sinks.dead_letters``). ``list`` reads the whole topic outside any consumer group and
shows the counts per reason and source topic, and the newest letters with their error.
``replay`` sends letters back to the topic they came from (same key and value; records
are idempotent in InfluxDB), for an operator who fixed the cause (InfluxDB refused a point
of a measurement whose field type was changed by hand, say, or a sink release fixed a
bug): the sink then tries again, and what fails again comes back as a new letter. Replay
keeps its offsets under the consumer group ``<sink group>-replay`` (committed once what it
sent is stored), so running it again sends only letters that arrived since; ``--dry-run``
shows what would go.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from justwalk.config import Settings
from justwalk.kafka_topics import KeyHashPartitioner, ensure_topics, stop_consumer
from sinks.dead_letters import DL_DETAIL, DL_OFFSET, DL_PARTITION, DL_REASON, DL_TOPIC

READ_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """One dead letter as stored on the topic."""

    partition: int
    offset: int
    """Where it is on the dead-letter topic."""
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    source_topic: str
    source: str
    """``topic[partition]@offset`` of the record the sink could not write."""


def _letter(m: Any) -> StoredLetter:
    h = {k: v.decode(errors="replace") for k, v in (m.headers or ())}
    source = f"{h.get(DL_TOPIC, '?')}[{h.get(DL_PARTITION, '?')}]@{h.get(DL_OFFSET, '?')}"
    return StoredLetter(m.partition, m.offset, m.key, m.value, h.get(DL_REASON, "?"),
                        h.get(DL_DETAIL, ""), h.get(DL_TOPIC, ""), source)


async def _read(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> list[StoredLetter]:
    """From each partition's position to its end (a fetch answer's high watermark)."""
    out: list[StoredLetter] = []
    pending = set(tps)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READ_TIMEOUT_S
    while pending:
        if loop.time() > deadline:
            raise TimeoutError(f"the dead-letter topic could not be read to its end within "
                               f"{READ_TIMEOUT_S:g} s")
        batch = await consumer.getmany(*pending, timeout_ms=500)
        for messages in batch.values():
            out.extend(_letter(m) for m in messages)
        for tp in list(pending):
            hw = consumer.highwater(tp)
            if hw is not None and await consumer.position(tp) >= hw:
                pending.discard(tp)
    return sorted(out, key=lambda d: (d.partition, d.offset))


async def read_all(settings: Settings) -> list[StoredLetter]:
    """Every letter on the dead-letter topic (no consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        await consumer.topics()  # metadata
        parts = consumer.partitions_for_topic(settings.topic_dead_letter) or set()
        tps = [TopicPartition(settings.topic_dead_letter, p) for p in sorted(parts)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        return await _read(consumer, tps)
    finally:
        await stop_consumer(consumer)


def summary(letters: Iterable[StoredLetter]) -> Counter[tuple[str, str]]:
    """Letters per (reason, source topic)."""
    return Counter((d.reason, d.source_topic) for d in letters)


async def replay(settings: Settings, *, reasons: frozenset[str] | None = None,
                 dry_run: bool = False) -> tuple[int, int]:
    """Send the letters not replayed before back to their topics; (sent, skipped).

    Letters of other ``reasons`` (all when None), and those without a known source
    topic, are skipped (and not considered again).
    """
    # offsets kept under a group of its own, without joining it (partitions assigned here)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=f"{settings.sink_group}-replay",
        enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=False, partitioner=KeyHashPartitioner())
    await consumer.start()
    await producer.start()
    try:
        await consumer.topics()
        parts = consumer.partitions_for_topic(settings.topic_dead_letter) or set()
        tps = [TopicPartition(settings.topic_dead_letter, p) for p in sorted(parts)]
        consumer.assign(tps)
        for tp in tps:
            committed = await consumer.committed(tp)
            consumer.seek(tp, committed or 0)
        letters = await _read(consumer, tps)
        known = set(await consumer.topics())
        sent = skipped = 0
        futures = []
        for d in letters:
            if (reasons is not None and d.reason not in reasons) or d.source_topic not in known:
                skipped += 1
                continue
            sent += 1
            if not dry_run:
                futures.append(await producer.send(d.source_topic, value=d.value, key=d.key))
        if futures:
            await asyncio.gather(*futures)
        if not dry_run and letters:
            ends: dict[TopicPartition, int] = {}
            for d in letters:
                ends[TopicPartition(settings.topic_dead_letter, d.partition)] = d.offset + 1
            await consumer.commit(ends)
        return sent, skipped
    finally:
        await producer.stop()
        await stop_consumer(consumer)


def add_parser(sub: Any) -> None:
    """The ``dead-letters`` subcommands."""
    s = sub.add_parser("dead-letters", help="records the sink could not write: list them, or "
                       "send them back to their topic once the cause is fixed")
    dsub = s.add_subparsers(dest="dl_cmd", required=True)
    lst = dsub.add_parser("list", help="counts per reason and topic, and the newest letters")
    lst.add_argument("--limit", type=int, default=10, help="letters shown (newest)")
    lst.set_defaults(func=_cmd_list)
    rep = dsub.add_parser("replay", help="send the letters not replayed before back to their "
                          "topics (the sink tries them again)")
    rep.add_argument("--reason", action="append", choices=["undecodable", "invalid",
                                                           "rejected"],
                     help="only letters of this reason (repeatable; default: all)")
    rep.add_argument("--dry-run", action="store_true", help="count, send nothing")
    rep.set_defaults(func=_cmd_replay)


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 0:
        print("justwalk dead-letters list: --limit must be 0 or more", file=sys.stderr)
        return 2
    letters = asyncio.run(_list(settings))
    counts = summary(letters)
    print(f"{len(letters)} dead letters on {settings.topic_dead_letter}")
    for (reason, topic), n in sorted(counts.items()):
        print(f"  {reason:<12} {topic or '?':<20} {n}")
    shown = letters[-args.limit:] if args.limit else []
    for d in shown:
        print(f"{d.partition}@{d.offset} {d.reason} from {d.source}: {d.detail[:200]}")
    return 0


async def _list(settings: Settings) -> list[StoredLetter]:
    await ensure_topics(settings)
    return await read_all(settings)


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    reasons = frozenset(args.reason) if args.reason else None
    sent, skipped = asyncio.run(_replay(settings, reasons, args.dry_run))
    verb = "would send" if args.dry_run else "sent"
    print(f"{verb} {sent} dead letters back to their topics; {skipped} skipped")
    return 0


async def _replay(settings: Settings, reasons: frozenset[str] | None,
                  dry_run: bool) -> tuple[int, int]:
    await ensure_topics(settings)
    return await replay(settings, reasons=reasons, dry_run=dry_run)
