"""The project's Kafka topics (created idempotently) and its consumers' common settings."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from justwalk.config import Settings

log = logging.getLogger(__name__)


_COMPACTED = {"cleanup.policy": "compact"}
"""The state topic keeps the newest record of each key (and drops deleted keys)."""


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
        settings.topic_state,
    ]


async def ensure_topics(settings: Settings, *, timeout_s: float = 30.0) -> None:
    """Create missing topics; the chunk topic and outputs share one partition count."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in topic_names(settings) if t not in existing]
            if missing:
                await admin.create_topics(
                    [NewTopic(t, num_partitions=settings.topic_partitions, replication_factor=1,
                              topic_configs=_COMPACTED if t == settings.topic_state else {})
                     for t in missing]
                )
                log.info("created topics %s", missing)
            return
        except KafkaError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("Kafka not ready (%r); retrying", exc)
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


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
