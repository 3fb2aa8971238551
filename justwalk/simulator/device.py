"""A simulated lower-back device that streams samples to the gateway, as a real one would.

Protocol: ``justwalk.device_protocol`` (WebSocket ``/v1/stream`` with a bearer token; one
JSON answer per binary chunk). Chunks are encoded with ``justwalk.wire.encode_chunk``; chunk
*k* carries sequence *k* (from 0 in each session) and starts at device time
``start_us + round(k * chunk_samples * 1e6 / fs)``. One call streams (or uploads) one
session: its final chunk carries ``ChunkFlags.LAST``, as a device sets it when the recording
stops (``end_session=False`` leaves the session open, like a device that dies).

Delivery is at-least-once: a chunk stays in the device's buffer until the gateway answers it
(ack, or a final error). When the connection drops, or the gateway answers a chunk with a
retryable code (``RETRYABLE_CODES``: it could not store it now), the device reconnects with
a growing back-off (up to ``max_reconnect_delay_s``) and first resends every unanswered
chunk, in order, from the oldest: the chunk after its last acknowledged one. The gateway
acks those it had already stored as duplicates. At most ``max_in_flight`` chunks are
unanswered at a time. A device gives up only after ``give_up_after_s`` without any answer.

Pacing: with ``speed`` > 0 chunk *k* is sent once it has been "recorded", i.e. when
``(k + 1) * chunk_s / speed`` seconds have passed since the first connection; after an
outage the backlog goes out at once. ``speed`` = 0 sends as fast as the in-flight window
allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
from yarl import URL

from justwalk.device_protocol import (
    RETRYABLE_CODES,
    STREAM_PATH,
    UPLOAD_PATH,
    DeviceCredential,
    auth_headers,
)
from justwalk.wire import MAX_SAMPLES, ChunkFlags, ImuChunk, Placement, encode_chunk, frame_upload

log = logging.getLogger(__name__)

DEFAULT_CHUNK_S = 0.5
DEFAULT_MAX_IN_FLIGHT = 8


@dataclass(frozen=True)
class ChunkRejection:
    """A gateway error answer (``sequence`` None when the gateway could not tell)."""

    sequence: int | None
    code: str
    reason: str


@dataclass
class DeviceStats:
    """What happened while one device sent one session.

    ``sent`` counts every message put on the wire (resends included), ``acked`` the distinct
    chunks acknowledged, ``duplicates`` the acks flagged as duplicates. ``completed`` is True
    when every chunk was answered (acked or rejected).
    """

    device_id: str
    patient_id: str
    session_id: str
    chunks: int = 0
    sent: int = 0
    resent: int = 0
    acked: int = 0
    duplicates: int = 0
    reconnects: int = 0
    retried: int = 0
    """Error answers with a retryable code; those chunks were kept and sent again."""
    errors: list[ChunkRejection] = field(default_factory=list)
    completed: bool = False
    sent_at_us: dict[int, int] = field(default_factory=dict)
    """Wall time (us since the epoch) each chunk was first put on the wire, by sequence."""
    acked_at: dict[int, float] = field(default_factory=dict)
    """Wall time (``time.time()``) of each chunk's first ack, by sequence number."""
    retried_at: list[tuple[int, float]] = field(default_factory=list)
    """(sequence, wall time) of every retryable answer."""
    feedback: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """(arrival wall time in us, message) of every feedback message (``TrainingScript``)."""
    session_answers: list[dict[str, Any]] = field(default_factory=list)
    """The gateway's answers to the device's session_start / session_stop."""

    @property
    def error_codes(self) -> dict[str, int]:
        """Number of error answers per code."""
        return dict(Counter(e.code for e in self.errors))

    @property
    def unanswered(self) -> int:
        """Chunks that got neither an ack nor an error."""
        rejected = {e.sequence for e in self.errors if e.sequence is not None}
        return max(self.chunks - self.acked - len(rejected), 0)


def stream_url(gateway_url: str) -> str:
    """WebSocket URL of the gateway's stream endpoint (http -> ws, https -> wss)."""
    url = URL(gateway_url)
    scheme = {"http": "ws", "https": "wss"}.get(url.scheme, url.scheme)
    return str(url.with_scheme(scheme).with_path(STREAM_PATH))


def upload_url(gateway_url: str) -> str:
    """HTTP URL of the gateway's store-and-forward endpoint."""
    url = URL(gateway_url)
    scheme = {"ws": "http", "wss": "https"}.get(url.scheme, url.scheme)
    return str(url.with_scheme(scheme).with_path(UPLOAD_PATH))


