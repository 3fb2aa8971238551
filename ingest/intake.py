"""The gateway's core, shared by both endpoints: decode, validate, publish, report.

An accepted chunk is published as the device's own bytes (decoded once here, to validate;
never re-encoded), with the clinic of the device's registry entry and the receipt time in
Kafka headers (``justwalk.wire.chunk_headers``).

A chunk goes through two steps so that a connection can keep decoding while Kafka
stores earlier chunks: ``submit`` (decode, validate, queue in the producer, in arrival
order) and ``settle`` (wait for delivery; the answer to give the device). Calling
``settle`` in submission order keeps acks in order.

Every error answer is logged (pseudonymous ids only, never tokens) and published in the
background as a ``RejectRecord`` to the rejects topic; a failure there is only logged. A
device's rejections are written down at a bounded rate (``ingest.limits.ReportLimiter``):
past it they are counted, and the counts go with the device's next line that is written.

Devices must send the current wire version (``justwalk.wire.VERSION``, sealed with a
CRC-32C); older ones are refused as ``unsupported_version``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ingest.limits import DeviceLimits, ReportLimiter
from ingest.publisher import Publisher
from ingest.registry import DeviceEntry
from ingest.validation import ChunkValidator, Outcome
from justwalk.config import Settings
from justwalk.device_protocol import ack_message, error_message
from justwalk.records import RejectRecord
from justwalk.wire import (
    VERSION,
    ChunkError,
    ImuChunk,
    chunk_headers,
    decode_chunk,
    peek_sequence_and_session,
)

log = logging.getLogger(__name__)

Clock = Callable[[], int]
"""Wall-clock time in microseconds since the Unix epoch."""

UNAVAILABLE = "unavailable"
INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Result:
    """The gateway's answer about one chunk; ``code`` is empty when it was stored."""

    sequence: int | None
    code: str = ""
    reason: str = ""
    duplicate: bool = False
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        """True for an ack (stored now or earlier)."""
        return not self.code

    def message(self) -> str:
        """The WebSocket text message for this result."""
        if self.ok:
            assert self.sequence is not None
            return ack_message(self.sequence, duplicate=self.duplicate)
        return error_message(self.sequence, self.code, self.reason,
                             retry_after_s=self.retry_after_s)


@dataclass(slots=True)
class Submission:
    """A submitted chunk: either already answered or waiting for delivery."""

    result: Result | None
    entry: DeviceEntry | None = None
    chunk: ImuChunk | None = None
    delivery: Awaitable[object] | None = None


