"""Real-time feedback to the devices: the feedback topic, pushed over the devices' sockets.

``FeedbackRelay`` keeps the open WebSockets per device (the gateway's stream handler
registers them) and ``run`` consumes the processor's feedback topic (``FeedbackRecord``,
``justwalk.records``) from its end, as every gateway instance does: feedback is for now,
so none is replayed after a restart. Each record is sent only to the sockets of its own
device, and only when the socket's authenticated device (``DeviceEntry``) belongs to the
record's patient and clinic: never across clinics. The message is
``justwalk.device_protocol.feedback_message``, with ``received_at_us``, the gateway's
receipt of the chunk that caused it, so a device can measure the delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest.registry import DeviceEntry
from justwalk.device_protocol import feedback_message
from justwalk.records import FeedbackRecord

log = logging.getLogger(__name__)


class FeedbackRelay:
    """Open device sockets, and the push of feedback records to them."""

    def __init__(self) -> None:
        self._sockets: dict[str, dict[web.WebSocketResponse, DeviceEntry]] = defaultdict(dict)
        self.sent_ = 0
        self.undeliverable_ = 0
        self.refused_ = 0

    def open(self, entry: DeviceEntry, ws: web.WebSocketResponse) -> None:
        """A device's socket opened."""
        self._sockets[entry.device_id][ws] = entry

    def close(self, entry: DeviceEntry, ws: web.WebSocketResponse) -> None:
        """A device's socket closed."""
        sockets = self._sockets.get(entry.device_id)
        if sockets is not None:
            sockets.pop(ws, None)
            if not sockets:
                del self._sockets[entry.device_id]

    async def push(self, record: FeedbackRecord) -> int:
        """Send one record to its device's open sockets; how many got it."""
        sockets = self._sockets.get(record.device_id, {})
        text = feedback_message(record.feedback, record.session_id, record.t_us, record.text,
                                {**record.values,
                                 "received_at_us": record.chunk_received_at_us})
        n = 0
        for ws, entry in list(sockets.items()):
            if entry.patient_id != record.patient_id or entry.clinic_id != record.clinic_id:
                self.refused_ += 1
                log.error("feedback for patient %s of clinic %s not sent to device %s "
                          "(patient %s of clinic %s)", record.patient_id, record.clinic_id,
                          entry.device_id, entry.patient_id, entry.clinic_id)
                continue
            if ws.closed:
                continue
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(text)
                n += 1
        self.sent_ += n
        if n == 0:
            self.undeliverable_ += 1
        return n

    async def run(self, bootstrap: str, topic: str, *, fetch_max_wait_ms: int = 20,
                  started: asyncio.Event | None = None) -> None:
        """Consume ``topic`` from its end and push every record until cancelled."""
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="latest", enable_auto_commit=False,
                                    fetch_max_wait_ms=fetch_max_wait_ms,
                                    client_id="justwalk-gateway-feedback")
        await consumer.start()
        try:
            await consumer.topics()  # metadata
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise RuntimeError(f"feedback topic {topic!r} does not exist")
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)  # resolve the end now, not at the first fetch
            if started is not None:
                started.set()
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    for m in messages:
                        try:
                            record = FeedbackRecord.from_dict(orjson.loads(m.value or b""))
                        except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
                            log.warning("feedback record at %s[%d]@%d unreadable: %r",
                                        m.topic, m.partition, m.offset, exc)
                            continue
                        await self.push(record)
        finally:
            await consumer.stop()
