"""The device <-> gateway protocol: endpoints, authentication and the gateway's answers.

Streaming (live): ``GET /v1/stream`` upgraded to a WebSocket, with the header
``Authorization: Bearer <device token>``. A missing or unknown token is refused with
HTTP 401 before the upgrade. Each *binary* WebSocket message is one chunk encoded with
``justwalk.wire.encode_chunk`` (wire version 2, sealed with a CRC-32C; version 1 is
refused as ``unsupported_version``). The gateway answers every chunk with one *text*
message, a JSON object:

- ``{"type": "ack", "sequence": N}`` once the chunk is stored in Kafka (durable);
  ``"duplicate": true`` is added when the chunk had already been received (a resend).
- ``{"type": "error", "sequence": N or null, "code": "...", "reason": "..."}`` when the
  chunk is rejected. The connection stays open and later chunks are processed. Codes in
  ``RETRYABLE_CODES`` mean the chunk may be fine but was not stored now: the device keeps
  it and sends it again after a pause (``"retry_after_s"`` when the gateway knows how
  long): ``unavailable`` and ``internal_error`` (the gateway's side), ``bad_checksum``
  (the bytes changed on the way) and ``rate_limited`` (the device sent more than its
  share; nothing of the message was read). Every other code is final for that chunk.
- A message over ``MAX_MESSAGE_BYTES`` is answered ``too_large``; one over the gateway's
  read limit (1 MiB) is answered the same way and the connection is then closed (1009).

Within a session, sequence numbers and device time advance together (see
``justwalk.wire``). A chunk whose sequence number and timestamp disagree with the chunks
already stored is refused as ``off_timeline`` and changes nothing: the chunks after it are
judged against the stored ones, so one bad header never costs more than its own chunk.

A session is one recording under one ``session_id``. The device sets ``ChunkFlags.LAST``
(``justwalk.wire``) on its last chunk; a chunk after it in the same session is refused with
``session_ended`` (a new recording takes a new session id), and a last chunk below an
already accepted sequence with ``bad_flags``. A session whose device stops without the
flag is closed by the stream processor after ``Settings.session_idle_timeout_s``.

A device must ignore message types it does not know.

Training sessions (issue #16). Over the same WebSocket the device starts and stops a
training session with *text* messages (JSON); a session is bound to one recording
``session_id`` (the chunks' ``justwalk.wire`` session id, one training session per
recording)::

    {"type": "session_start", "session_id": "...", "session_type": "6mwt",
     "prescription_id": 12 or null, "course_length_m": 30.0 or null, "t_us": N}
    {"type": "session_stop", "session_id": "...", "t_us": N}

``session_type`` is one of ``free_walk``, ``guided_walk``, ``t25fw``, ``2mwt``, ``6mwt``;
``t_us`` is the device time (the chunks' clock) at which the session starts or stops (for
a T25FW with a measured ``course_length_m``, the start and finish gates; a 2MWT/6MWT on
a measured course counts its laps by the turns at its ends). A prescribed
session names its ``prescription_id`` (the prescription's type must be the session's);
without one the session runs with no cadence band. The gateway checks a start against the
database (the device's patient, clinic and the prescription) and answers
``{"type": "session_started", "session_id": "...", "db_session_id": N, "plan": {...}}``,
a stop with ``{"type": "session_stopped", "session_id": "..."}``; a refusal is
``{"type": "session_error", "session_id": "..." or null, "code": "...", "reason": "..."}``
(never an ``error``, which answers chunks) with the code ``bad_request`` (malformed),
``unknown_prescription`` (none such for this patient, or another clinic's),
``prescription_mismatch`` (inactive, or of another type), ``session_exists`` (the recording
already has a training session), ``unknown_session`` (a stop without a start on this
connection's patient), ``training_unavailable`` (no database) or ``unavailable`` (Kafka;
retry). A refused start or stop changes nothing; chunks are stored as always. A test
stopped before its time (a ``session_stop``, or the recording's last chunk) is scored as
``stopped_early``; one whose device goes quiet without a stop is closed at its last data
as ``disconnected`` (the processor's idle timeout); what arrived is kept either way.

Feedback. During a training session the gateway pushes real-time feedback, only to the
device of that session's patient, as text messages::

    {"type": "feedback", "kind": "...", "session_id": "...", "t_us": N, "text": "...", ...}

``kind`` is ``cadence_cue`` (``direction`` faster/slower, ``cadence_spm``, ``band_spm``,
``metronome_spm``: the tempo to play), ``fatigue`` (``minute``, ``speed_change_pct``,
``cadence_change_pct``: suggest a rest), ``safety`` (``event``: near_fall or fall),
``progress`` (``elapsed_s``, ``distance_m``, ``steps``) or ``test_end`` (``reason``:
duration or distance: the test is over). ``t_us`` is the device time the decision refers
to; ``text`` a plain-language message the device may show or speak. Built by
``feedback_message``; the rules are ``justwalk.training.feedback``.

Store and forward (home): ``POST /v1/upload`` with the same header and
``Content-Type: application/octet-stream``; the body is ``justwalk.wire.frame_upload`` of
the session's chunks. Frames are read and answered in order as they arrive. The answer
is a bounded summary, JSON::

    {"accepted": n, "duplicates": n, "frames": n (frames read),
     "rejected": [{"index": i, "sequence": N or null, "code": "...", "reason": "..."}],
     "rejected_count": n, "errors_by_code": {"code": n, ...},
     "resend_from": i or null}

``rejected`` lists the first 20 rejections; ``rejected_count`` and ``errors_by_code``
count them all. ``resend_from`` is the first frame the device must send again: the first
one rejected with a retryable code, or the first one not read. Status 200 when nothing was
rejected, 422 otherwise (the accepted chunks are stored either way). When the gateway
stopped reading, the answer adds the reason as ``"code"`` and ``"reason"``: 429
``rate_limited`` (the device's share of frames or bytes is used up; header
``Retry-After`` and ``"retry_after_s"``; also when two uploads of the device are being
processed), 413 ``too_large`` (the body goes over the size limit) or 422
``too_many_errors`` (1000 frames were rejected; the rest was not read). An upload refused
before anything was read is answered after a pause of up to a second. 401 for a bad
token.

``GET /healthz`` answers 200 when the gateway can reach Kafka.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from justwalk.wire import ID_PATTERN

STREAM_PATH = "/v1/stream"
UPLOAD_PATH = "/v1/upload"
HEALTH_PATH = "/healthz"
AUTH_HEADER = "Authorization"
AUTH_SCHEME = "Bearer"


RETRYABLE_CODES = frozenset({"unavailable", "internal_error", "bad_checksum", "rate_limited"})


SESSION_TYPES = ("free_walk", "guided_walk", "t25fw", "2mwt", "6mwt")
FEEDBACK_KINDS = ("cadence_cue", "fatigue", "safety", "progress", "test_end")
MAX_COURSE_LENGTH_M = 1000.0


class ProtocolError(ValueError):
    """A text message the gateway cannot accept; ``code`` names the fault."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SessionStart:
    """A device's ``session_start`` message."""

    session_id: str
    session_type: str
    t_us: int
    prescription_id: int | None = None
    course_length_m: float | None = None


