"""The processor's Kafka I/O on the real broker: the sender and the stored states' epochs."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from justwalk.broker_loss import BrokerLostData, OffsetFloors
from justwalk.config import Settings
from justwalk.kafka_topics import stop_consumer
from stream_processors.kafka_io import (
    APPLIED_HEADER,
    EPOCH_HEADER,
    KafkaSender,
    Record,
    ResendWindow,
    read_states,
)

pytestmark = pytest.mark.integration


async def recreate(bootstrap: str, topic: str, partitions: int = 2) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            await admin.delete_topics([topic])
            await asyncio.sleep(0.2)
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def state(key: str, value: bytes, applied: int, epoch: int | None) -> tuple:
    headers = [(APPLIED_HEADER, str(applied).encode())]
    if epoch is not None:
        headers.append((EPOCH_HEADER, str(epoch).encode()))
    return key.encode(), value, headers


async def read(bootstrap: str, topic: str, floors: OffsetFloors) -> dict:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=100)
    await consumer.start()
    try:
        return await read_states(consumer, topic, [0, 1], floors)
    finally:
        await stop_consumer(consumer, 2.0)


async def test_only_the_newest_epoch_of_a_partition_counts(stack_settings: Settings) -> None:
    bootstrap, topic = stack_settings.kafka_bootstrap, stack_settings.topic_state
    await recreate(bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        records = {0: [state("s|a", b"a-old", 40, None), state("s|b", b"b-old", 41, None),
                       # stored again after a broker loss, rebased: the next epoch
                       state("s|a", b"a-new", -1, 1),
                       # a late write of the old epoch (Tansu keeps such writes)
                       state("s|b", b"b-late", 99, 0)],
                   1: [state("p|x", b"x", 3, None), state("p|x", b"x2", 5, None)]}
        for p, rs in records.items():
            for key, value, headers in rs:
                await (await producer.send(topic, value, key=key, partition=p,
                                           headers=headers))
    finally:
        await producer.stop()
    floors = OffsetFloors()
    states = await read(bootstrap, topic, floors)
    assert (states[0].states, states[0].epoch) == ({"s|a": b"a-new"}, 1)
    assert (states[1].states, states[1].epoch) == ({"p|x": b"x2"}, 0)
    assert floors.ends(topic) == {0: 4, 1: 2}
    # the state topic lost: the next read says so
    await recreate(bootstrap, topic)
    with pytest.raises(BrokerLostData, match=r"\[0\] is at offset 0 but had reached 4"):
        await read(bootstrap, topic, floors)


async def test_the_sender_confirms_keeps_and_sends_again(stack_settings: Settings) -> None:
    bootstrap, topic = stack_settings.kafka_bootstrap, stack_settings.topic_steps
    await recreate(bootstrap, topic)
    now = [0.0]
    sender = KafkaSender(AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all"),
                         resend_window_s=10.0, clock=lambda: now[0])
    await sender.producer.start()
    try:
        for i in range(3):
            await sender.send(topic, b"k", b"r%d" % i, partition=0)
        await sender.send(topic, b"k", b"state", partition=1, replayable=False)
        assert sender.unconfirmed == 4
        await sender.flush()
        assert sender.unconfirmed == 0
        assert [r.value for r in sender.replayable()] == [b"r0", b"r1", b"r2"]
        now[0] = 11.0
        await sender.send(topic, b"k", b"r3", partition=0)
        await sender.flush()
        assert [r.value for r in sender.replayable()] == [b"r3"]  # older ones aged out
        # a new producer: what was queued in the old one is dropped, the rest sent again
        await sender.send(topic, b"k", b"r4", partition=0)
        await sender.reconnect(AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all"))
        await sender.resend()
        await sender.flush()
        # the topic lost: an acknowledgement below what was stored is noticed
        await recreate(bootstrap, topic)
        await sender.send(topic, b"k", b"r5", partition=0)
        with pytest.raises(BrokerLostData, match=r"\[0\] is at offset 0 but had reached 5"):
            await sender.flush()
    finally:
        await sender.producer.stop()


def test_the_resend_window_gives_back_every_record_as_sent_and_holds_them_compressed() -> None:
    now = [0.0]
    window = ResendWindow(10.0, lambda: now[0])
    first = [Record("gait.steps", b"p-%03d" % i,
                    b'{"patient_id":"p-%03d","session_id":"s-1","step":%d,"t_us":%d,'
                    b'"side":"left","cadence_spm":%.1f}' % (i % 7, i, i * 550_000, 100 + i % 9),
                    i % 4, (("jw-received-us", b"%d" % (1_700_000_000_000_000 + i)),), True)
             for i in range(2000)]
    state = Record("processor.state", b"session|s-1", b"\x00" * 100, 0, None, False)
    def add(records: list[Record]) -> None:
        packed = window.pack(records)
        window.add(None if packed is None else window.compress(packed))

    add([*first[:1000], state, *first[1000:]])
    now[0] = 5.0
    later = [Record("gait.windows", b"p-1", None, None, None, True)]
    add(later)
    assert window.records() == first + later  # states are not kept; order, headers, None
    raw = sum(len(r.value or b"") + len(r.key) + 30 for r in first)
    assert window.nbytes < raw / 4
    now[0] = 12.0
    add([])
    assert window.records() == later  # the first group aged out
    empty = ResendWindow(0.0, lambda: now[0])
    assert empty.pack(first) is None
    empty.add(None)
    assert len(empty) == 0 and empty.records() == []


async def test_confirm_waits_for_the_records_before_a_mark_only(stack_settings: Settings) -> None:
    """The background checkpoint confirms what was sent before it; later sends go on."""
    bootstrap, topic = stack_settings.kafka_bootstrap, stack_settings.topic_windows
    await recreate(bootstrap, topic)
    sender = KafkaSender(AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all"),
                         resend_window_s=10.0)
    await sender.producer.start()
    try:
        for i in range(5):
            await sender.send(topic, b"k", b"a%d" % i, partition=0)
        mark = sender.sent
        assert mark == 5
        confirming = asyncio.create_task(sender.confirm(mark))
        for i in range(3):  # sent while the confirmation is under way
            await sender.send(topic, b"k", b"b%d" % i, partition=1)
        await confirming
        assert sender.unconfirmed == 3 and sender.sent == 8
        assert [r.value for r in sender.replayable()] == [b"a0", b"a1", b"a2", b"a3", b"a4",
                                                          b"b0", b"b1", b"b2"]
        await sender.confirm(mark)  # nothing left before the mark
        assert sender.unconfirmed == 3
        await sender.flush()
        assert sender.unconfirmed == 0 and sender.sent == 8
    finally:
        await sender.producer.stop()
