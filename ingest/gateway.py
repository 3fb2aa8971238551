"""The device gateway: an aiohttp service taking IMU chunks from devices into Kafka.

Endpoints and answers are defined in ``justwalk.device_protocol``. ``create_app`` builds
the application around any ``Publisher`` (tests use the real Kafka one); ``serve`` runs
it against Kafka until cancelled or SIGTERM.

No device gets more than its share (``ingest.limits.DeviceLimits``): every message takes
from the device's frame and byte buckets, and one that finds them empty is answered
``rate_limited`` (HTTP 429 with ``Retry-After`` for an upload) before it is read. Uploads
are read frame by frame as the body arrives, answered with a bounded summary, and pause
between slices so that all uploads together take at most ``upload_share`` of the
gateway's time; a connection sending without pause yields every ``yield_every`` messages.
``benchmarks/fairness.py`` measures the other devices' acks meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import StreamReader, WSCloseCode, WSMsgType, web

from ingest.feedback import FeedbackRelay
from ingest.intake import INTERNAL_ERROR, Clock, Intake, Result, Submission, held_back_text
from ingest.limits import DeviceBudgets, DeviceLimits, ReportLimiter
from ingest.publisher import KafkaPublisher, Publisher
from ingest.registry import DeviceEntry, DeviceRegistry
from ingest.tls import gateway_ssl_context
from ingest.training import TrainingGate
from ingest.validation import ChunkValidator
from justwalk.config import Settings
from justwalk.db.optional import open_repository
from justwalk.device_protocol import (
    AUTH_HEADER,
    AUTH_SCHEME,
    HEALTH_PATH,
    RETRYABLE_CODES,
    STREAM_PATH,
    UPLOAD_PATH,
    error_message,
    is_session_message,
)
from justwalk.kafka_topics import ensure_topics
from justwalk.wire import (
    MAX_MESSAGE_BYTES,
    UPLOAD_PREFIX,
    ChunkError,
    peek_sequence_and_session,
)

log = logging.getLogger(__name__)

MAX_WS_MESSAGE_BYTES = 1024 * 1024
"""WebSocket messages up to this size are read and answered (a chunk over
``justwalk.wire.MAX_MESSAGE_BYTES`` with a ``too_large`` error, the socket staying open);
a larger one is answered the same way, then the socket is closed (1009): the gateway does
not buffer it, so the stream cannot go on after it."""
WS_HEARTBEAT_S = 30.0
# Chunks of one connection / upload queued in Kafka before the oldest must be stored.
STREAM_PIPELINE_DEPTH = 64
UPLOAD_PIPELINE_DEPTH = 64
# On shutdown, open sockets are closed (1001 going away); requests get this long to finish.
SHUTDOWN_TIMEOUT_S = 10.0
RATE_LIMITED = "rate_limited"

_INTAKE = web.AppKey("intake", Intake)
_REGISTRY = web.AppKey("registry", DeviceRegistry)
_PUBLISHER = web.AppKey("publisher", Publisher)
_BUDGETS = web.AppKey("budgets", DeviceBudgets)
_SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("sockets")
_TRAINING = web.AppKey("training", TrainingGate)
_FEEDBACK = web.AppKey("feedback", FeedbackRelay)


def wall_clock_us() -> int:
    """The gateway's wall clock: microseconds since the Unix epoch."""
    return time.time_ns() // 1000


