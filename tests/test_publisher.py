"""The gateway's Kafka publisher against a broker of the test's own (killed, restarted, emptied).

An acknowledgement only for what the broker holds; an answer within the delivery timeout
when it holds nothing; bounded waiting; a broker that lost what it acknowledged is noticed.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, KafkaTimeoutError, NodeNotReadyError

from ingest.intake import Intake
from ingest.publisher import BrokerUnavailable, KafkaPublisher, PublisherBusy
from ingest.registry import DeviceEntry
from ingest.validation import ChunkValidator
from justwalk.broker_loss import BrokerLostData
from justwalk.config import Settings
from justwalk.device_protocol import RETRYABLE_CODES
from justwalk.kafka_topics import abandon, ensure_topics
from justwalk.localstack import LocalStack
from justwalk.wire import ImuChunk, Placement, encode_chunk

pytestmark = pytest.mark.integration

TOPIC = "imu.chunks.pub"


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[LocalStack]:
    stack = LocalStack(log_dir=tmp_path / "logs", workdir=tmp_path / "stack")
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def settings_of(stack: LocalStack) -> Settings:
    return stack.settings(Settings()).replace(topic_chunks=TOPIC,
                                              topic_rejects="imu.rejected.pub",
                                              topic_partitions=2)


def chunk(seq: int) -> bytes:
    now_us = time.time_ns() // 1000
    samples = np.zeros((50, 6), dtype=np.float32)
    samples[:, 0] = 9.81
    return encode_chunk(ImuChunk("pt-1", "dev-1", "s1", seq, now_us - 10_000_000 + seq * 500_000,
                                 100.0, Placement.LOWER_BACK, samples))


async def test_a_dead_broker_gets_a_retryable_answer_within_the_delivery_timeout(
        own_stack: LocalStack) -> None:
    settings = settings_of(own_stack)
    await ensure_topics(settings)
    # long enough that the 3 records are still in flight when the 4th is sent, however
    # slow a loaded machine is; the answers still come within it
    timeout_s = 4.0
    publisher = KafkaPublisher(settings.kafka_bootstrap, delivery_timeout_s=timeout_s,
                               max_in_flight_records=3, stop_on_loss=False)
    await publisher.start()
    try:
        await publisher.publish(TOPIC, b"k", b"stored")
        entry = DeviceEntry("dev-1", "pt-1", "clinic-a", "x")
        intake = Intake(settings, publisher, ChunkValidator(), lambda: time.time_ns() // 1000)
        own_stack.kill_kafka()
        t0 = time.monotonic()
        submissions = [await intake.submit(chunk(k), entry) for k in range(3)]
        # at most 3 records wait for the broker: the 4th is refused at once, retryably
        with pytest.raises(PublisherBusy):
            await publisher.send(TOPIC, b"k", b"one too many")
        answers = [await intake.settle(s) for s in submissions]
        waited = time.monotonic() - t0
        assert [a.code for a in answers] == ["unavailable"] * 3
        assert all(a.code in RETRYABLE_CODES for a in answers)
        assert waited < timeout_s + 1.5, waited
        assert publisher.timeouts_ >= 1 and publisher.refused_busy_ == 1
        assert publisher.in_flight_records == 0 and publisher.in_flight_bytes == 0
        # the producer holding the stale records was dropped; until a new one connects,
        # sends fail at once
        with pytest.raises(BrokerUnavailable):
            await publisher.send(TOPIC, b"k", b"while reconnecting")
        assert not await publisher.ping()
        # the validator forgot the session: the device's resend is a new chunk, not a
        # duplicate acked from memory
        assert (await intake.settle(await intake.submit(chunk(0), entry))).code == "unavailable"
    finally:
        await publisher.stop()


async def test_a_broker_that_lost_the_topic_is_noticed_and_nothing_more_is_acked(
        own_stack: LocalStack) -> None:
    settings = settings_of(own_stack)
    await ensure_topics(settings)
    publisher = KafkaPublisher(settings.kafka_bootstrap, delivery_timeout_s=1.5,
                               watch_s=0.2, stop_on_loss=False)
    await publisher.start()
    try:
        for k in range(5):
            await publisher.publish(TOPIC, b"k", b"v%d" % k)
        await asyncio.to_thread(own_stack.restart_kafka, topics=[settings])  # empty again
        with pytest.raises(KafkaError) as raised:
            for _ in range(50):  # the watch or the next acknowledgement notices
                await publisher.publish(TOPIC, b"k", b"after")
                await asyncio.sleep(0.1)
        assert isinstance(raised.value, BrokerLostData | BrokerUnavailable | KafkaTimeoutError)
        for _ in range(100):
            if publisher.lost is not None:
                break
            await asyncio.sleep(0.1)
        assert isinstance(publisher.lost, BrokerLostData)
        assert TOPIC in str(publisher.lost)
        assert not await publisher.ping()
        with pytest.raises(BrokerLostData):
            await publisher.send(TOPIC, b"k", b"never")
    finally:
        await publisher.stop()


async def test_a_loss_stops_the_task_that_started_the_publisher(own_stack: LocalStack) -> None:
    settings = settings_of(own_stack)
    await ensure_topics(settings)
    started = asyncio.Event()
    publisher = KafkaPublisher(settings.kafka_bootstrap, delivery_timeout_s=1.5, watch_s=0.2)

    async def serve() -> None:  # as the gateway's serve: start, wait, stop
        await publisher.start()
        try:
            await publisher.publish(TOPIC, b"k", b"v")
            started.set()
            await asyncio.Event().wait()
        finally:
            await publisher.stop()

    task = asyncio.create_task(serve())
    await asyncio.wait_for(started.wait(), 10)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([TOPIC])  # lost (the watch sees it gone)
    finally:
        await admin.close()
    with pytest.raises(BrokerLostData):
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("abandoned", [True, False])
async def test_a_delivery_given_up_on_that_fails_later_is_not_logged_as_unhandled(
        abandoned: bool, caplog: pytest.LogCaptureFixture) -> None:
    # what a timed-out delivery's future does when its batch expires later (seen in CI)
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    if abandoned:
        abandon([future])
    future.set_exception(NodeNotReadyError("node 111 is not ready"))
    await asyncio.sleep(0)
    del future
    gc.collect()
    unhandled = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert bool(unhandled) is not abandoned  # the control shows the check can fail
