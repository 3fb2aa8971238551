"""`justwalk dead-letters` on the real broker: list, replay once, replay what came since."""

from __future__ import annotations

import argparse
import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from justwalk.config import Settings
from justwalk.kafka_topics import ensure_topics, stop_consumer
from sinks.dead_letter_tool import _cmd_list, read_all, replay, summary
from sinks.dead_letters import INVALID, REJECTED, DeadLetter

pytestmark = pytest.mark.integration


async def store(settings: Settings, letters: list[DeadLetter]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for d in letters:
            await (await producer.send(settings.topic_dead_letter, value=d.value, key=d.key,
                                       headers=d.headers()))
    finally:
        await producer.stop()


async def values_on(settings: Settings, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        out: list[bytes] = []
        for _ in range(6):
            for messages in (await consumer.getmany(timeout_ms=300)).values():
                out += [m.value for m in messages if m.value is not None]
        return sorted(out)
    finally:
        await stop_consumer(consumer)


async def test_list_and_replay_each_letter_once(stack_settings: Settings,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    s = stack_settings
    await ensure_topics(s)
    steps = TopicPartition(s.topic_steps, 1)
    await store(s, [
        DeadLetter(steps, 7, b"ms-0001", b'{"step": 1}', REJECTED, "400: field type conflict"),
        DeadLetter(steps, 8, b"ms-0001", b'{"bad\n": 1}', INVALID, "identifier with a newline"),
        DeadLetter(TopicPartition("gone.topic", 0), 3, b"ms-0002", b"{}", REJECTED, "old"),
    ])
    letters = await read_all(s)
    assert [(d.reason, d.source) for d in letters] == [
        (REJECTED, f"{s.topic_steps}[1]@7"), (INVALID, f"{s.topic_steps}[1]@8"),
        (REJECTED, "gone.topic[0]@3")]
    assert summary(letters) == {(REJECTED, s.topic_steps): 1, (INVALID, s.topic_steps): 1,
                                (REJECTED, "gone.topic"): 1}
    assert await asyncio.to_thread(_cmd_list, argparse.Namespace(limit=2), s) == 0
    out = capsys.readouterr().out
    assert "3 dead letters" in out and "identifier with a newline" in out
    assert "400: field type conflict" not in out  # only the newest 2 are shown

    # a dry run sends nothing and remembers nothing
    assert await replay(s, reasons=frozenset({REJECTED}), dry_run=True) == (1, 2)
    assert await values_on(s, s.topic_steps) == []
    # only the rejected letter whose topic exists goes back, once
    assert await replay(s, reasons=frozenset({REJECTED})) == (1, 2)
    assert await values_on(s, s.topic_steps) == [b'{"step": 1}']
    assert await replay(s) == (0, 0)
    # a letter that arrives later is the only one sent next time
    await store(s, [DeadLetter(steps, 9, b"ms-0003", b'{"step": 3}', REJECTED, "again")])
    assert await replay(s) == (1, 0)
    assert await values_on(s, s.topic_steps) == [b'{"step": 1}', b'{"step": 3}']
