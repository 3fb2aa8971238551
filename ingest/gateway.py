"""The device gateway: an aiohttp service taking IMU chunks from devices into Kafka.

Endpoints and answers are defined in ``justwalk.device_protocol``. ``create_app`` builds
the application around any ``Publisher`` (tests use the real Kafka one); ``serve`` runs
it against Kafka until cancelled or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import struct
import time
import weakref
from collections import deque
from dataclasses import asdict, dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web

from ingest.intake import INTERNAL_ERROR, Clock, Intake, Result, Submission
from ingest.publisher import KafkaPublisher, Publisher
from ingest.registry import DeviceEntry, DeviceRegistry
from ingest.validation import ChunkValidator
from justwalk.config import Settings
from justwalk.device_protocol import (
    AUTH_HEADER,
    AUTH_SCHEME,
    HEALTH_PATH,
    STREAM_PATH,
    UPLOAD_PATH,
    error_message,
)
from justwalk.kafka_topics import ensure_topics
from justwalk.wire import MAX_MESSAGE_BYTES, ChunkError, split_upload

log = logging.getLogger(__name__)

MAX_WS_MESSAGE_BYTES = MAX_MESSAGE_BYTES + 1024
WS_HEARTBEAT_S = 30.0
# Chunks of one connection / upload queued in Kafka before the oldest must be stored.
STREAM_PIPELINE_DEPTH = 64
UPLOAD_PIPELINE_DEPTH = 512
# On shutdown, open sockets are closed (1001 going away); requests get this long to finish.
SHUTDOWN_TIMEOUT_S = 10.0

_INTAKE = web.AppKey("intake", Intake)
_REGISTRY = web.AppKey("registry", DeviceRegistry)
_PUBLISHER = web.AppKey("publisher", Publisher)
_SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("sockets")


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
) -> web.Application:
    """The gateway's aiohttp application; the caller owns ``publisher``."""
    app = web.Application(client_max_size=settings.max_upload_bytes)
    if validator is None:
        validator = ChunkValidator.from_settings(settings)
    intake = Intake(settings, publisher, validator, clock)
    app[_INTAKE] = intake
    app[_REGISTRY] = registry
    app[_PUBLISHER] = publisher
    app[_SOCKETS] = weakref.WeakSet()
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
    publisher = KafkaPublisher(settings.kafka_bootstrap)
    await publisher.start()
    try:
        runner = web.AppRunner(create_app(settings, publisher, registry),
                               shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port)
            await site.start()
            log.info("gateway listening on http://%s:%d", settings.gateway_host,
                     settings.gateway_port)
            await _until_sigterm()
        finally:
            await runner.cleanup()
    finally:
        await publisher.stop()
    log.info("gateway stopped")


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
    log.warning("refused %s %s from %s: missing or unknown device token", request.method,
                request.path, request.remote)
    return _json_error(401, "unauthorized", "missing or unknown device token",
                       **{"WWW-Authenticate": AUTH_SCHEME})


async def _stream(request: web.Request) -> web.StreamResponse:
    entry = _authenticate(request)
    if entry is None:
        return _unauthorized(request)
    intake = request.app[_INTAKE]
    ws = web.WebSocketResponse(max_msg_size=MAX_WS_MESSAGE_BYTES, heartbeat=WS_HEARTBEAT_S)
    await ws.prepare(request)
    request.app[_SOCKETS].add(ws)
    log.info("device %s (patient %s) connected", entry.device_id, entry.patient_id)
    queue: asyncio.Queue[Submission | None] = asyncio.Queue(maxsize=STREAM_PIPELINE_DEPTH)
    answerer = asyncio.create_task(_answer_in_order(ws, intake, queue))
    try:
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                submission = await intake.submit(msg.data, entry)
            elif msg.type is WSMsgType.TEXT:
                submission = Submission(intake.reject(
                    entry, None, None, "expected_binary",
                    f"got a text message of {len(msg.data)} characters; chunks are sent "
                    "as binary messages"))
            else:
                continue
            await queue.put(submission)
        await queue.put(None)
        await answerer
    finally:
        answerer.cancel()
    log.info("device %s (patient %s) disconnected (close code %s)", entry.device_id,
             entry.patient_id, ws.close_code)
    return ws


async def _answer_in_order(ws: web.WebSocketResponse, intake: Intake,
                           queue: asyncio.Queue[Submission | None]) -> None:
    """Send each submission's answer once it is settled, in submission order; never fails."""
    while (submission := await queue.get()) is not None:
        try:
            result = await intake.settle(submission)
            if not ws.closed:  # else keep settling: failed deliveries must reset sessions
                await ws.send_str(result.message())
        except (ConnectionError, RuntimeError) as exc:  # the device went away
            log.info("could not answer a chunk: %r", exc)
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
    limit = intake.settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        return _too_large(request.content_length, limit)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _too_large(None, limit)
    frames, framing_error = split_upload_partial(body)
    answer = await _process_upload(intake, entry, frames)
    if framing_error is not None:
        answer.add(len(frames), intake.reject(entry, None, None, framing_error.code,
                                              framing_error.reason))
    log.info("upload from device %s (patient %s): %d frames, %d accepted, %d duplicates, "
             "%d rejected", entry.device_id, entry.patient_id, len(frames), answer.accepted,
             answer.duplicates, len(answer.rejected))
    return web.json_response(asdict(answer), status=422 if answer.rejected else 200)


@dataclass
class _UploadAnswer:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, object]] = field(default_factory=list)

    def add(self, index: int, result: Result) -> None:
        if result.duplicate:
            self.duplicates += 1
        elif result.ok:
            self.accepted += 1
        else:
            self.rejected.append({"index": index, "sequence": result.sequence,
                                  "code": result.code, "reason": result.reason})


async def _process_upload(intake: Intake, entry: DeviceEntry,
                          frames: list[bytes]) -> _UploadAnswer:
    """Submit frames in order, keeping at most UPLOAD_PIPELINE_DEPTH awaiting delivery."""
    answer = _UploadAnswer()
    pending: deque[tuple[int, Submission]] = deque()
    for index, frame in enumerate(frames):
        pending.append((index, await intake.submit(frame, entry)))
        if len(pending) >= UPLOAD_PIPELINE_DEPTH:
            index, submission = pending.popleft()
            answer.add(index, await intake.settle(submission))
    for index, submission in pending:
        answer.add(index, await intake.settle(submission))
    return answer


def _too_large(size: int | None, limit: int) -> web.Response:
    what = f"{size} bytes" if size is not None else "more bytes than allowed"
    return _json_error(413, "too_large", f"upload has {what}; the limit is {limit} bytes")


def split_upload_partial(body: bytes) -> tuple[list[bytes], ChunkError | None]:
    """``split_upload``, but keeping the frames before a broken one (and its error)."""
    try:
        return split_upload(body), None
    except ChunkError as exc:
        return split_upload(body[: _intact_prefix_bytes(body)]), exc


def _intact_prefix_bytes(body: bytes) -> int:
    """Length of the longest prefix made of whole frames (uint32 length + message)."""
    offset = 0
    while offset + 4 <= len(body):
        (length,) = struct.unpack_from("<I", body, offset)
        if length > MAX_MESSAGE_BYTES or offset + 4 + length > len(body):
            break
        offset += 4 + length
    return offset


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
