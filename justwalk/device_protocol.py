"""The device <-> gateway protocol: endpoints, authentication and the gateway's answers.

Streaming (live): ``GET /v1/stream`` upgraded to a WebSocket, with the header
``Authorization: Bearer <device token>``. A missing or unknown token is refused with
HTTP 401 before the upgrade. Each *binary* WebSocket message is one chunk encoded with
``justwalk.wire.encode_chunk``. The gateway answers every chunk with one *text* message,
a JSON object:

- ``{"type": "ack", "sequence": N}`` once the chunk is stored in Kafka (durable);
  ``"duplicate": true`` is added when the chunk had already been received (a resend).
- ``{"type": "error", "sequence": N or null, "code": "...", "reason": "..."}`` when the
  chunk is rejected. The connection stays open and later chunks are processed. Codes in
  ``RETRYABLE_CODES`` mean the chunk was fine but could not be stored now: the device
  keeps it and sends it again after a pause. Every other code is final for that chunk.

A session is one recording under one ``session_id``. The device sets ``ChunkFlags.LAST``
(``justwalk.wire``) on its last chunk; a chunk after it in the same session is refused with
``session_ended`` (a new recording takes a new session id), and a last chunk below an
already accepted sequence with ``bad_flags``. A session whose device stops without the
flag is closed by the stream processor after ``Settings.session_idle_timeout_s``.

Later versions add ``{"type": "feedback", ...}`` messages for real-time patient feedback;
a device must ignore message types it does not know.

Store and forward (home): ``POST /v1/upload`` with the same header and
``Content-Type: application/octet-stream``; the body is ``justwalk.wire.frame_upload`` of
the session's chunks. The answer is JSON
``{"accepted": n, "duplicates": n, "rejected": [{"index": i, "sequence": N or null,
"code": "...", "reason": "..."}]}`` with status 200 when nothing was rejected and 422
otherwise (the accepted chunks are stored either way). 401 for a bad token, 413 for a
body over the size limit.

``GET /healthz`` answers 200 when the gateway can reach Kafka.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STREAM_PATH = "/v1/stream"
UPLOAD_PATH = "/v1/upload"
HEALTH_PATH = "/healthz"
AUTH_HEADER = "Authorization"
AUTH_SCHEME = "Bearer"


RETRYABLE_CODES = frozenset({"unavailable", "internal_error"})


def auth_headers(token: str) -> dict[str, str]:
    """Headers a device sends to authenticate."""
    return {AUTH_HEADER: f"{AUTH_SCHEME} {token}"}


def ack_message(sequence: int, *, duplicate: bool = False) -> str:
    """The gateway's answer to an accepted chunk."""
    body: dict[str, Any] = {"type": "ack", "sequence": sequence}
    if duplicate:
        body["duplicate"] = True
    return json.dumps(body)


def error_message(sequence: int | None, code: str, reason: str) -> str:
    """The gateway's answer to a rejected chunk."""
    return json.dumps({"type": "error", "sequence": sequence, "code": code, "reason": reason})


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
    """Read a credentials file."""
    data = json.loads(Path(path).read_text())
    return [DeviceCredential(**d) for d in data["devices"]]


def save_credentials(path: Path, credentials: list[DeviceCredential]) -> None:
    """Write a credentials file readable only by its owner."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"devices": [asdict(c) for c in credentials]}, indent=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