def create_app(
    settings: Settings,
    publisher: Publisher,
    registry: DeviceRegistry,
    clock: Clock = wall_clock_us,
    *,
    validator: ChunkValidator | None = None,
    limits: DeviceLimits | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    training: TrainingGate | None = None,
    feedback: FeedbackRelay | None = None,
) -> web.Application:
    """The gateway's aiohttp application; the caller owns ``publisher``.

    ``limits`` are the per-device limits (``ingest.limits``); ``monotonic`` is their clock.
    ``training`` answers the devices' session_start/session_stop (``ingest.training``);
    without it they are refused as ``training_unavailable``. ``feedback`` keeps the open
    sockets for the feedback pushed to them (``ingest.feedback``).
    """
    app = web.Application(client_max_size=settings.max_upload_bytes)
    if validator is None:
        validator = ChunkValidator.from_settings(settings)
    limits = limits or DeviceLimits()
    reports = ReportLimiter(limits.report_burst, limits.report_per_s, monotonic)
    intake = Intake(settings, publisher, validator, clock, reports=reports)
    app[_INTAKE] = intake
    app[_REGISTRY] = registry
    app[_PUBLISHER] = publisher
    app[_BUDGETS] = DeviceBudgets(limits, monotonic)
    app[_SOCKETS] = weakref.WeakSet()
    app[_TRAINING] = training or TrainingGate(None, publisher, settings.topic_chunks)
    app[_FEEDBACK] = feedback or FeedbackRelay()
    app.router.add_get(STREAM_PATH, _stream)
    app.router.add_post(UPLOAD_PATH, _upload)
    app.router.add_get(HEALTH_PATH, _health)
    app.on_shutdown.append(_close_sockets)
    app.on_cleanup.append(_close_intake)
    return app


async def serve(settings: Settings) -> None:
    """Run the gateway on ``settings.gateway_host:gateway_port`` until cancelled or SIGTERM."""
    registry = DeviceRegistry.load(settings.device_registry)
    log.info("device registry %s: %d devices", settings.device_registry, len(registry))
    await ensure_topics(settings)
    publisher = KafkaPublisher(settings.kafka_bootstrap,
                               delivery_timeout_s=settings.kafka_delivery_timeout_s)
    await publisher.start()
    try:
        # No access log: a line per request would let any client fill the disk; the
        # handlers log what matters, per device and rate-limited (ingest.limits).
        training = TrainingGate(open_repository(settings, "gateway"), publisher,
                                settings.topic_chunks)
        relay = FeedbackRelay()
        relaying = asyncio.create_task(relay.run(settings.kafka_bootstrap,
                                                 settings.topic_feedback))
        relaying.add_done_callback(_relay_ended)
        runner = web.AppRunner(create_app(settings, publisher, registry, training=training,
                                          feedback=relay),
                               shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None)
        await runner.setup()
        try:
            tls = gateway_ssl_context(settings)  # None: plain HTTP (loopback, behind a proxy)
            site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port,
                               ssl_context=tls)
            await site.start()
            log.info("gateway listening on %s://%s:%d", "https" if tls else "http",
                     settings.gateway_host, settings.gateway_port)
            await _until_sigterm()
        finally:
            relaying.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relaying
            await runner.cleanup()
    finally:
        await publisher.stop()
    log.info("gateway stopped")


def _relay_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("feedback to the devices stopped: %r", task.exception())


async def _until_sigterm() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        installed = False
    try:
        await stop.wait()  # or until cancelled
        log.info("SIGTERM: shutting down")
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)


def _authenticate(request: web.Request) -> DeviceEntry | None:
    scheme, _, token = request.headers.get(AUTH_HEADER, "").partition(" ")
    if scheme.lower() != AUTH_SCHEME.lower():
        return None
    return request.app[_REGISTRY].authenticate(token.strip())


def _json_error(status: int, code: str, reason: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=error_message(None, code, reason),
                        content_type="application/json", headers=headers)


def _unauthorized(request: web.Request) -> web.Response:
    allowed, held_back = request.app[_INTAKE].reports.allow(f"remote {request.remote}",
                                                            "unauthorized")
    if allowed:
        log.warning("refused %s %s from %s: missing or unknown device token%s",
                    request.method, request.path, request.remote, held_back_text(held_back))
    return _json_error(401, "unauthorized", "missing or unknown device token",
                       **{"WWW-Authenticate": AUTH_SCHEME})


def _rate_limited_reason(wait_s: float) -> str:
    return (f"this device sent more than its share of chunks or bytes; nothing more was "
            f"read. Send again in {wait_s:.1f} s")


def _retry_after(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))


class _DeviceSocket(web.WebSocketResponse):
    """A device's WebSocket: answers a message too large to read before closing (1009).

    The answer names the fault and the limit, like the answer to every other fault.
    """

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"",
                    drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not self.closed:
            with contextlib.suppress(Exception):
                await self.send_str(error_message(
                    None, "too_large",
                    f"message over {MAX_WS_MESSAGE_BYTES} bytes, the most the gateway reads "
                    f"(a chunk has at most {MAX_MESSAGE_BYTES}); the connection is closed"))
            message = message or b"message too large"
        return await super().close(code=code, message=message, drain=drain)


