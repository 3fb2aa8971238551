"""Messages the processor appends to its own input topic: flush markers for idle sessions.

A marker is a message on the chunk topic (key = patient id, the partition of the session's
chunks) with the Kafka header ``jw-control: flush`` and a msgpack value
``[session key, offset]``: flush the session if the last message applied to it is still the
one at ``offset``. Deciding from the log instead of the wall clock makes a replay after a
crash decide the same way (``stream_processors.runtime``). The gateway never sets the
header, so a device cannot send one.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from justwalk.wire import KAFKA_HEADER_CONTROL

FLUSH = b"flush"


@dataclass(frozen=True, slots=True)
class FlushMarker:
    """Flush ``session_key`` if its last applied input message is at ``upto_offset``."""

    session_key: str
    upto_offset: int


def encode_flush(session_key: str, upto_offset: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(value, headers) of a flush marker."""
    value = msgpack.packb([session_key, upto_offset], use_bin_type=True)
    return value, [(KAFKA_HEADER_CONTROL, FLUSH)]


def decode_flush(kind: bytes, value: bytes | None) -> FlushMarker:
    """The marker of a control message; ValueError if it is not a well-formed flush."""
    if kind != FLUSH:
        raise ValueError(f"unknown control message {kind!r}")
    try:
        key, offset = msgpack.unpackb(value or b"", raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"malformed flush marker: {exc!r}") from exc
    if not isinstance(key, str) or not isinstance(offset, int):
        raise ValueError("malformed flush marker: expected [session key, offset]")
    return FlushMarker(key, offset)