@dataclass(frozen=True, slots=True)
class SessionStop:
    """A device's ``session_stop`` message."""

    session_id: str
    t_us: int


MAX_SESSION_MESSAGE_CHARS = 4096


def is_session_message(text: str) -> bool:
    """True for a JSON object whose type is ``session_start`` or ``session_stop``.

    Any other text message is answered as before (``expected_binary``).
    """
    if len(text) > MAX_SESSION_MESSAGE_CHARS or not text.lstrip().startswith("{"):
        return False
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("type") in ("session_start", "session_stop")


def parse_device_text(text: str) -> SessionStart | SessionStop:
    """A device's text message; ``ProtocolError`` (``bad_request``) naming what is wrong."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise ProtocolError("bad_request", f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_request", "expected a JSON object")
    kind = body.get("type")
    if kind not in ("session_start", "session_stop"):
        raise ProtocolError("bad_request", f"unknown message type {kind!r}; a device sends "
                            "chunks as binary messages and session_start / session_stop as text")
    known = {"type", "session_id", "t_us"} | (
        {"session_type", "prescription_id", "course_length_m"} if kind == "session_start"
        else set())
    extra = sorted(set(body) - known)
    if extra:
        raise ProtocolError("bad_request", f"{kind}: unknown fields {extra}")
    session_id = body.get("session_id")
    if not isinstance(session_id, str) or not ID_PATTERN.fullmatch(session_id):
        raise ProtocolError("bad_request", f"{kind}: session_id {session_id!r} is not an id")
    t_us = body.get("t_us")
    if not isinstance(t_us, int) or isinstance(t_us, bool) or t_us < 0:
        raise ProtocolError("bad_request", f"{kind}: t_us must be a device time in us (an "
                            "integer >= 0)")
    if kind == "session_stop":
        return SessionStop(session_id, t_us)
    session_type = body.get("session_type")
    if session_type not in SESSION_TYPES:
        raise ProtocolError("bad_request", f"session_start: session_type {session_type!r} "
                            f"is not one of {list(SESSION_TYPES)}")
    rx = body.get("prescription_id")
    if rx is not None and (not isinstance(rx, int) or isinstance(rx, bool) or rx < 1):
        raise ProtocolError("bad_request", "session_start: prescription_id must be a "
                            "positive integer or null")
    course = body.get("course_length_m")
    if course is not None and (isinstance(course, bool) or not isinstance(course, int | float)
                               or not 0 < course <= MAX_COURSE_LENGTH_M):
        raise ProtocolError("bad_request", "session_start: course_length_m must be a length "
                            f"in metres (0 < x <= {MAX_COURSE_LENGTH_M:g}) or null")
    return SessionStart(session_id, session_type, t_us, rx,
                        None if course is None else float(course))


def session_started_message(session_id: str, db_session_id: int,
                            plan: dict[str, Any]) -> str:
    """The gateway's answer to an accepted ``session_start``."""
    return json.dumps({"type": "session_started", "session_id": session_id,
                       "db_session_id": db_session_id, "plan": plan})