async def _stream(request: web.Request) -> web.StreamResponse:
    entry = _authenticate(request)
    if entry is None:
        return _unauthorized(request)
    intake = request.app[_INTAKE]
    budgets = request.app[_BUDGETS]
    ws = _DeviceSocket(max_msg_size=MAX_WS_MESSAGE_BYTES, heartbeat=WS_HEARTBEAT_S)
    await ws.prepare(request)
    request.app[_SOCKETS].add(ws)
    request.app[_FEEDBACK].open(entry, ws)
    _log_device(intake, entry, "connected", "connected")
    queue: asyncio.Queue[Submission | None] = asyncio.Queue(maxsize=STREAM_PIPELINE_DEPTH)
    answerer = asyncio.create_task(_answer_in_order(ws, intake, queue))
    yield_every = budgets.limits.yield_every
    try:
        received = 0
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                wait_s = budgets.take(entry.device_id, len(msg.data))
                if wait_s:
                    sequence, session_id = peek_sequence_and_session(msg.data)
                    submission = Submission(intake.reject(
                        entry, session_id, sequence, RATE_LIMITED,
                        _rate_limited_reason(wait_s), retry_after_s=round(wait_s, 3)))
                else:
                    submission = await intake.submit(msg.data, entry)
            elif msg.type is WSMsgType.TEXT and is_session_message(msg.data):
                # session_start / session_stop (ingest.training), answered at once
                budgets.take(entry.device_id, len(msg.data))  # counted like any message
                await ws.send_str(await request.app[_TRAINING].handle(entry, msg.data))
                continue
            elif msg.type is WSMsgType.TEXT:
                budgets.take(entry.device_id, len(msg.data))  # counted like any message
                submission = Submission(intake.reject(
                    entry, None, None, "expected_binary",
                    f"got a text message of {len(msg.data)} characters; chunks are sent "
                    "as binary messages"))
            else:
                continue
            await queue.put(submission)
            received += 1
            if received % yield_every == 0:
                await asyncio.sleep(0)  # a device sending without pause lets others run
        await queue.put(None)
        await answerer
    finally:
        answerer.cancel()
        request.app[_FEEDBACK].close(entry, ws)
    _log_device(intake, entry, "disconnected", f"disconnected (close code {ws.close_code})")
    return ws


def _log_device(intake: Intake, entry: DeviceEntry, code: str, what: str) -> None:
    allowed, held_back = intake.reports.allow(entry.device_id, code)
    if allowed:
        log.info("device %s (patient %s) %s%s", entry.device_id, entry.patient_id, what,
                 held_back_text(held_back))


async def _answer_in_order(ws: web.WebSocketResponse, intake: Intake,
                           queue: asyncio.Queue[Submission | None]) -> None:
    """Send each submission's answer once it is settled, in submission order; never fails."""
    while (submission := await queue.get()) is not None:
        try:
            result = await intake.settle(submission)
            if not ws.closed:  # else keep settling: failed deliveries must reset sessions
                await ws.send_str(result.message())
        except (ConnectionError, RuntimeError) as exc:  # the device went away
            log.debug("could not answer a chunk: %r", exc)
        except Exception:
            log.exception("internal error while answering a chunk")
            sequence = submission.chunk.sequence if submission.chunk is not None else None
            with contextlib.suppress(Exception):
                await ws.send_str(error_message(sequence, INTERNAL_ERROR,
                                                "the gateway failed while answering this chunk"))