class Intake:
    """Takes raw chunk messages from authenticated devices and publishes the good ones."""

    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        validator: ChunkValidator,
        clock: Clock,
        *,
        max_pending_rejects: int = 1000,
        reports: ReportLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.validator = validator
        self.clock = clock
        self.max_pending_rejects = max_pending_rejects
        if reports is None:
            lim = DeviceLimits()
            reports = ReportLimiter(lim.report_burst, lim.report_per_s, time.monotonic)
        self.reports = reports
        self._reject_tasks: set[asyncio.Task[None]] = set()
        self.rejects_dropped = 0

    async def submit(self, data: bytes, entry: DeviceEntry) -> Submission:
        """Decode and validate one message; queue it for Kafka if it is accepted."""
        received_us = self.clock()
        sequence, session_id = peek_sequence_and_session(data)
        try:
            try:
                chunk = decode_chunk(data, versions=(VERSION,))
            except ChunkError as exc:
                return Submission(self.reject(entry, session_id, sequence, exc.code,
                                                exc.reason, received_us))
            sequence, session_id = chunk.sequence, chunk.session_id
            verdict = self.validator.check(chunk, entry, received_us)
            if verdict.outcome is Outcome.DUPLICATE:
                return Submission(Result(sequence, duplicate=True))
            if verdict.outcome is Outcome.REJECT:
                return Submission(self.reject(entry, session_id, sequence, verdict.code,
                                                verdict.reason, received_us))
            return await self._send(data, chunk, entry, received_us)
        except Exception:
            log.exception("internal error on a chunk from device %s (patient %s, session %s, "
                          "sequence %s)", entry.device_id, entry.patient_id, session_id,
                          sequence)
            return Submission(self.reject(
                entry, session_id, sequence, INTERNAL_ERROR,
                "the gateway failed while processing this chunk; it was not stored",
                received_us))

    async def settle(self, submission: Submission) -> Result:
        """Wait until a submitted chunk is stored; the answer for the device."""
        if submission.result is not None:
            return submission.result
        entry, chunk, delivery = submission.entry, submission.chunk, submission.delivery
        assert entry is not None and chunk is not None and delivery is not None
        try:
            await delivery
        except Exception as exc:
            self.validator.forget(chunk.device_id, chunk.session_id)
            log.error("could not store chunk %s of device %s session %s: %r", chunk.sequence,
                      chunk.device_id, chunk.session_id, exc)
            return self.reject(entry, chunk.session_id, chunk.sequence, UNAVAILABLE,
                               _UNAVAILABLE_REASON)
        return Result(chunk.sequence)

    def reject(
        self,
        entry: DeviceEntry,
        session_id: str | None,
        sequence: int | None,
        code: str,
        reason: str,
        received_us: int | None = None,
        *,
        retry_after_s: float | None = None,
    ) -> Result:
        """Log a rejection, publish it to the error stream, and return the answer.

        Past the device's reporting rate the rejection is only counted (see the module).
        """
        result = Result(sequence, code, reason, retry_after_s=retry_after_s)
        allowed, held_back = self.reports.allow(entry.device_id, code)
        if not allowed:
            return result
        log.warning("rejected chunk from device %s (patient %s, session %s, sequence %s): "
                    "%s: %s%s", entry.device_id, entry.patient_id, session_id, sequence, code,
                    reason, held_back_text(held_back))
        record = RejectRecord(
            received_at_us=self.clock() if received_us is None else received_us,
            source="gateway",
            device_id=entry.device_id,
            patient_id=entry.patient_id,
            session_id=session_id,
            sequence=sequence,
            code=code,
            reason=reason,
        )
        self._publish_reject(entry.patient_id.encode(), record.to_json())
        return result

    async def close(self, timeout_s: float = 5.0) -> None:
        """Wait a little for rejection records still being published, then give up."""
        tasks = set(self._reject_tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()

    async def _send(self, data: bytes, chunk: ImuChunk, entry: DeviceEntry,
                    received_us: int) -> Submission:
        # The chunk is recorded as accepted; until it is queued, a failure must undo that,
        # or the device's resend would be acked as a duplicate and the data lost. The
        # device's bytes go to Kafka unchanged; the clinic travels in a header.
        try:
            delivery = await self.publisher.send(
                self.settings.topic_chunks, chunk.patient_id.encode(), data,
                headers=chunk_headers(entry.clinic_id, received_us))
        except BaseException as exc:
            self.validator.forget(chunk.device_id, chunk.session_id)
            if not isinstance(exc, Exception):
                raise
            log.error("could not queue chunk %s of device %s session %s: %r", chunk.sequence,
                      chunk.device_id, chunk.session_id, exc)
            return Submission(self.reject(entry, chunk.session_id, chunk.sequence,
                                            UNAVAILABLE, _UNAVAILABLE_REASON, received_us))
        return Submission(None, entry, chunk, delivery)

    def _publish_reject(self, key: bytes, value: bytes) -> None:
        if len(self._reject_tasks) >= self.max_pending_rejects:
            self.rejects_dropped += 1
            if self.rejects_dropped % 1000 == 1:
                log.warning("rejects topic is backed up; %d rejection records dropped so far",
                            self.rejects_dropped)
            return
        task = asyncio.create_task(
            self.publisher.publish(self.settings.topic_rejects, key, value))
        self._reject_tasks.add(task)
        task.add_done_callback(self._reject_published)

    def _reject_published(self, task: asyncio.Task[None]) -> None:
        self._reject_tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("could not publish a rejection record: %r", exc)


def held_back_text(counts: dict[str, int]) -> str:
    """`` (and 12 more rejections not logged: truncated 10, ...)`` or an empty string."""
    if not counts:
        return ""
    listed = ", ".join(f"{code} {n}" for code, n in sorted(counts.items(), key=lambda x: -x[1]))
    return f" (and {sum(counts.values())} more rejections not logged: {listed})"


_UNAVAILABLE_REASON = "the chunk could not be stored (Kafka unavailable); send it again later"
