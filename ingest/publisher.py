"""Where the gateway puts accepted chunks and rejection records: Kafka, behind a small protocol."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """Durable, ordered publication of keyed records."""

    async def send(self, topic: str, key: bytes, value: bytes,
                   headers: Sequence[tuple[str, bytes]] = ()) -> Awaitable[object]:
        """Queue a record; returns an awaitable that completes once it is stored.

        Records sent one after another with the same key are stored in that order.
        """
        ...

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Send a record and wait until it is stored."""
        ...

    async def ping(self) -> bool:
        """True if the backend is reachable now."""
        ...


class KafkaPublisher:
    """A ``Publisher`` on an aiokafka producer (acks=all; no idempotence, which Tansu lacks).

    Use as ``async with KafkaPublisher(bootstrap) as publisher: ...``.
    """

    def __init__(self, bootstrap_servers: str, *, linger_ms: int = 5,
                 ping_timeout_s: float = 2.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.linger_ms = linger_ms
        self.ping_timeout_s = ping_timeout_s
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect to the brokers."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            enable_idempotence=False,
            linger_ms=self.linger_ms,
        )
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        """Flush pending records and disconnect."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def __aenter__(self) -> KafkaPublisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        """The started producer."""
        if self._producer is None:
            raise RuntimeError("KafkaPublisher is not started")
        return self._producer

    async def send(self, topic: str, key: bytes, value: bytes,
                   headers: Sequence[tuple[str, bytes]] = ()) -> Awaitable[object]:
        """Queue a record in the producer; the returned future resolves on delivery."""
        future: Awaitable[object] = await self.producer.send(
            topic, value=value, key=key, headers=list(headers) or None)
        return future

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Send a record and wait for the broker's acknowledgement."""
        await (await self.send(topic, key, value))

    async def ping(self) -> bool:
        """Ask a broker for cluster metadata."""
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(),
                                   self.ping_timeout_s)
        except (KafkaError, TimeoutError, RuntimeError) as exc:
            log.warning("Kafka is not reachable: %r", exc)
            return False
        return True