async def _upload(request: web.Request) -> web.Response:
    entry = _authenticate(request)
    if entry is None:
        return _unauthorized(request)
    intake = request.app[_INTAKE]
    budgets = request.app[_BUDGETS]
    limit = intake.settings.max_upload_bytes
    # Refused before anything is read: the same summary, nothing read, resend from 0.
    refused = _UploadAnswer(budgets.limits.listed_rejections)
    if request.content_length is not None and request.content_length > limit:
        refused.stop(0, "too_large",
                     f"upload has {request.content_length} bytes; the limit is {limit} bytes")
        return _answer(refused)
    if not budgets.may_start_upload(entry.device_id):
        refused.retry_after_s = budgets.retry_after_s(entry.device_id)
        refused.stop(0, RATE_LIMITED, _rate_limited_reason(refused.retry_after_s))
        return await _held_back(refused, budgets.limits.refusal_delay_s)
    if not budgets.start_upload(entry.device_id):
        refused.retry_after_s = 1.0
        refused.stop(0, RATE_LIMITED,
                     f"{budgets.limits.uploads_at_once} uploads of this device are already "
                     "being processed; send this one when one of them is answered")
        return await _held_back(refused, budgets.limits.refusal_delay_s)
    try:
        answer = await _process_upload(intake, budgets, entry, request.content, limit)
    finally:
        budgets.end_upload(entry.device_id)
    # One line per upload read (uploads are bounded by the device's limits), whatever the
    # rate of its rejection lines.
    log.info("upload from device %s (patient %s): %d frames, %d accepted, %d duplicates, "
             "%d rejected %s%s%s", entry.device_id, entry.patient_id, answer.frames,
             answer.accepted, answer.duplicates, answer.rejected_count,
             answer.errors_by_code or "",
             f"; stopped: {answer.stopped['code']}" if answer.stopped else "",
             held_back_text(intake.reports.held_back(entry.device_id)))
    return _answer(answer)


async def _held_back(answer: _UploadAnswer, delay_s: float) -> web.Response:
    """A refusal answered after a pause, never longer than the device must wait anyway.

    A device that does not wait sends its next request later, so its body is read (to
    let it see the answer) less often.
    """
    await asyncio.sleep(min(delay_s, answer.retry_after_s or 0.0))
    return _answer(answer)


def _answer(answer: _UploadAnswer) -> web.Response:
    headers = {}
    if answer.retry_after_s is not None:
        headers["Retry-After"] = _retry_after(answer.retry_after_s)
    return web.json_response(answer.body(), status=answer.status(), headers=headers)


@dataclass
class _UploadAnswer:
    """A bounded summary of an upload: counts, the first rejections, where to resume."""

    listed: int
    frames: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, object]] = field(default_factory=list)
    rejected_count: int = 0
    errors_by_code: dict[str, int] = field(default_factory=dict)
    resend_from: int | None = None
    stopped: dict[str, str] | None = None
    retry_after_s: float | None = None

    def add(self, index: int, result: Result) -> None:
        self.frames = max(self.frames, index + 1)
        if result.duplicate:
            self.duplicates += 1
        elif result.ok:
            self.accepted += 1
        else:
            self.reject(index, result.sequence, result.code, result.reason)

    def reject(self, index: int, sequence: int | None, code: str, reason: str) -> None:
        self.rejected_count += 1
        self.errors_by_code[code] = self.errors_by_code.get(code, 0) + 1
        if len(self.rejected) < self.listed:
            self.rejected.append({"index": index, "sequence": sequence, "code": code,
                                  "reason": reason})
        if code in RETRYABLE_CODES:
            self.resend_at(index)

    def resend_at(self, index: int) -> None:
        if self.resend_from is None or index < self.resend_from:
            self.resend_from = index

    def stop(self, index: int, code: str, reason: str) -> None:
        """Frames from ``index`` on were not read."""
        self.stopped = {"code": code, "reason": reason}
        self.resend_at(index)

    def status(self) -> int:
        if self.stopped is not None:
            return {RATE_LIMITED: 429, "too_large": 413}.get(self.stopped["code"], 422)
        return 422 if self.rejected_count else 200

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {
            "accepted": self.accepted, "duplicates": self.duplicates,
            "rejected": self.rejected, "rejected_count": self.rejected_count,
            "errors_by_code": self.errors_by_code, "frames": self.frames,
            "resend_from": self.resend_from}
        if self.stopped is not None:
            out |= self.stopped
        if self.retry_after_s is not None:
            out["retry_after_s"] = round(self.retry_after_s, 3)
        return out


