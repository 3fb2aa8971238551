"""What a progress report shows: one patient, one period, as plain values (no I/O here).

``gather`` fills a :class:`ReportData` from the database and the clinic's InfluxDB database;
``example`` fills one from synthetic data; ``notes``, ``plots`` and ``render`` read it.
Sessions, prescriptions and the patient are the repository's JSON-ready dicts
(``justwalk.db.views``), so the report shows exactly what the API returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from justwalk.db.inputs import InputError

MAX_PERIOD_DAYS = 731
"""Longest period one report covers (two years)."""

DAILY_FIELDS = ("steps", "walking_min", "walking_speed_mean_mps", "cadence_mean_spm",
                "stride_time_cv_mean_pct", "near_falls", "falls")
"""The fields of the ``patient_daily`` rollup (``justwalk.schema``) the report reads."""

WALK_TESTS = ("t25fw", "2mwt", "6mwt")


@dataclass(frozen=True, slots=True)
class Period:
    """Whole UTC days ``first`` .. ``last``, both included."""

    first: date
    last: date

    @classmethod
    def parse(cls, first: str | None, last: str | None) -> Period:
        """From ``YYYY-MM-DD`` strings; :class:`InputError` says what is wrong."""
        if not first or not last:
            missing = " and ".join(n for n, v in (("from", first), ("to", last)) if not v)
            raise InputError(f"{missing}: missing; give the period as from=YYYY-MM-DD and "
                             "to=YYYY-MM-DD")
        return cls.of(_day(first, "from"), _day(last, "to"))

    @classmethod
    def of(cls, first: date, last: date) -> Period:
        """Checked: ``first <= last`` and at most ``MAX_PERIOD_DAYS`` days."""
        if first > last:
            raise InputError(f"from {first.isoformat()} is after to {last.isoformat()}")
        days = (last - first).days + 1
        if days > MAX_PERIOD_DAYS:
            raise InputError(f"the period has {days} days; a report covers at most "
                             f"{MAX_PERIOD_DAYS}")
        return cls(first, last)

    @property
    def start(self) -> datetime:
        """00:00 UTC of the first day."""
        return datetime.combine(self.first, time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """00:00 UTC of the day after the last (the end is excluded)."""
        return datetime.combine(self.last + timedelta(days=1), time(), tzinfo=UTC)

    @property
    def days(self) -> int:
        """Number of days covered."""
        return (self.last - self.first).days + 1


def _day(text: str, name: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{name}: {text[:40]!r} is not a date YYYY-MM-DD") from None


@dataclass(frozen=True, slots=True)
class Day:
    """One day of the ``patient_daily`` rollup; None: the rollup has no such value."""

    day: date
    steps: int | None = None
    walking_min: float | None = None
    walking_speed_mean_mps: float | None = None
    cadence_mean_spm: float | None = None
    stride_time_cv_mean_pct: float | None = None
    near_falls: int | None = None
    falls: int | None = None


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything one report shows."""

    patient: dict[str, Any]
    period: Period
    generated_at: datetime
    prescriptions: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    """Sessions started in the period, oldest first, with results and per-minute values."""
    daily: list[Day]
    """Days of the period that have a rollup point, oldest first."""
    influx_problem: str | None = None
    """Why the InfluxDB sections are empty when InfluxDB could not be read."""
    missing: list[str] = field(default_factory=list)
    """Measurements that do not exist (yet) in the clinic's database."""

    def tests(self, kind: str) -> list[dict[str, Any]]:
        """Finished walk tests of one kind (``t25fw``, ``2mwt``, ``6mwt``) with a result."""
        return [s for s in self.sessions
                if s["session_type"] == kind and s["result"] is not None]