def chunk_samples(chunk_s: float, sample_rate_hz: float) -> int:
    """Samples per chunk for a chunk length in seconds."""
    n = round(chunk_s * sample_rate_hz)
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"chunk of {chunk_s} s at {sample_rate_hz} Hz is {n} samples; "
                         f"allowed 1..{MAX_SAMPLES}")
    return n


def chunk_t0_us(start_us: int, k: int, n_per_chunk: int, sample_rate_hz: float) -> int:
    """Device time of the first sample of chunk ``k``."""
    return start_us + round(k * n_per_chunk * 1e6 / sample_rate_hz)


def make_chunks(
    credential: DeviceCredential,
    samples: npt.NDArray[np.float32],
    *,
    start_us: int,
    sample_rate_hz: float,
    session_id: str,
    chunk_s: float = DEFAULT_CHUNK_S,
    placement: Placement = Placement.LOWER_BACK,
    end_session: bool = True,
) -> list[ImuChunk]:
    """Cut (n, 6) samples into wire chunks with sequence numbers from 0 (last may be short).

    With ``end_session`` the last chunk is flagged as the session's last.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 2 or samples.shape[1] != 6 or samples.shape[0] == 0:
        raise ValueError(f"samples must have shape (n > 0, 6), got {samples.shape}")
    per = chunk_samples(chunk_s, sample_rate_hz)
    starts = range(0, samples.shape[0], per)
    return [
        ImuChunk(
            patient_id=credential.patient_id,
            device_id=credential.device_id,
            session_id=session_id,
            sequence=k,
            t0_us=chunk_t0_us(start_us, k, per, sample_rate_hz),
            sample_rate_hz=sample_rate_hz,
            placement=placement,
            samples=samples[i : i + per],
            flags=ChunkFlags.LAST if end_session and k == len(starts) - 1 else ChunkFlags.NONE,
        )
        for k, i in enumerate(starts)
    ]


@dataclass(frozen=True)
class TrainingScript:
    """A training session the simulated device starts (and stops) during its recording.

    ``start_s`` / ``stop_s``: seconds of device time after the recording's first sample
    (``stop_s`` None: no stop; a timed test ends itself). The device sends the message just
    before the first chunk starting at or after that time (``justwalk.device_protocol``).
    """

    session_type: str
    start_s: float = 0.0
    stop_s: float | None = None
    prescription_id: int | None = None
    course_length_m: float | None = None


class _ConnectionLost(Exception):
    """The WebSocket closed or broke before the session was done."""


class SimulatedDevice:
    """One device streaming one session over the WebSocket protocol.

    Parameters are keyword-only and stored unchanged; ``run`` returns the ``DeviceStats``.
    Pass an ``http`` ClientSession to share connections between devices (it is not closed).
    """

    def __init__(
        self,
        credential: DeviceCredential,
        gateway_url: str,
        *,
        sample_rate_hz: float,
        chunk_s: float = DEFAULT_CHUNK_S,
        speed: float = 1.0,
        session_id: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        give_up_after_s: float = 120.0,
        reconnect_delay_s: float = 0.2,
        max_reconnect_delay_s: float = 2.0,
        ack_timeout_s: float = 30.0,
        placement: Placement = Placement.LOWER_BACK,
        end_session: bool = True,
        http: aiohttp.ClientSession | None = None,
        training: TrainingScript | None = None,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.credential = credential
        self.gateway_url = gateway_url
        self.sample_rate_hz = sample_rate_hz
        self.chunk_s = chunk_s
        self.speed = speed
        self.session_id = session_id
        self.max_in_flight = max_in_flight
        self.give_up_after_s = give_up_after_s
        self.reconnect_delay_s = reconnect_delay_s
        self.max_reconnect_delay_s = max_reconnect_delay_s
        self.ack_timeout_s = ack_timeout_s
        self.placement = placement
        self.end_session = end_session
        self.http = http
        self.stats: DeviceStats | None = None
        """The statistics of the run under way or last run (updated as it streams)."""
        self.training = training

    async def run(self, samples: npt.NDArray[np.float32], start_us: int) -> DeviceStats:
        """Stream ``samples`` (n, 6) whose first sample is at device time ``start_us``."""
        session_id = self.session_id or f"s{start_us}"
        chunks = make_chunks(
            self.credential, samples, start_us=start_us, sample_rate_hz=self.sample_rate_hz,
            session_id=session_id, chunk_s=self.chunk_s, placement=self.placement,
            end_session=self.end_session,
        )
        run = _StreamRun(self, chunks, session_id)
        self.stats = run.stats  # live while it streams (e.g. the feedback received so far)
        if self.http is not None:
            return await run.run(self.http)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            return await run.run(http)


class _StreamRun:
    """State of one streaming session, kept across reconnections."""

    def __init__(self, device: SimulatedDevice, chunks: list[ImuChunk], session_id: str):
        self.d = device
        self.chunks = chunks
        cred = device.credential
        self.stats = DeviceStats(cred.device_id, cred.patient_id, session_id, chunks=len(chunks))
        self.pending: dict[int, bytes] = {}  # sequence -> message, insertion = send order
        self.answered: set[int] = set()
        self.next_index = 0
        self.changed = asyncio.Event()
        self.lost = False
        self.progress = False
        self.wall0: float | None = None
        self.loop = asyncio.get_running_loop()
        self.answered_at = self.loop.time()
        """Loop time of the latest answer that was not retryable (for giving up)."""
        # chunk k may go out once its last sample has been "recorded"
        fs = device.sample_rate_hz
        self.ready_s = [(c.t0_us - chunks[0].t0_us) / 1e6 + c.n_samples / fs for c in chunks]
        self.said: set[str] = set()
        """Session messages sent (``session_start``, ``session_stop``)."""

    def _done(self) -> bool:
        return self.next_index >= len(self.chunks) and not self.pending

    async def run(self, http: aiohttp.ClientSession) -> DeviceStats:
        url = stream_url(self.d.gateway_url)
        headers = auth_headers(self.d.credential.token)
        failures = 0
        self.answered_at = self.loop.time()
        while True:
            self.progress = False
            try:
                async with http.ws_connect(url, headers=headers) as ws:
                    if self.wall0 is None:
                        self.wall0 = self.loop.time()
                    await self._connection(ws)
                    await ws.close()
                self.stats.completed = True
                return self.stats
            except aiohttp.WSServerHandshakeError as e:
                if e.status in (401, 403):
                    self.stats.errors.append(ChunkRejection(None, f"http_{e.status}", e.message))
                    log.error("%s: gateway refused the device: %s %s",
                              self.stats.device_id, e.status, e.message)
                    return self.stats
                log.warning("%s: handshake failed: %s", self.stats.device_id, e)
            except (_ConnectionLost, aiohttp.ClientError, OSError, TimeoutError) as e:
                log.warning("%s: connection lost (%s); %d chunks unanswered",
                            self.stats.device_id, e or type(e).__name__, len(self.pending))
            failures = 0 if self.progress else failures + 1
            if self.loop.time() - self.answered_at > self.d.give_up_after_s:
                log.error("%s: giving up: no answer for %.0f s (%d failed attempts)",
                          self.stats.device_id, self.d.give_up_after_s, failures)
                return self.stats
            self.stats.reconnects += 1
            await asyncio.sleep(min(self.d.reconnect_delay_s * 2 ** max(failures - 1, 0),
                                    self.d.max_reconnect_delay_s))

    async def _connection(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Use one connection until the session is done; raise _ConnectionLost otherwise."""
        self.lost = False
        receiver = asyncio.create_task(self._receive(ws))
        try:
            for msg in list(self.pending.values()):
                await self._send(ws, msg)
                self.stats.resent += 1
            while self.next_index < len(self.chunks):
                if not await self._wait(lambda: len(self.pending) < self.d.max_in_flight):
                    raise _ConnectionLost("no answer within the ack timeout")
                await self._pace(self.next_index)
                chunk = self.chunks[self.next_index]
                await self._training(ws, chunk)
                msg = encode_chunk(chunk)
                self.pending[chunk.sequence] = msg
                self.next_index += 1
                self.stats.sent_at_us[chunk.sequence] = time.time_ns() // 1000
                await self._send(ws, msg)
            if not await self._wait(lambda: not self.pending):
                raise _ConnectionLost("no answer within the ack timeout")
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver

    async def _training(self, ws: aiohttp.ClientWebSocketResponse, chunk: ImuChunk) -> None:
        """Send the script's start / stop before the first chunk at or after their time."""
        script = self.d.training
        if script is None:
            return
        t0 = self.chunks[0].t0_us
        body: dict[str, Any] | None = None
        if "session_start" not in self.said and chunk.t0_us >= t0 + script.start_s * 1e6:
            body = {"type": "session_start", "session_id": self.stats.session_id,
                    "session_type": script.session_type,
                    "prescription_id": script.prescription_id,
                    "course_length_m": script.course_length_m,
                    "t_us": t0 + round(script.start_s * 1e6)}
        elif (script.stop_s is not None and "session_start" in self.said
              and "session_stop" not in self.said
              and chunk.t0_us >= t0 + script.stop_s * 1e6):
            body = {"type": "session_stop", "session_id": self.stats.session_id,
                    "t_us": t0 + round(script.stop_s * 1e6)}
        if body is None:
            return
        if ws.closed or self.lost:
            raise _ConnectionLost("connection closed")
        await ws.send_str(json.dumps(body))
        self.said.add(body["type"])
        log.info("%s: %s sent", self.stats.device_id, body["type"])

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, msg: bytes) -> None:
        if ws.closed or self.lost:
            raise _ConnectionLost("connection closed")
        try:
            await ws.send_bytes(msg)
        except (ConnectionError, aiohttp.ClientError) as e:
            raise _ConnectionLost(str(e)) from e
        self.stats.sent += 1

    async def _pace(self, index: int) -> None:
        if self.d.speed <= 0 or self.wall0 is None:
            return
        due = self.wall0 + self.ready_s[index] / self.d.speed
        delay = due - self.loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _wait(self, predicate: Callable[[], bool]) -> bool:
        """Wait until ``predicate()``; False on ack timeout; _ConnectionLost if closed."""
        deadline = self.loop.time() + self.d.ack_timeout_s
        while not predicate():
            if self.lost:
                raise _ConnectionLost("connection closed")
            self.changed.clear()
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return True

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._answer(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    break
        finally:
            self.lost = True
            self.changed.set()

    def _answer(self, text: str) -> None:
        try:
            body: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError:
            log.warning("%s: gateway sent non-JSON text %r", self.stats.device_id, text[:80])
            return
        kind = body.get("type")
        if kind == "feedback":
            self.stats.feedback.append((time.time_ns() // 1000, body))
            log.info("%s: feedback %s: %s", self.stats.device_id, body.get("kind"),
                     body.get("text"))
            return
        if kind in ("session_started", "session_stopped", "session_error"):
            self.stats.session_answers.append(body)
            log.info("%s: %s", self.stats.device_id, text)
            return
        if kind not in ("ack", "error"):
            return  # unknown types are ignored, as the protocol requires
        seq = body.get("sequence")
        if kind == "ack":
            self.answered_at = self.loop.time()
            if body.get("duplicate"):
                self.stats.duplicates += 1
            if isinstance(seq, int) and seq not in self.answered:
                self.answered.add(seq)
                self.stats.acked += 1
                self.stats.acked_at[seq] = time.time()
        elif body.get("code") in RETRYABLE_CODES and isinstance(seq, int) and seq in self.pending:
            # Not the chunk's fault: keep it, reconnect after a pause and send it again.
            self.stats.retried += 1
            self.stats.retried_at.append((seq, time.time()))
            self.lost = True
            self.changed.set()
            return
        else:
            self.answered_at = self.loop.time()
            self.stats.errors.append(
                ChunkRejection(seq if isinstance(seq, int) else None,
                               str(body.get("code")), str(body.get("reason")))
            )
            if isinstance(seq, int):
                self.answered.add(seq)
            elif self.pending:
                # The gateway could not read the sequence; it answers in order, so the
                # oldest unanswered chunk is the one it refers to.
                seq = next(iter(self.pending))
        if isinstance(seq, int):
            self.pending.pop(seq, None)
        self.progress = True
        self.changed.set()


async def stream_samples(
    gateway_url: str,
    credential: DeviceCredential,
    samples: npt.NDArray[np.float32],
    *,
    start_us: int,
    sample_rate_hz: float,
    chunk_s: float = DEFAULT_CHUNK_S,
    speed: float = 1.0,
    session_id: str | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    http: aiohttp.ClientSession | None = None,
    **options: Any,
) -> DeviceStats:
    """Stream ``samples`` live over the WebSocket (see ``SimulatedDevice`` for options)."""
    device = SimulatedDevice(
        credential, gateway_url, sample_rate_hz=sample_rate_hz, chunk_s=chunk_s, speed=speed,
        session_id=session_id, max_in_flight=max_in_flight, http=http, **options,
    )
    return await device.run(samples, start_us)


def _retry_wait_s(retry_after: str | None, body: dict[str, Any]) -> float:
    """How long to wait before sending an upload again (Retry-After, then the body)."""
    for value in (retry_after, body.get("retry_after_s")):
        try:
            wait = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(wait) and wait >= 0:
            return min(wait, 60.0)
    return 0.5


async def upload_recording(
    gateway_url: str,
    credential: DeviceCredential,
    samples: npt.NDArray[np.float32],
    *,
    start_us: int,
    sample_rate_hz: float,
    chunk_s: float = DEFAULT_CHUNK_S,
    session_id: str | None = None,
    max_body_bytes: int = 8 * 1024 * 1024,
    end_session: bool = True,
    http: aiohttp.ClientSession | None = None,
    give_up_after_s: float = 120.0,
) -> DeviceStats:
    """Store and forward: send a whole session with ``POST /v1/upload``.

    The chunks are framed with ``justwalk.wire.frame_upload``; a session larger than
    ``max_body_bytes`` goes out in several requests, in order. When the answer names a
    ``resend_from`` (a retryable rejection, or frames not read: ``rate_limited``), the
    device waits ``Retry-After`` (0.5 s if none is given) and sends the request again from
    that frame, as a device keeps its stored data until it is stored; it gives up after
    ``give_up_after_s`` in which not one more frame was stored.
    """
    session_id = session_id or f"s{start_us}"
    chunks = make_chunks(credential, samples, start_us=start_us, sample_rate_hz=sample_rate_hz,
                         session_id=session_id, chunk_s=chunk_s, end_session=end_session)
    stats = DeviceStats(credential.device_id, credential.patient_id, session_id,
                        chunks=len(chunks))
    messages = [encode_chunk(c) for c in chunks]
    batches: list[list[bytes]] = [[]]
    size = 0
    for m in messages:
        if batches[-1] and size + 4 + len(m) > max_body_bytes:
            batches.append([])
            size = 0
        batches[-1].append(m)
        size += 4 + len(m)

    async def post_all(session: aiohttp.ClientSession) -> None:
        headers = {**auth_headers(credential.token), "Content-Type": "application/octet-stream"}
        loop = asyncio.get_running_loop()
        first_seq = 0
        for batch in batches:
            start = 0  # resend from here (the gateway's resend_from)
            resent_stored = 0  # of those, frames already stored (answered as duplicates)
            answered_at = loop.time()
            while start < len(batch):
                part = batch[start:]
                async with session.post(upload_url(gateway_url), data=frame_upload(part),
                                        headers=headers) as resp:
                    stats.sent += len(part)
                    text = await resp.text()
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
                if status not in (200, 413, 422, 429):
                    stats.errors.append(ChunkRejection(None, f"http_{status}", text[:200]))
                    return
                body = json.loads(text)
                stats.acked += int(body.get("accepted", 0)) + int(body.get("duplicates", 0))
                dups = int(body.get("duplicates", 0))
                stats.duplicates += dups - min(dups, resent_stored)
                resent_stored = 0
                resend = body.get("resend_from")
                for r in body.get("rejected", []):
                    seq = r.get("sequence")
                    index = r.get("index")
                    if seq is None and isinstance(index, int):
                        seq = first_seq + start + index
                    if (str(r.get("code")) in RETRYABLE_CODES and isinstance(index, int)
                            and isinstance(resend, int) and index >= resend):
                        continue  # sent again below
                    stats.errors.append(ChunkRejection(seq, str(r.get("code")),
                                                       str(r.get("reason"))))
                if not isinstance(resend, int) or body.get("code") in ("too_large",
                                                                       "too_many_errors"):
                    if body.get("code") is not None:
                        stats.errors.append(ChunkRejection(
                            None, str(body["code"]), str(body.get("reason", ""))[:200]))
                    break
                # Retryable: wait as told (or briefly), then send again from resend_from.
                if resend > 0:
                    answered_at = loop.time()
                elif loop.time() - answered_at > give_up_after_s:
                    stats.errors.append(ChunkRejection(
                        None, str(body.get("code", "gave_up")),
                        f"nothing stored for {give_up_after_s:g} s; the device gives up"))
                    return
                # frames from resend_from on that were stored come back as duplicates
                again = [r for r in body.get("rejected", [])
                         if isinstance(r.get("index"), int) and r["index"] >= resend]
                resent_stored = max(0, int(body.get("frames", resend)) - resend - len(again))
                stats.acked -= resent_stored
                stats.retried += 1
                stats.resent += len(part) - resend
                await asyncio.sleep(_retry_wait_s(retry_after, body))
                start += resend
            first_seq += len(batch)
        stats.completed = True

    if http is not None:
        await post_all(http)
    else:
        async with aiohttp.ClientSession() as session:
            await post_all(session)
    return stats