def session_error_message(session_id: str | None, code: str, reason: str) -> str:
    """The gateway's refusal of a ``session_start`` or ``session_stop``."""
    return json.dumps({"type": "session_error", "session_id": session_id, "code": code,
                       "reason": reason})


def session_stopped_message(session_id: str) -> str:
    """The gateway's answer to an accepted ``session_stop``."""
    return json.dumps({"type": "session_stopped", "session_id": session_id})


def feedback_message(kind: str, session_id: str, t_us: int, text: str,
                     values: dict[str, Any]) -> str:
    """A feedback message for the device (the one format, see the module docstring)."""
    if kind not in FEEDBACK_KINDS:
        raise ValueError(f"unknown feedback kind {kind!r}")
    return json.dumps({"type": "feedback", "kind": kind, "session_id": session_id,
                       "t_us": t_us, "text": text, **values})


def auth_headers(token: str) -> dict[str, str]:
    """Headers a device sends to authenticate."""
    return {AUTH_HEADER: f"{AUTH_SCHEME} {token}"}


def ack_message(sequence: int, *, duplicate: bool = False) -> str:
    """The gateway's answer to an accepted chunk."""
    body: dict[str, Any] = {"type": "ack", "sequence": sequence}
    if duplicate:
        body["duplicate"] = True
    return json.dumps(body)


def error_message(sequence: int | None, code: str, reason: str, *,
                  retry_after_s: float | None = None) -> str:
    """The gateway's answer to a rejected chunk."""
    body: dict[str, Any] = {"type": "error", "sequence": sequence, "code": code,
                            "reason": reason}
    if retry_after_s is not None:
        body["retry_after_s"] = retry_after_s
    return json.dumps(body)


# --- Device credentials: what a device (or the simulator) holds --------------------------
#
# JSON file: {"devices": [{"device_id": "...", "patient_id": "...", "clinic_id": "...",
#                          "token": "..."}]}
# The gateway's registry (ingest.registry) stores only a SHA-256 of each token; this file
# holds the plain tokens and is written with mode 0600.


@dataclass(frozen=True, slots=True)
class DeviceCredential:
    """The identity and secret token of one device."""

    device_id: str
    patient_id: str
    clinic_id: str
    token: str


def load_credentials(path: Path) -> list[DeviceCredential]:
    """Read a credentials file; raises ValueError naming an id the wire format cannot carry."""
    data = json.loads(Path(path).read_text())
    credentials = [DeviceCredential(**d) for d in data["devices"]]
    for c in credentials:
        for name in ("device_id", "patient_id", "clinic_id"):
            value = getattr(c, name)
            if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
                raise ValueError(f"{path}: {name} {value!r} is not an id (1-64 characters of "
                                 "letters, digits, '_', '.', ':' or '-')")
    return credentials


def save_credentials(path: Path, credentials: list[DeviceCredential]) -> None:
    """Write a credentials file readable only by its owner."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"devices": [asdict(c) for c in credentials]}, indent=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
