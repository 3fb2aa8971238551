"""Per-device limits of the gateway: token buckets and a limiter for the logs.

The buckets bound the work a device may ask for; the limiter keeps one device's faults
from filling the logs.

Each device has one bucket of frames (chunk messages, streamed or uploaded) and one of
bytes; every message takes one frame and its size from them, and they refill at a steady
rate up to their burst. A device that finds them empty is told to come back later
(HTTP 429 with ``Retry-After``, or a ``rate_limited`` answer on the WebSocket) before the
gateway reads or decodes anything more of what it sent. The figures are per device, so one
device flooding the gateway leaves every other device's budget untouched.

I/O-free; the clock is injected (``time.monotonic`` in the gateway).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DeviceLimits:
    """What one device may send, and how much of its trouble is written down."""

    frames_per_s: float = 1_000.0
    """Sustained chunk messages per second (a live device sends 1-4)."""
    frame_burst: int = 32_768
    """Messages at once: an upload of 4.5 hours of 0.5 s chunks."""
    bytes_per_s: float = 8 * MIB
    byte_burst: int = 64 * MIB
    """Bytes at once: an upload of the largest size the gateway takes."""
    uploads_at_once: int = 2
    """Uploads of one device being processed at the same time."""
    refusal_delay_s: float = 1.0
    """An upload refused for the device's share is answered after this pause (at most its
    ``Retry-After``), so a device that does not wait cannot make the gateway read and
    refuse bodies back to back."""
    max_upload_errors: int = 1_000
    """Rejected frames after which the rest of an upload is not read (answered, resumable)."""
    listed_rejections: int = 20
    """Rejected frames listed one by one in an upload's answer; the rest are counted."""
    report_burst: int = 20
    report_per_s: float = 0.2
    """Rejections of one device logged (and published to the rejects topic) at once, and
    after that per second; the others are counted and summarised in the next line."""
    yield_every: int = 32
    """Messages handled before a connection or an upload lets the others run."""
    upload_share: float = 0.25
    """Of the gateway's time, what all uploads together may take: store and forward can
    wait, live chunks cannot. An upload pauses after each ``yield_every`` frames for as
    long as decoding, validating and queueing them took, times
    ``uploads / upload_share - 1``."""


@dataclass(slots=True)
class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; starts full."""

    capacity: float
    rate: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last call."""
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_s(self, amount: float) -> float:
        """Seconds until ``amount`` tokens are there (after ``refill``)."""
        missing = min(amount, self.capacity) - self.tokens
        return max(0.0, missing / self.rate) if self.rate > 0 else math.inf


@dataclass(slots=True)
class _Device:
    frames: TokenBucket
    bytes: TokenBucket
    uploads: int = 0


class DeviceBudgets:
    """The frame and byte buckets of every device seen recently (a bounded LRU)."""

    def __init__(self, limits: DeviceLimits, clock: Callable[[], float], *,
                 max_devices: int = 100_000) -> None:
        self.limits = limits
        self.clock = clock
        self.max_devices = max_devices
        self._devices: OrderedDict[str, _Device] = OrderedDict()
        self.uploads = 0
        """Uploads being processed, of all devices."""

    def _device(self, device_id: str) -> _Device:
        now = self.clock()
        d = self._devices.get(device_id)
        if d is None:
            lim = self.limits
            d = self._devices[device_id] = _Device(
                TokenBucket(lim.frame_burst, lim.frames_per_s, lim.frame_burst, now),
                TokenBucket(lim.byte_burst, lim.bytes_per_s, lim.byte_burst, now))
            if len(self._devices) > self.max_devices:
                self._devices.popitem(last=False)
        else:
            self._devices.move_to_end(device_id)
            d.frames.refill(now)
            d.bytes.refill(now)
        return d

    def take(self, device_id: str, n_bytes: int) -> float:
        """Take one message of ``n_bytes``: 0.0 if granted, else seconds to wait (> 0)."""
        d = self._device(device_id)
        if d.frames.tokens >= 1 and d.bytes.tokens >= min(n_bytes, d.bytes.capacity):
            d.frames.tokens -= 1
            d.bytes.tokens -= n_bytes
            return 0.0
        return max(d.frames.wait_s(1), d.bytes.wait_s(n_bytes), 1e-3)

    def retry_after_s(self, device_id: str) -> float:
        """Seconds until a quarter of the device's bursts is back (0 if it is)."""
        d = self._device(device_id)
        return max(d.frames.wait_s(d.frames.capacity / 4), d.bytes.wait_s(d.bytes.capacity / 4))

    def may_start_upload(self, device_id: str) -> bool:
        """True if the device has a quarter of its burst of frames and bytes to spend.

        A device that ran out waits that long before its next upload is read at all, so a
        flood of requests is refused before anything is read or logged.
        """
        d = self._device(device_id)
        return (d.frames.tokens >= d.frames.capacity / 4
                and d.bytes.tokens >= d.bytes.capacity / 4)

    def start_upload(self, device_id: str) -> bool:
        """Count an upload in; False if the device has ``uploads_at_once`` running."""
        d = self._device(device_id)
        if d.uploads >= self.limits.uploads_at_once:
            return False
        d.uploads += 1
        self.uploads += 1
        return True

    def end_upload(self, device_id: str) -> None:
        """Count an upload out."""
        d = self._devices.get(device_id)
        if d is not None and d.uploads > 0:
            d.uploads -= 1
        self.uploads = max(0, self.uploads - 1)

    def upload_pause_s(self, busy_s: float) -> float:
        """How long an upload that just worked ``busy_s`` pauses (see ``upload_share``)."""
        return busy_s * (max(1, self.uploads) / self.limits.upload_share - 1)


@dataclass(slots=True)
class _Reports:
    bucket: TokenBucket
    suppressed: Counter[str] = field(default_factory=Counter)


class ReportLimiter:
    """Decides which of a source's events are written down; counts the others.

    ``allow(source, code)`` returns ``(allowed, summary)``: when allowed, ``summary`` counts
    the events of that source held back since its last allowed one (empty if none), for the
    caller to log with it.
    """

    def __init__(self, burst: int, per_s: float, clock: Callable[[], float], *,
                 max_sources: int = 100_000) -> None:
        self.burst = burst
        self.per_s = per_s
        self.clock = clock
        self.max_sources = max_sources
        self.suppressed_total = 0
        self._sources: OrderedDict[str, _Reports] = OrderedDict()

    def allow(self, source: str, code: str) -> tuple[bool, dict[str, int]]:
        """Whether to write this event down, and what was held back before it."""
        now = self.clock()
        r = self._sources.get(source)
        if r is None:
            r = self._sources[source] = _Reports(TokenBucket(self.burst, self.per_s,
                                                             self.burst, now))
            if len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(source)
            r.bucket.refill(now)
        if r.bucket.tokens < 1:
            r.suppressed[code] += 1
            self.suppressed_total += 1
            return False, {}
        r.bucket.tokens -= 1
        return True, self.held_back(source)

    def held_back(self, source: str) -> dict[str, int]:
        """The counts of the source's events held back so far (then forgotten)."""
        r = self._sources.get(source)
        if r is None or not r.suppressed:
            return {}
        summary = dict(r.suppressed)
        r.suppressed.clear()
        return summary
