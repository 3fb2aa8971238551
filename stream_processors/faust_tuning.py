"""Consumer tuning Faust does not expose.

Faust (faust-streaming 0.11) builds its worker's aiokafka consumer with a hard-coded
``fetch_max_wait_ms=1500``. A broker that honours long polling answers a fetch as soon as
data arrives, so the value only matters when nothing comes; Tansu, the broker of the local
stack, answers only after ~0.5 s whatever arrives, which measured as 0.5 s of extra alert
latency per hop. ``bound_fetch_wait`` sets the value from our settings on the consumer Faust
creates, before it starts (aiokafka reads ``_fetch_max_wait_ms`` when it builds its fetcher).
The end-to-end alert test and benchmarks/bench_alert_latency.py fail if this stops working.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

_original = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def bound_fetch_wait(max_wait_ms: int) -> None:
    """Make every Faust worker consumer created from now on wait at most ``max_wait_ms``."""

    def create(self: Any, transport: Any) -> Any:
        consumer = _original(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]
