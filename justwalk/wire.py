"""Wire format of IMU data: one binary message carries one chunk of consecutive samples.

This module is the single definition of the format; the gateway, the simulator, the
stream processors and the tests all import it.

Layout (little-endian, version 2)::

    offset size  field
    0      2     magic            b"JW"
    2      1     version          2
    3      1     placement        Placement code (1 = lower back, ...)
    4      2     flags            ChunkFlags; bit 0 = LAST, the other bits must be 0
    6      2     n_samples        1 .. MAX_SAMPLES
    8      4     sample_rate_hz   float32
    12     4     sequence         uint32, counts the session's chunks: +1 per chunk
    16     8     t0_us            int64, device-clock time of the first sample, microseconds
                                  since the Unix epoch (UTC)
    24     1     len(patient_id)  then len(device_id), len(session_id), len(clinic_id)
    28     ...   the four ids, UTF-8, in that order
    ...    24*n  samples: n rows of float32 (acc_x, acc_y, acc_z, gyr_x, gyr_y, gyr_z)
    end-4  4     crc32c           uint32, CRC-32C (Castagnoli) of every byte before it

The checksum is verified right after the magic and the version, before any other field is
believed: a message whose bytes changed after the device sealed it (a flipped bit, a
truncation, bytes appended) is refused as ``bad_checksum``, which is retryable (the device
still holds the good copy), instead of being misread as a chunk with other numbers in it.
CRC-32C is the checksum of iSCSI, ext4 and Kafka's own record batches; it detects every
error of up to 3 bits in messages of this size, and any burst of up to 32 bits.

Version 1 was the same layout without the trailer. ``decode_chunk`` still reads it, since
Kafka may hold version-1 messages written before the upgrade; the gateway refuses it from
devices (``unsupported_version``) because it cannot tell a corrupted version-1 chunk from a
good one.

Sequence numbers and device time advance together within a session: a chunk starts where
the previous one ended (``ImuChunk.end_us``), and when chunks are missing, the time between
the two chunks around them is what those chunks covered. A device whose recording stopped
starts a new session id. The gateway refuses a chunk that breaks this (``off_timeline``,
see ``ingest.validation``).

Units are SI: acceleration in m/s^2 (specific force, so a sensor at rest reads +9.81 m/s^2
on the axis pointing up) and angular rate in rad/s.

Axis convention (sensor frame for the lower back, the one Mobilise-D uses): x points up
(inferior to superior), y points to the patient's right (medio-lateral), z points forward
(posterior to anterior). The frame is right-handed; angular rates are positive by the
right-hand rule about each axis. Other placements keep the same x/y/z meaning relative to
the body segment when it is upright.

``clinic_id`` in the message is whatever the device sent (usually empty) and is never
trusted: the gateway forwards the device's bytes unchanged to Kafka and carries the clinic of
the device's registry entry, and its receipt time, in Kafka headers (``KAFKA_HEADER_CLINIC``,
``KAFKA_HEADER_RECEIVED_US``); the processor decodes each message once and takes the clinic
from the header (``decode_chunk(data, clinic_id=...)``). Patients appear only as pseudonymous
ids.

Flags: bit 0 (``ChunkFlags.LAST``) marks the last chunk of its session: the device will send
no more data under that session id (the recording stopped, the patient took the sensor
off). The processor analyses the chunk's samples, then closes the session: the open walking
bout and the cadence windows holding data are published and fed to the fall-risk score, and
later chunks of that session are refused with ``session_ended`` (a device that records again
starts a new session id). Resending the last chunk is harmless, as for any chunk. Bits 1-15
are reserved: a message with any of them set is refused (``bad_flags``), so a newer device's
flag is never silently ignored. Messages of devices that predate the flag carry 0.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import google_crc32c
import numpy as np
import numpy.typing as npt

MAGIC = b"JW"
VERSION = 2
"""The version ``encode_chunk`` writes and the gateway takes from devices."""
UNCHECKED_VERSION = 1
"""The version without a checksum: decoded (messages already in Kafka), not encoded."""
DECODABLE_VERSIONS = (UNCHECKED_VERSION, VERSION)
N_CHANNELS = 6
CHANNELS = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
MAX_SAMPLES = 1024
MAX_ID_BYTES = 64
_HEADER = struct.Struct("<2sBBHHfIqBBBB")
HEADER_BYTES = _HEADER.size
_CRC = struct.Struct("<I")
CRC_BYTES = _CRC.size
MAX_MESSAGE_BYTES = HEADER_BYTES + 4 * MAX_ID_BYTES + MAX_SAMPLES * N_CHANNELS * 4 + CRC_BYTES
_SAMPLE_DTYPE = np.dtype("<f4")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
"""Identifiers; always matched with ``fullmatch`` (``match`` with ``$`` lets a trailing
newline through)."""


KAFKA_HEADER_RECEIVED_US = "jw-received-us"
"""Kafka header on chunk messages: the gateway's wall-clock time (us since the epoch, ASCII
digits) when the chunk arrived. Only for latency measurement; no result depends on it."""
KAFKA_HEADER_CLINIC = "jw-clinic"
"""Kafka header on chunk messages: the clinic of the sending device's registry entry (ASCII),
set by the gateway; the only clinic id the processor trusts."""
KAFKA_HEADER_CONTROL = "jw-control"
"""Kafka header marking a message on the chunk topic that is not a chunk but an instruction
of the processor to itself (``stream_processors.control``); the gateway never sets it."""


def chunk_headers(clinic_id: str, received_us: int) -> list[tuple[str, bytes]]:
    """The Kafka headers the gateway puts on a chunk message."""
    return [(KAFKA_HEADER_CLINIC, clinic_id.encode("ascii")),
            (KAFKA_HEADER_RECEIVED_US, str(received_us).encode("ascii"))]


def header_value(
    headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None, name: str,
) -> bytes | None:
    """The value of Kafka header ``name`` (list of pairs or mapping), or None."""
    # a list of pairs (what aiokafka gives) first: ``isinstance(_, Mapping)`` is an ABC check
    items = headers if type(headers) is list else (
        headers.items() if isinstance(headers, Mapping) else headers)
    for key, value in items or ():
        if key == name:
            return value
    return None


def received_us_from_headers(
    headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None,
) -> int | None:
    """The gateway receipt time from a Kafka message's headers (list of pairs or mapping)."""
    try:
        value = header_value(headers, KAFKA_HEADER_RECEIVED_US)
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def clinic_from_headers(
    headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None,
) -> str | None:
    """The clinic id the gateway stamped on a chunk message, or None if absent or invalid."""
    value = header_value(headers, KAFKA_HEADER_CLINIC)
    if value is None:
        return None
    return _clinic(value) if type(value) is bytes else _clinic.__wrapped__(value)


