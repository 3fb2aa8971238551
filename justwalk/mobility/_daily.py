"""Streaming daily DMOs: a pure reducer over walking bouts, with a small serialisable state.

Quix Streams style (``initialize() -> state``, ``agg(state, bout) -> state``,
``result(state, day)``); the stream processor owns persistence. Event time only: a bout
belongs to the clinic day (local date in the clinic's IANA time zone) on which it
started, and ``close(state, t_us)`` makes final every day whose local midnight lies at or
before the watermark ``t_us`` (device time). Per bout the day's DMOs are recomputed
(``result``: ``final`` False); at the day's end they are final.

State: per open day the day's bouts as a small float table (``QUANTITIES`` after the
plausibility check; Mobilise-D's medians and percentiles need the values, and a day has at
most a few hundred bouts), plus the bout start times (a bout seen twice counts once, so a
replay is harmless). A closed day stays ``retain_days`` days so that a late upload into
it can still update its (final) DMOs; a bout older than that is dropped and counted.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from justwalk.mobility._definitions import DMOS, QUANTITIES, WalkingBout, compute_dmos
from justwalk.mobility._errors import ErrorTable
from justwalk.mobility._limits import PlausibilityLimits
from justwalk.state_format import StateFormatError, array_bytes, array_from, check_version

__all__ = ["DailyDmos", "DailyMobility", "DmoDay", "DmoState"]

STATE_VERSION = 1
_NQ = len(QUANTITIES)
_EPOCH = dt.date(1970, 1, 1)


@dataclass(slots=True)
class DmoDay:
    """One clinic day's bouts (``day``: days since 1970-01-01 in clinic time)."""

    day: int
    starts_us: list[int] = field(default_factory=list)
    rows: list[list[float]] = field(default_factory=list)
    """Per bout, ``QUANTITIES`` with implausible values as NaN."""
    n_implausible: int = 0
    """Bouts with at least one value left out as implausible."""
    closed: bool = False

    def pack(self) -> list[Any]:
        """Msgpack-ready form (the table as float64 bytes)."""
        return [self.day, self.starts_us, array_bytes(np.asarray(self.rows, np.float64), "<f8"),
                self.n_implausible, self.closed]

    @classmethod
    def unpack(cls, obj: list[Any]) -> DmoDay:
        """Inverse of ``pack``."""
        day, starts, table, n_bad, closed = obj
        rows = array_from(table, "<f8", (len(starts), _NQ), "dmo day")
        return cls(int(day), [int(s) for s in starts], rows.tolist(), int(n_bad), bool(closed))


