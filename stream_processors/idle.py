"""Which open sessions have gone quiet: the processor's safety net for devices that die.

A device ends a session with the last-chunk flag (``justwalk.wire.ChunkFlags.LAST``). One
that stops without it (battery, crash, out of range for good) would leave its last walking
bout open forever; the app flushes a session once no chunk of it arrived for
``Settings.session_idle_timeout_s`` of wall-clock time. This is the one decision the wall
clock makes in the processor, and it only decides *when* a segment is closed, never what
it contains: the flush gives the records the same data would give followed by a gap.

``IdleSessions`` is I/O-free with an injected clock. The agent calls ``seen(key)`` for every
chunk it processes; the app's timer asks ``due(keys)`` about the open sessions of the
partitions it owns, and the agent checks ``idle(key)`` again before flushing (a chunk may
have come meanwhile). Only this worker's memory knows when a session was last seen: a
session it has not seen since it took over the partition (a restart, a rebalance) counts
as seen when first asked about, so it is flushed one timeout after the takeover at the
latest, never early.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


class IdleSessions:
    """Wall-clock time each session was last seen, and which ones are overdue."""

    def __init__(self, *, timeout_s: float, clock: Callable[[], int]) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_us = round(timeout_s * 1e6)
        self.clock = clock
        self.last_seen_us: dict[str, int] = {}
        self.requested_us: dict[str, int] = {}

    def seen(self, key: str) -> None:
        """A chunk of session ``key`` was just processed."""
        self.last_seen_us[key] = self.clock()
        self.requested_us.pop(key, None)

    def idle(self, key: str) -> bool:
        """True when session ``key`` was last seen at least the timeout ago."""
        now = self.clock()
        return now - self.last_seen_us.setdefault(key, now) >= self.timeout_us

    def due(self, open_keys: Iterable[str]) -> list[str]:
        """The idle sessions among ``open_keys`` to flush now.

        A session is returned once per timeout at most, so a flush request still under way
        is not repeated at every tick.
        """
        now = self.clock()
        out = []
        for key in open_keys:
            if self.idle(key) and now - self.requested_us.get(key, now - self.timeout_us) \
                    >= self.timeout_us:
                self.requested_us[key] = now
                out.append(key)
        return out

    def forget(self, key: str) -> None:
        """Session ``key`` is closed (ended or flushed)."""
        self.last_seen_us.pop(key, None)
        self.requested_us.pop(key, None)

    def clear(self) -> None:
        """Forget every session (partitions were revoked)."""
        self.last_seen_us.clear()
        self.requested_us.clear()