@functools.lru_cache(maxsize=1024)
def _clinic(value: bytes) -> str | None:
    """A clinic header's id, or None if it is not ASCII or not an id.

    Few distinct values: remembered, as ``_ids`` remembers a message's ids.
    """
    try:
        clinic = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    return clinic if ID_PATTERN.fullmatch(clinic) else None


class Placement(enum.IntEnum):
    """Where the sensor is worn."""

    LOWER_BACK = 1
    LEFT_FOOT = 2
    RIGHT_FOOT = 3
    LEFT_WRIST = 4
    RIGHT_WRIST = 5
    WAIST = 6


class ChunkFlags(enum.IntFlag):
    """Bits of the header's ``flags`` field."""

    NONE = 0
    LAST = 1
    """The last chunk of its session."""


KNOWN_FLAGS = ChunkFlags.LAST
_LAST = int(ChunkFlags.LAST)


class ChunkError(ValueError):
    """A chunk that cannot be accepted; ``code`` is machine-readable, the message says why."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ImuChunk:
    """Consecutive samples from one device.

    ``samples`` has shape (n_samples, 6): acc x/y/z in m/s^2, then gyr x/y/z in rad/s.
    """

    patient_id: str
    device_id: str
    session_id: str
    sequence: int
    t0_us: int
    sample_rate_hz: float
    placement: Placement
    samples: npt.NDArray[np.float32]
    clinic_id: str = ""
    flags: ChunkFlags = ChunkFlags.NONE

    @property
    def ends_session(self) -> bool:
        """True for the last chunk of its session (``ChunkFlags.LAST``)."""
        return bool(self.flags._value_ & _LAST)  # IntFlag's ``&`` costs ~10x more

    @property
    def n_samples(self) -> int:
        """Number of samples in the chunk."""
        return int(self.samples.shape[0])

    @property
    def duration_us(self) -> int:
        """Time covered by the chunk: n samples at the sample rate."""
        return round(self.n_samples * 1e6 / self.sample_rate_hz)

    @property
    def end_us(self) -> int:
        """Device time just after the last sample (the next chunk's t0 when none is lost)."""
        return self.t0_us + self.duration_us

    @property
    def acc_mps2(self) -> npt.NDArray[np.float32]:
        """Acceleration, shape (n, 3), m/s^2."""
        return self.samples[:, 0:3]

    @property
    def gyr_radps(self) -> npt.NDArray[np.float32]:
        """Angular rate, shape (n, 3), rad/s."""
        return self.samples[:, 3:6]

    def with_clinic(self, clinic_id: str) -> ImuChunk:
        """Return a copy stamped with ``clinic_id`` (done by the gateway; flags kept)."""
        return dataclasses.replace(self, clinic_id=clinic_id)


_CHUNK_FIELDS = ("patient_id", "device_id", "session_id", "sequence", "t0_us",
                 "sample_rate_hz", "placement", "samples", "clinic_id", "flags")
if tuple(f.name for f in dataclasses.fields(ImuChunk)) != _CHUNK_FIELDS:
    raise RuntimeError("ImuChunk's fields changed: update _CHUNK_FIELDS and _new_chunk")
(_set_patient, _set_device, _set_session, _set_sequence, _set_t0, _set_rate, _set_placement,
 _set_samples, _set_clinic, _set_flags) = (getattr(ImuChunk, f).__set__ for f in _CHUNK_FIELDS)
_object_new = object.__new__


def _new_chunk(patient_id: str, device_id: str, session_id: str, sequence: int, t0_us: int,
               sample_rate_hz: float, placement: Placement, samples: npt.NDArray[np.float32],
               clinic_id: str, flags: ChunkFlags) -> ImuChunk:
    """``ImuChunk(...)`` for ``decode_chunk``: the same object, built through the slots.

    The frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``;
    the slots' own setters cost half as much, and decoding is on every chunk's path.
    """
    c = _object_new(ImuChunk)
    _set_patient(c, patient_id)
    _set_device(c, device_id)
    _set_session(c, session_id)
    _set_sequence(c, sequence)
    _set_t0(c, t0_us)
    _set_rate(c, sample_rate_hz)
    _set_placement(c, placement)
    _set_samples(c, samples)
    _set_clinic(c, clinic_id)
    _set_flags(c, flags)
    return c


def _check_id(name: str, value: str, *, allow_empty: bool = False) -> bytes:
    if allow_empty and value == "":
        return b""
    if not ID_PATTERN.fullmatch(value):
        raise ChunkError(
            "bad_id",
            f"{name} {value!r} must be 1-64 characters of letters, digits, '_', '.', ':' or '-'",
        )
    return value.encode("ascii")


def _check_flags(flags: int) -> ChunkFlags:
    unknown = int(flags) & ~int(KNOWN_FLAGS)
    if unknown:
        raise ChunkError(
            "bad_flags",
            f"flags 0x{int(flags):04x} set reserved bits 0x{unknown:04x}; wire version "
            f"{VERSION} defines only bit 0 (last chunk of the session)",
        )
    return ChunkFlags(flags)


def encode_chunk(chunk: ImuChunk) -> bytes:
    """Serialise a chunk (wire version 2, sealed with its CRC-32C).

    Raises ChunkError if it cannot be represented.
    """
    samples = np.ascontiguousarray(chunk.samples, dtype=_SAMPLE_DTYPE)
    if samples.ndim != 2 or samples.shape[1] != N_CHANNELS:
        raise ChunkError("bad_shape", f"samples must have shape (n, 6), got {samples.shape}")
    n = samples.shape[0]
    if not 1 <= n <= MAX_SAMPLES:
        raise ChunkError("bad_sample_count", f"{n} samples; allowed 1..{MAX_SAMPLES}")
    ids = [
        _check_id("patient_id", chunk.patient_id),
        _check_id("device_id", chunk.device_id),
        _check_id("session_id", chunk.session_id),
        _check_id("clinic_id", chunk.clinic_id, allow_empty=True),
    ]
    if not 0 <= chunk.sequence <= 0xFFFF_FFFF:
        raise ChunkError("bad_sequence", f"sequence {chunk.sequence} is not a uint32")
    if not -(2**63) <= chunk.t0_us < 2**63:
        raise ChunkError("bad_timestamp", f"t0_us {chunk.t0_us} is not an int64")
    header = _HEADER.pack(
        MAGIC,
        VERSION,
        int(chunk.placement),
        int(_check_flags(chunk.flags)),
        n,
        chunk.sample_rate_hz,
        chunk.sequence,
        chunk.t0_us,
        *(len(i) for i in ids),
    )
    return seal(b"".join([header, *ids, samples.tobytes()]))


def seal(body: bytes) -> bytes:
    """``body`` followed by its CRC-32C trailer (what ``encode_chunk`` does last)."""
    return body + _CRC.pack(google_crc32c.value(body))


_unpack_crc = _CRC.unpack_from
_crc32c = google_crc32c.value
_ndarray = np.ndarray


def decode_chunk(
    data: bytes, *, clinic_id: str | None = None,
    versions: tuple[int, ...] = DECODABLE_VERSIONS,
) -> ImuChunk:
    """Parse one message. Raises ChunkError naming the first problem found.

    Only the structure is checked here (magic, version, checksum, lengths, ids, finite
    numbers); physical plausibility and ordering are the gateway's job
    (``ingest.validation``). ``clinic_id``, when given, replaces the message's own (the
    processor passes the one of the gateway's Kafka header). ``versions`` are the wire
    versions taken (the gateway takes only ``VERSION`` from devices).

    Every chunk of a session carries the same ids, so their checked form is remembered
    (``_ids``, keyed by the id bytes and their lengths): a chunk whose ids were accepted
    before skips the four UTF-8 decodes and pattern matches. Ids that fail are not
    remembered and fail the same way every time.
    """
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    if size < HEADER_BYTES:
        raise ChunkError(
            "truncated", f"message has {size} bytes, the header alone needs {HEADER_BYTES}"
        )
    if size > MAX_MESSAGE_BYTES:
        raise ChunkError(
            "too_large", f"message has {size} bytes; the limit is {MAX_MESSAGE_BYTES}"
        )
    (magic, version, placement, flags, n, fs, seq, t0_us, lp, ld, ls, lc) = _HEADER.unpack_from(
        data
    )
    if magic != MAGIC:
        raise ChunkError("bad_magic", f"message starts with {magic!r}, expected {MAGIC!r}")
    if version not in versions:
        raise ChunkError("unsupported_version", _unsupported(version, versions))
    id_end = HEADER_BYTES + lp + ld + ls + lc
    trailer = 0
    if version == VERSION:
        if _unpack_crc(data, size - CRC_BYTES)[0] != _crc32c(data[:-CRC_BYTES]):
            _verify_checksum(data, n, id_end - HEADER_BYTES)  # raises, saying why
        trailer = CRC_BYTES
    placement_enum = _PLACEMENTS.get(placement)
    if placement_enum is None:
        raise ChunkError("bad_placement", f"unknown placement code {placement}")
    chunk_flags = _FLAGS.get(flags)
    if chunk_flags is None:
        chunk_flags = _check_flags(flags)
    if not 1 <= n <= MAX_SAMPLES:
        raise ChunkError("bad_sample_count", f"header says {n} samples; allowed 1..{MAX_SAMPLES}")
    expected = id_end + n * N_CHANNELS * 4 + trailer
    if size != expected:
        kind = "truncated" if size < expected else "sample_count_mismatch"
        raise ChunkError(
            kind,
            f"header says {n} samples ({expected} bytes in all) but the message has "
            f"{size} bytes",
        )
    # the four id lengths (the header's last bytes) and the ids
    patient_id, device_id, session_id, clinic = _ids(data[HEADER_BYTES - 4 : id_end])
    if not math.isfinite(fs) or fs <= 0:
        raise ChunkError("bad_sample_rate", f"sample rate {fs} Hz is not a positive number")
    samples = _ndarray((n, N_CHANNELS), _SAMPLE_DTYPE, data, id_end)  # read-only view
    # A float32 is inf or NaN when its 8 exponent bits are all 1 (IEEE 754), so the last
    # byte of its little-endian form (sign and top 7 exponent bits) is 0x7f or 0xff. Values
    # whose last byte is neither are finite; only those whose last byte is (non-finite, or
    # finite beyond 1.7e38) are looked at one by one.
    high = data[id_end + 3 : id_end + n * N_CHANNELS * 4 : 4]
    if 0x7F in high or 0xFF in high:
        bad = np.argwhere(~np.isfinite(samples))
        if bad.size:
            i, j = bad[0]
            raise ChunkError(
                "non_finite", f"sample {i} channel {CHANNELS[j]} is {samples[i, j]}")
    # seq and t0_us are unpacked as int, fs as float
    return _new_chunk(patient_id, device_id, session_id, seq, t0_us, fs, placement_enum,
                      samples, clinic if clinic_id is None else clinic_id, chunk_flags)


@functools.lru_cache(maxsize=8192)
def _ids(key: bytes) -> tuple[str, str, str, str]:
    """The ids of a message from its four id lengths and id bytes, checked.

    Remembered for the 8,192 most recent id sets (one per streaming session; ~0.6 KB
    each); a ``ChunkError`` is not remembered.
    """
    try:
        raw_ids = []
        offset = 4
        for length in key[:4]:
            raw_ids.append(key[offset : offset + length].decode("ascii"))
            offset += length
    except UnicodeDecodeError:
        raise ChunkError("bad_id", "ids must be ASCII") from None
    patient_id, device_id, session_id, clinic = raw_ids
    for name, value in (("patient_id", patient_id), ("device_id", device_id),
                        ("session_id", session_id)):
        _check_id(name, value)
    _check_id("clinic_id", clinic, allow_empty=True)
    return patient_id, device_id, session_id, clinic


_PLACEMENTS = {int(p): p for p in Placement}
_FLAGS = {int(f): f for f in (ChunkFlags.NONE, ChunkFlags.LAST)}
"""Decoded header fields by code (an enum call per chunk costs more than the lookup)."""


def _unsupported(version: int, versions: tuple[int, ...]) -> str:
    taken = ", ".join(str(v) for v in versions)
    if version == UNCHECKED_VERSION:
        return (f"wire version {version} has no checksum and is no longer accepted; "
                f"send version {VERSION} (the same layout sealed with a CRC-32C trailer; "
                f"supported: {taken})")
    return f"wire version {version}; supported: {taken}"


def _verify_checksum(data: bytes, n_samples: int, id_bytes: int) -> None:
    (stated,) = _CRC.unpack_from(data, len(data) - CRC_BYTES)
    actual = google_crc32c.value(data[:-CRC_BYTES])
    if stated == actual:
        return
    expected = HEADER_BYTES + id_bytes + n_samples * N_CHANNELS * 4 + CRC_BYTES
    hint = ("" if expected == len(data) else
            f"; its header says {n_samples} samples ({expected} bytes in all) but the "
            f"message has {len(data)} bytes")
    raise ChunkError(
        "bad_checksum",
        f"CRC-32C of the message is 0x{actual:08x} but its trailer says 0x{stated:08x}: the "
        f"bytes changed after the device sealed them{hint}. Send the chunk again",
    )


def peek_sequence_and_session(data: bytes) -> tuple[int | None, str | None]:
    """Best-effort sequence number and session id of a message that may not decode.

    Lets the gateway name the chunk in its error answer when the rest is broken.
    """
    if len(data) < HEADER_BYTES or data[:2] != MAGIC:
        return None, None
    fields = _HEADER.unpack_from(data)
    sequence = int(fields[6])
    lp, ld, ls = fields[8:11]
    start = HEADER_BYTES + lp + ld
    raw = data[start : start + ls]
    session_id = raw.decode("ascii", errors="replace") if len(raw) == ls else ""
    return sequence, session_id if ID_PATTERN.fullmatch(session_id) else None


UPLOAD_PREFIX = struct.Struct("<I")
"""The uint32 length before each message of an upload body."""


def frame_upload(messages: list[bytes]) -> bytes:
    """Concatenate encoded chunks for one HTTP upload: each is preceded by its uint32 length."""
    return b"".join(UPLOAD_PREFIX.pack(len(m)) + m for m in messages)


def split_upload(body: bytes) -> list[bytes]:
    """Split an upload body made by ``frame_upload``. Raises ChunkError on a broken frame."""
    out: list[bytes] = []
    offset = 0
    while offset < len(body):
        if offset + 4 > len(body):
            raise ChunkError("truncated", f"upload ends inside a length prefix at byte {offset}")
        (length,) = struct.unpack_from("<I", body, offset)
        offset += 4
        if length > MAX_MESSAGE_BYTES:
            raise ChunkError(
                "too_large",
                f"upload frame {len(out)} claims {length} bytes; the limit is {MAX_MESSAGE_BYTES}",
            )
        if offset + length > len(body):
            raise ChunkError(
                "truncated",
                f"upload frame {len(out)} claims {length} bytes, only {len(body) - offset} remain",
            )
        out.append(body[offset : offset + length])
        offset += length
    return out
