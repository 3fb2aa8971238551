"""The device gateway: authenticated WebSocket and upload endpoints feeding Kafka."""

from ingest.gateway import create_app, serve, wall_clock_us
from ingest.limits import DeviceLimits
from ingest.publisher import KafkaPublisher, Publisher
from ingest.registry import DeviceEntry, DeviceRegistry, hash_token, provision
from ingest.validation import ChunkValidator, Outcome, Verdict

__all__ = [
    "ChunkValidator",
    "DeviceEntry",
    "DeviceLimits",
    "DeviceRegistry",
    "KafkaPublisher",
    "Outcome",
    "Publisher",
    "Verdict",
    "create_app",
    "hash_token",
    "provision",
    "serve",
    "wall_clock_us",
]
