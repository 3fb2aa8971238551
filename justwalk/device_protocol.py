"""The device <-> gateway protocol: endpoints, authentication and the gateway's answers.

Streaming (live): ``GET /v1/stream`` upgraded to a WebSocket, with the header
``Authorization: Bearer <device token>``. A missing or unknown token is refused with
HTTP 401 before the upgrade. Each *binary* WebSocket message is one chunk encoded with
``justwalk.wire.encode_chunk``. The gateway answers every chunk with one *text* message,
a JSON object:

- ``{"type": "ack", "sequence": N}`` once the chunk is stored in Kafka (durable);
  ``"duplicate": true`` is added when the chunk had already been received (a resend).
- ``{"type": "error", "sequence": N or null, "code": "...", "reason": "..."}`` when the
  chunk is rejected. The connection stays open and later chunks are processed.

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
from typing import Any

STREAM_PATH = "/v1/stream"
UPLOAD_PATH = "/v1/upload"
HEALTH_PATH = "/healthz"
AUTH_HEADER = "Authorization"
AUTH_SCHEME = "Bearer"


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
