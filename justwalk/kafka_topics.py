"""The project's Kafka topics (created and checked idempotently), consumers and producers.

Every topic has ``settings.topic_partitions`` partitions (the processor's state topic is
partitioned like the chunk topic), ``settings.kafka_replication_factor`` replicas and
``min.insync.replicas`` = ``settings.kafka_min_insync_replicas``; the state topic is
compacted. ``ensure_topics`` creates the missing ones and checks the others: a broker that
lost its topics may have had them re-created by a client's metadata request with the
broker's defaults (Tansu: 4 partitions, no configs), which would send keys to other
partitions than the stored states expect. A wrong configuration is altered where the
broker allows it (Tansu cannot, and does not compact either: a warning); a wrong partition
count is repaired by deleting and recreating the topic only with ``repair=True`` (the
local stack, whose broker keeps nothing anyway); otherwise ``ensure_topics`` waits for
someone to repair it and raises ``TopicMismatch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from justwalk.config import Settings

log = logging.getLogger(__name__)

CLEANUP_POLICY = "cleanup.policy"
MIN_INSYNC_REPLICAS = "min.insync.replicas"
_RETRY_S = 0.5


class TopicMismatch(RuntimeError):
    """A topic exists with another partition count or configuration than the pipeline needs."""


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with one existing topic."""

    topic: str
    partitions: int | None
    """Its partition count, when that is wrong."""
    configs: dict[str, str]
    """The configuration values that differ from what the pipeline needs (name -> value)."""

    def __str__(self) -> str:
        parts = []
        if self.partitions is not None:
            parts.append(f"{self.partitions} partitions")
        parts += [f"{k}={v or '(unset)'}" for k, v in self.configs.items()]
        return f"{self.topic} has {', '.join(parts)}"


def topic_names(settings: Settings) -> list[str]:
    """Every topic the pipeline uses."""
    return [
        settings.topic_chunks,
        settings.topic_steps,
        settings.topic_windows,
        settings.topic_rejects,
        settings.topic_alerts,
        settings.topic_bouts,
        settings.topic_events,
        settings.topic_risk,
        settings.topic_sessions,
        settings.topic_training,
        settings.topic_feedback,
        settings.topic_dead_letter,
        settings.topic_state,
    ]


def topic_configs(settings: Settings, topic: str) -> dict[str, str]:
    """The configuration a topic is created with."""
    configs = {MIN_INSYNC_REPLICAS: str(settings.kafka_min_insync_replicas)}
    if topic == settings.topic_state:
        # the newest record of each key is kept (and deleted keys dropped)
        configs[CLEANUP_POLICY] = "compact"
    return configs


def _checked_configs(settings: Settings, topic: str) -> dict[str, str]:
    """The configuration values checked on existing topics (what correctness needs)."""
    return {CLEANUP_POLICY: "compact"} if topic == settings.topic_state else {}


def new_topic(settings: Settings, topic: str) -> NewTopic:
    """The ``NewTopic`` of one of the pipeline's topics."""
    return NewTopic(topic, num_partitions=settings.topic_partitions,
                    replication_factor=settings.kafka_replication_factor,
                    topic_configs=topic_configs(settings, topic))