async def _process_upload(intake: Intake, budgets: DeviceBudgets, entry: DeviceEntry,
                          content: StreamReader, max_bytes: int) -> _UploadAnswer:
    """Read an upload's frames one by one and submit them in order; a bounded summary.

    At most UPLOAD_PIPELINE_DEPTH chunks wait for delivery; reading stops at the device's
    limits (``ingest.limits``), and the answer says from which frame to send again.
    """
    limits = budgets.limits
    answer = _UploadAnswer(limits.listed_rejections)
    pending: deque[tuple[int, Submission]] = deque()
    index = 0
    busy_s = 0.0  # spent decoding, validating and queueing since the last pause
    try:
        async for item in read_frames(content, max_bytes):
            if isinstance(item, BodyTooLarge):
                answer.stop(index, item.code, item.reason)
                break
            if isinstance(item, ChunkError):  # framing: nothing after it can be read
                pending.append((index, Submission(intake.reject(entry, None, None, item.code,
                                                                item.reason))))
                index += 1
                break
            wait_s = budgets.take(entry.device_id, UPLOAD_PREFIX.size + len(item))
            if wait_s:
                answer.retry_after_s = max(wait_s, budgets.retry_after_s(entry.device_id))
                answer.stop(index, RATE_LIMITED, _rate_limited_reason(answer.retry_after_s)
                            + f", from frame {index} on")
                break
            started = time.perf_counter()
            pending.append((index, await intake.submit(item, entry)))
            busy_s += time.perf_counter() - started
            while pending and (len(pending) >= UPLOAD_PIPELINE_DEPTH
                               or pending[0][1].result is not None):
                i, submission = pending.popleft()
                answer.add(i, await intake.settle(submission))
            index += 1
            if answer.rejected_count >= limits.max_upload_errors:
                answer.stop(index, "too_many_errors",
                            f"{answer.rejected_count} frames were rejected; frames from {index} "
                            "on were not read")
                break
            if index % limits.yield_every == 0:  # let live chunks through (upload_share)
                await asyncio.sleep(budgets.upload_pause_s(busy_s))
                busy_s = 0.0
    finally:  # also when the device went away: a failed delivery must reset its session
        for i, submission in pending:
            answer.add(i, await intake.settle(submission))
    answer.frames = max(answer.frames, index)
    return answer


class BodyTooLarge(ChunkError):
    """An upload body longer than the gateway takes (HTTP 413)."""


async def read_frames(content: StreamReader,
                      max_bytes: int) -> AsyncIterator[bytes | ChunkError]:
    """The messages of an upload body (``justwalk.wire.frame_upload``), read as they come.

    Ends with a ChunkError (instead of a message) at a broken frame, or a BodyTooLarge
    when the body goes over ``max_bytes``: nothing after it is read.
    """
    offset = 0
    index = 0
    prefix_bytes = UPLOAD_PREFIX.size
    while True:
        try:
            prefix = await content.readexactly(prefix_bytes)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                yield ChunkError("truncated",
                                 f"upload ends inside a length prefix at byte {offset}")
            return
        (length,) = UPLOAD_PREFIX.unpack(prefix)
        if length > MAX_MESSAGE_BYTES:
            yield ChunkError("too_large", f"upload frame {index} claims {length} bytes; "
                             f"the limit is {MAX_MESSAGE_BYTES}")
            return
        if offset + prefix_bytes + length > max_bytes:
            yield BodyTooLarge("too_large", f"upload body goes over the limit of {max_bytes} "
                               f"bytes at frame {index}; frames from {index} on were not read")
            return
        try:
            message = await content.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            yield ChunkError("truncated", f"upload frame {index} claims {length} bytes, "
                             f"only {len(exc.partial)} remain")
            return
        offset += prefix_bytes + length
        index += 1
        yield message


async def _health(request: web.Request) -> web.Response:
    ok = await request.app[_PUBLISHER].ping()
    return web.json_response({"status": "ok" if ok else "unavailable", "kafka": ok},
                             status=200 if ok else 503)


async def _close_sockets(app: web.Application) -> None:
    sockets: weakref.WeakSet[web.WebSocketResponse] = app[_SOCKETS]
    for ws in list(sockets):
        with contextlib.suppress(Exception):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway shutting down")


async def _close_intake(app: web.Application) -> None:
    await app[_INTAKE].close()
