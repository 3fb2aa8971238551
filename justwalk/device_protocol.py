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

Later versions add ``{"type": "feedback", ...}`` messages for real-time patient feedback;
a device must ignore message types it does not know.

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