async def ensure_topics(settings: Settings, *, timeout_s: float = 30.0,
                        repair: bool = False) -> None:
    """Create missing topics and check the others; see the module docstring."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        try:
            await admin.start()
            problems = await _ensure(admin, settings, repair=repair)
            if not problems:
                return
            message = ("Kafka topics do not match the pipeline's configuration: "
                       + "; ".join(map(str, problems))
                       + f" (needed: {settings.topic_partitions} partitions, the state topic "
                       "compacted). Delete them so they are recreated, or run the local "
                       "stack, which recreates them")
            if asyncio.get_running_loop().time() > deadline:
                raise TopicMismatch(message)
            log.warning("%s; waiting", message)
        except KafkaError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("Kafka not ready (%r); retrying", exc)
        finally:
            await admin.close()
        await asyncio.sleep(_RETRY_S)


async def _ensure(admin: AIOKafkaAdminClient, settings: Settings, *,
                  repair: bool) -> list[Problem]:
    # list first: naming a missing topic in a metadata request makes Tansu create it
    existing = set(await admin.list_topics())
    wanted = topic_names(settings)
    missing = [t for t in wanted if t not in existing]
    if missing:
        await _create(admin, settings, missing)
        log.info("created topics %s", missing)
    problems = await _problems(admin, settings, [t for t in wanted if t in existing])
    fixable = [p for p in problems if p.partitions is None]
    if fixable:
        if not await _alter(admin, settings, fixable):
            log.warning("the broker cannot alter topic configurations; left as they are: %s",
                        "; ".join(map(str, fixable)))
        problems = [p for p in problems if p.partitions is not None]
    if problems and repair:
        names = [p.topic for p in problems]
        log.warning("recreating topics %s: %s", names, "; ".join(map(str, problems)))
        await admin.delete_topics(names)
        await _create(admin, settings, names)
        problems = []
    return problems


async def _create(admin: AIOKafkaAdminClient, settings: Settings, topics: list[str]) -> None:
    response = await admin.create_topics([new_topic(settings, t) for t in topics])
    for topic, code, message in response.topic_errors:
        if code not in (0, 36):  # 36: it exists (created meanwhile)
            raise TopicMismatch(f"could not create topic {topic}: error {code} {message}")


async def _problems(admin: AIOKafkaAdminClient, settings: Settings,
                    topics: list[str]) -> list[Problem]:
    if not topics:
        return []
    counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics)}
    checked = {t: _checked_configs(settings, t) for t in topics}
    actual: dict[str, dict[str, str]] = {t: {} for t in topics}
    resources = [ConfigResource(ConfigResourceType.TOPIC, t, configs=None)
                 for t in topics if checked[t]]
    if resources:
        for response in await admin.describe_configs(resources):
            for _code, _msg, _type, name, entries in response.resources:
                actual[name] = {e[0]: e[1] for e in entries}
    problems = []
    for t in topics:
        wrong_count = counts.get(t) if counts.get(t) != settings.topic_partitions else None
        wrong = {k: actual[t].get(k, "") for k, v in checked[t].items()
                 if actual[t].get(k) != v}
        if wrong_count is not None or wrong:
            problems.append(Problem(t, wrong_count, wrong))
    return problems


async def _alter(admin: AIOKafkaAdminClient, settings: Settings,
                 problems: list[Problem]) -> bool:
    """Alter the configurations; False when the broker cannot (Tansu has no AlterConfigs)."""
    try:
        await admin.alter_configs([
            ConfigResource(ConfigResourceType.TOPIC, p.topic,
                           configs=topic_configs(settings, p.topic)) for p in problems])
    except IncompatibleBrokerVersion:
        return False
    log.warning("altered the configuration of %s", [p.topic for p in problems])
    return True


@functools.lru_cache(maxsize=1 << 16)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


class KeyHashPartitioner(DefaultPartitioner):
    """aiokafka's default partitioner (Kafka's murmur2 of the key) with the hash cached.

    aiokafka hashes in pure Python (several µs a record, on every chunk and record of a
    patient, whose key is always the same); the partition chosen is the same.
    """

    @classmethod
    def __call__(cls, key: bytes | None, all_partitions: list[int],
                 available: list[int]) -> int:
        """The partition of ``key`` (random among ``available`` without a key)."""
        if key is None:
            return int(super().__call__(key, all_partitions, available))
        return all_partitions[_key_hash(key) % len(all_partitions)]


def group_consumer(settings: Settings, *, group_id: str, client_id: str,
                   fetch_max_wait_ms: int | None = None) -> AIOKafkaConsumer:
    """An unsubscribed consumer in ``group_id`` that commits manually, after its work.

    Group timings and the fetch wait come from the settings (short ones suit the local
    broker; see ``Settings.kafka_fetch_max_wait_ms``).
    """
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms or settings.kafka_fetch_max_wait_ms,
        session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.kafka_heartbeat_interval_s * 1000),
        rebalance_timeout_ms=int(settings.kafka_rebalance_timeout_s * 1000),
    )


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


def abandon(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Stop waiting for delivery futures, reading their outcome whenever it comes.

    A record given up on (its sender was already told it failed) can still fail later,
    e.g. with ``NodeNotReadyError`` once its batch expires; unread, asyncio would log that
    as an error ("Future exception was never retrieved").
    """
    for future in futures:
        future.add_done_callback(_retrieve)


async def discard_producer(producer: AIOKafkaProducer) -> None:
    """Close a producer WITHOUT delivering the records still queued in it.

    ``AIOKafkaProducer.stop`` flushes: records queued while the broker was away would be
    delivered whenever it answers again, long after their senders were told they failed
    (and, to a Tansu that restarted without its topics, as writes to topics it does not
    have, which it acknowledges and later lets collide with the recreated topic's own
    records). Stopping the producer's sender task first (aiokafka's ``stop`` then finds it
    done and only closes the connections) drops them; their futures never resolve.
    """
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        with contextlib.suppress(Exception):
            await sender.close()
    with contextlib.suppress(Exception):
        await producer.stop()


async def stop_consumer(consumer: AIOKafkaConsumer, timeout_s: float = 10.0) -> None:
    """Stop a consumer, giving up after ``timeout_s``.

    aiokafka's ``stop`` can wait forever for a fetch the broker never answers (seen with
    Tansu after a topic was deleted and recreated); a process must still be able to exit.
    """
    try:
        await asyncio.wait_for(consumer.stop(), timeout_s)
    except TimeoutError:
        log.warning("a Kafka consumer did not stop within %.0f s; left behind", timeout_s)