@dataclass(slots=True)
class DmoState:
    """A patient's daily-DMO state: the open and recently closed days."""

    days: list[DmoDay] = field(default_factory=list)
    watermark_us: int | None = None
    """Latest event time ``close`` was given."""
    n_late_ignored: int = 0
    watermark_day_end_us: int = 0
    """End of the clinic day holding the watermark: ``close`` before it has nothing to do."""

    def pack(self) -> list[Any]:
        """Msgpack-ready, versioned form."""
        return [STATE_VERSION, [d.pack() for d in self.days], self.watermark_us,
                self.n_late_ignored, self.watermark_day_end_us]

    @classmethod
    def unpack(cls, obj: Any) -> DmoState:
        """Inverse of ``pack``; ``StateFormatError`` for a state this release cannot read."""
        d = check_version(obj, "dmo", (STATE_VERSION,))
        try:
            _, days, wm, late, day_end = d
            return cls([DmoDay.unpack(x) for x in days], None if wm is None else int(wm),
                       int(late), int(day_end))
        except (ValueError, TypeError, IndexError) as exc:
            raise StateFormatError(f"dmo state is corrupt: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class DailyDmos:
    """One participant-day's DMOs (``DMOS`` names; None = not defined that day).

    ``errors`` holds the expected absolute error of each value (same keys; None when the
    evaluation could not give one, or no table was given). ``final``: the day has ended.
    """

    day: str
    day_start_us: int
    final: bool
    values: dict[str, float | None]
    errors: dict[str, float | None]
    n_implausible: int
    cohort: str


class DailyMobility:
    """The daily-DMO reducer of one cohort, height and clinic time zone."""

    def __init__(self, *, cohort: str = "MS", height_m: float | None = None,
                 timezone: str = "UTC", condition: str = "free_living",
                 errors: ErrorTable | None = None, retain_days: int = 2) -> None:
        self.limits = PlausibilityLimits.for_cohort(cohort, height_m=height_m,
                                                    condition=condition)
        try:
            self.tz = zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{timezone!r} is not an IANA time zone") from None
        if retain_days < 1:
            raise ValueError("retain_days must be >= 1")
        self.cohort = cohort
        self.timezone = timezone
        self.errors = errors
        self.retain_days = retain_days

    # ------------------------------------------------------------------ clinic days

    def day_of(self, t_us: int) -> int:
        """Clinic day (days since 1970-01-01, local date) of device time ``t_us``."""
        t = dt.datetime.fromtimestamp(t_us / 1e6, dt.UTC).astimezone(self.tz)
        return (t.date() - _EPOCH).days

    def day_start_us(self, day: int) -> int:
        """Device time of local midnight starting clinic day ``day``."""
        start = dt.datetime.combine(_EPOCH + dt.timedelta(days=day), dt.time(), self.tz)
        return round(start.timestamp() * 1e6)

    # ------------------------------------------------------------------ the reducer

    def initialize(self) -> DmoState:
        """State of a patient never seen."""
        return DmoState()

    def agg(self, state: DmoState, bout: WalkingBout) -> DmoState:
        """Add one bout to its day (a duplicate or a too-late bout changes nothing else)."""
        day = self.day_of(bout.start_us)
        target = next((d for d in state.days if d.day == day), None)
        if target is None:
            newest = max((d.day for d in state.days), default=day)
            wm_day = None if state.watermark_us is None else self.day_of(state.watermark_us)
            if day <= newest - self.retain_days or (wm_day is not None
                                                    and day < wm_day - self.retain_days + 1):
                state.n_late_ignored += 1
                return state
            target = DmoDay(day, closed=wm_day is not None and day < wm_day)
            state.days.append(target)
            state.days.sort(key=lambda d: d.day)
        if bout.start_us in target.starts_us:
            return state
        row, dropped = self.limits.check(bout.row())
        if not row[0] >= 0:  # no valid duration: kept (a replay stays a duplicate) but in no bin
            row[0] = math.nan
        target.starts_us.append(bout.start_us)
        target.rows.append(row)
        target.n_implausible += int(dropped)
        self._forget(state)
        return state

    def close(self, state: DmoState, t_us: int) -> list[int]:
        """Event-time watermark: close every day that ended by ``t_us``; the days closed."""
        if state.watermark_us is not None and t_us <= state.watermark_us:
            return []
        state.watermark_us = t_us
        if t_us < state.watermark_day_end_us:
            return []  # same clinic day as before: nothing ends
        today = self.day_of(t_us)
        state.watermark_day_end_us = self.day_start_us(today + 1)
        closed = []
        for d in state.days:
            if not d.closed and d.day < today:
                d.closed = True
                closed.append(d.day)
        self._forget(state)
        return closed

    def result(self, state: DmoState, day: int) -> DailyDmos | None:
        """The DMOs of clinic day ``day`` (None if the state holds no bout of it)."""
        d = next((x for x in state.days if x.day == day), None)
        if d is None:
            return None
        values = compute_dmos(d.rows)
        errors: dict[str, float | None] = {
            m.name: None if self.errors is None else self.errors.dmo_error(m, values[m.name])
            for m in DMOS}
        return DailyDmos((_EPOCH + dt.timedelta(days=day)).isoformat(), self.day_start_us(day),
                         d.closed, values, errors, d.n_implausible, self.cohort)

    def _forget(self, state: DmoState) -> None:
        """Drop closed days more than ``retain_days`` before the newest day."""
        if not state.days:
            return
        newest = max(d.day for d in state.days)
        if state.watermark_us is not None:
            newest = max(newest, self.day_of(state.watermark_us))
        state.days = [d for d in state.days
                      if not (d.closed and d.day <= newest - self.retain_days)]
