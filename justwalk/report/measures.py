"""The numbers the report's notes and tables are built from (pure functions of ``ReportData``).

Clinical rules used:

* T25FW: a change of >= 20 % in the time is clinically meaningful in MS (Kalinowski et al.,
  Mult Scler 2022, "The Timed 25-Foot Walk in a large cohort of multiple sclerosis
  patients"; the 20 % threshold of Kragt et al. 2006 and the MSOAC).
* Distance Walked Index: DWI = (last minute - minute 1) / minute 1 x 100; DWI <= -15 % is
  walking-related fatigability (Leone et al., Mult Scler 2016). A patient's own threshold
  (``alert_thresholds.fatigability_dwi_pct``) replaces -15 % where the therapist set one.
* Walking speed and cadence changes are compared with the gait pipeline's measured error
  per walking bout on people held out of the tuning (the overall errors of the uncertainty
  table the evaluation writes, ``justwalk.mobility.shipped_error``; README "Measurement
  error"); a change smaller than that is not told apart from measurement error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from justwalk.mobility import shipped_error
from justwalk.report.data import Day, ReportData

T25FW_MEANINGFUL_PCT = 20.0
DWI_FATIGABILITY_PCT = -15.0
SPEED_ERROR_MPS = shipped_error("walking_speed_mps")
CADENCE_ERROR_SPM = shipped_error("cadence_spm")
COMPARE_DAYS = 7
"""Days averaged at each end of the period when comparing daily values."""


def dwi_threshold(data: ReportData) -> float:
    """The patient's fatigability threshold (DWI %), -15 % unless the therapist set one."""
    value = data.patient.get("alert_thresholds", {}).get("fatigability_dwi_pct")
    return DWI_FATIGABILITY_PCT if value is None else float(value)


def test_day(session: dict[str, Any]) -> date:
    """The UTC day a session started."""
    return date.fromisoformat(session["started_at"][:10])


@dataclass(frozen=True, slots=True)
class Change:
    """A value at the start and at the end of the period."""

    first: float
    last: float
    first_label: str
    last_label: str

    @property
    def delta(self) -> float:
        """The last value minus the first."""
        return self.last - self.first

    @property
    def pct(self) -> float:
        """Change relative to the first value, percent."""
        return 100.0 * self.delta / self.first if self.first else math.nan


def test_change(data: ReportData, kind: str, field: str) -> tuple[Change, float | None] | None:
    """First and last walk test of ``kind`` in the period (``field`` of the result).

    With the uncertainty of the difference (root sum of squares of the two distances'),
    where both are known.
    """
    tests = [s for s in data.tests(kind) if s["result"].get(field) is not None]
    if len(tests) < 2:
        return None
    a, b = tests[0], tests[-1]
    change = Change(a["result"][field], b["result"][field], test_day(a).isoformat(),
                    test_day(b).isoformat())
    ua = a["result"].get("distance_uncertainty_m")
    ub = b["result"].get("distance_uncertainty_m")
    u = math.hypot(ua, ub) if field == "distance_m" and ua is not None and ub is not None \
        else None
    return change, u


def daily_change(days: list[Day], field: str) -> Change | None:
    """Mean of ``field`` over the first and the last days with a value (up to 7 each)."""
    values = [(d.day, getattr(d, field)) for d in days if getattr(d, field) is not None]
    k = min(COMPARE_DAYS, len(values) // 2)
    if k < 1:
        return None
    head, tail = values[:k], values[-k:]

    def label(part: list[tuple[date, Any]]) -> str:
        return (part[0][0].isoformat() if len(part) == 1
                else f"{part[0][0].isoformat()}..{part[-1][0].isoformat()}")

    return Change(sum(v for _, v in head) / k, sum(v for _, v in tail) / k, label(head),
                  label(tail))


def period_mean(days: list[Day], field: str) -> float | None:
    """Mean of ``field`` over the days that have it."""
    values = [getattr(d, field) for d in days if getattr(d, field) is not None]
    return sum(values) / len(values) if values else None


def event_totals(days: list[Day]) -> tuple[int, int]:
    """(near-falls, falls) over the period's days."""
    return (sum(d.near_falls or 0 for d in days), sum(d.falls or 0 for d in days))


@dataclass(frozen=True, slots=True)
class Adherence:
    """Sessions done against sessions prescribed, for one prescription over the period."""

    prescription_id: int
    session_type: str
    times_per_week: int
    expected: float
    done: int

    @property
    def pct(self) -> float | None:
        """Sessions done per session due, percent (None when nothing was due yet)."""
        return 100.0 * self.done / self.expected if self.expected > 0 else None


def _active_days(rx: dict[str, Any], first: date, last: date) -> int:
    start = max(first, date.fromisoformat(rx["start_date"]))
    end = last if rx["end_date"] is None else min(last, date.fromisoformat(rx["end_date"]))
    return max(0, (end - start).days + 1)


def adherence(data: ReportData) -> list[Adherence]:
    """Per prescription of the period: completed sessions against times_per_week."""
    rows = []
    for rx in data.prescriptions:
        days = _active_days(rx, data.period.first, data.period.last)
        done = sum(1 for s in data.sessions if s["prescription_id"] == rx["prescription_id"]
                   and s["status"] == "completed")
        rows.append(Adherence(rx["prescription_id"], rx["session_type"], rx["times_per_week"],
                              rx["times_per_week"] * days / 7.0, done))
    return rows


def weekly_adherence(data: ReportData) -> list[tuple[date, int, float]]:
    """Per week (its Monday) touching the period: (week, completed prescribed sessions, due).

    Sessions due that week are pro rata for weeks the period or a prescription covers in part.
    """
    first, last = data.period.first, data.period.last
    week = first - timedelta(days=first.weekday())
    out = []
    while week <= last:
        lo, hi = max(first, week), min(last, week + timedelta(days=6))
        due = sum(rx["times_per_week"] * _active_days(rx, lo, hi) / 7.0
                  for rx in data.prescriptions)
        done = sum(1 for s in data.sessions if s["prescription_id"] is not None
                   and s["status"] == "completed" and lo <= test_day(s) <= hi)
        out.append((week, done, due))
        week += timedelta(days=7)
    return out
