"""Noticing a broker that lost records: offsets, anchors and topics (real Tansu for those)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from justwalk.broker_loss import (
    Anchor,
    BrokerLostData,
    FetchGaps,
    Loss,
    OffsetFloors,
    missing_topics,
    probe_anchors,
)
from justwalk.config import Settings


def test_an_end_or_an_ack_below_what_was_seen_is_a_loss() -> None:
    floors = OffsetFloors()
    assert floors.ack("t", 0, 0) is None and floors.ack("t", 0, 1) is None
    assert floors.end("t", 0, 5) is None  # others wrote more
    assert floors.seen_end("t", 0) == 5 and floors.ends("t") == {0: 5}
    assert floors.ack("t", 0, 5) is None and floors.end("t", 0, None) is None
    assert floors.ack("t", 0, 2) == Loss("t", 0, 6, 2)  # a write landed below: lost
    assert floors.end("t", 0, 3) == Loss("t", 0, 6, 3)
    assert floors.end("t", 1, 0) is None  # another partition, nothing seen
    floors.forget("t")
    assert floors.ack("t", 0, 0) is None
    text = str(BrokerLostData([Loss("t", 0, 6, 2), Loss("u", -1, 8, 4), Loss("v", -1, 4, 0)]))
    assert "t[0] is at offset 2 but had reached 6" in text
    assert "u has 4 partitions, had 8" in text and "v no longer exists" in text
    assert not BrokerLostData([]).retriable


class FakeConsumer:
    def __init__(self) -> None:
        self.ts: dict[TopicPartition, int | None] = {}

    def last_poll_timestamp(self, tp: TopicPartition) -> int | None:
        if tp not in self.ts:
            raise RuntimeError("not assigned")
        return self.ts[tp]


def test_a_pause_in_the_fetch_answers_is_a_gap() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    consumer = FakeConsumer()
    gaps = FetchGaps(gap_s=2.0)
    consumer.ts = {a: 1000, b: None}
    assert gaps.after(consumer, [a, b]) == []  # type: ignore[arg-type]
    consumer.ts = {a: 2900, b: 2900}
    assert gaps.after(consumer, [a, b]) == []  # type: ignore[arg-type]
    consumer.ts = {a: 5000, b: 4000}  # a: 2.1 s without an answer
    assert gaps.after(consumer, [a, b, TopicPartition("t", 9)]) == [a]  # type: ignore[arg-type]
    gaps.forget([a])
    consumer.ts[a] = 9000
    assert gaps.after(consumer, [a]) == []  # type: ignore[arg-type]


@pytest.mark.integration
async def test_a_recreated_topic_is_found_by_its_anchor_and_its_absence(
        stack_settings: Settings) -> None:
    bootstrap = stack_settings.kafka_bootstrap
    topic = stack_settings.topic_chunks
    tp = TopicPartition(topic, 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=100)
    await admin.start()
    await producer.start()
    await consumer.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
        for i in range(5):
            await (await producer.send(topic, b"old%d" % i, partition=0))
        consumer.assign([tp])
        consumer.seek(tp, 0)
        read = (await consumer.getmany(tp, timeout_ms=2000))[tp]
        last = read[-1]
        anchor = Anchor(last.offset, last.timestamp)
        consumer.unsubscribe()
        assert await probe_anchors(consumer, {tp: anchor}) == []
        assert await probe_anchors(consumer, {}) == []
        assert await missing_topics(producer.client, {topic: 2}) == []

        await admin.delete_topics([topic])
        await asyncio.sleep(0.2)
        assert await missing_topics(producer.client, {topic: 2, "zz-other": 1}) == [
            Loss(topic, -1, 2, 0), Loss("zz-other", -1, 1, 0)]
        await admin.create_topics([NewTopic(topic, 2, 1)])
        # shorter than before: the anchor's offset is past the end
        assert await probe_anchors(consumer, {tp: anchor}) == [Loss(topic, 0, 5, 0)]
        for i in range(8):  # longer than before: another record at the anchor's offset
            await (await producer.send(topic, b"new%d" % i, partition=0))
        assert await probe_anchors(consumer, {tp: anchor}) == [Loss(topic, 0, 5, 0)]
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.close()
