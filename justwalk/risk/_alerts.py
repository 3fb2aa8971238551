"""When a fall-risk score becomes an alert: threshold crossing with hysteresis, weekly rise.

- **Threshold**: an alert when the score reaches ``threshold`` coming from below. The
  alert then disarms; it re-arms only when the score falls below
  ``threshold - hysteresis``, so a score hovering around the threshold does not alert on
  every update. At most one threshold alert per patient and clinic day.
- **Weekly rise** ("rising steadily"), checked when a day closes: the least-squares line
  through the daily scores of that day and the 6 before it (calendar days; days without
  data are left out) has a slope of at least ``weekly_rise / 7`` points per day, at least
  ``min_days`` daily scores, and a coefficient of determination R^2 >= ``min_r2`` (the
  rise is steady, not one jump). At most one weekly-rise alert per 7 days.

Alert ids are ``AlertRecord.make_id(patient_id, "", "fall_risk:<kind>", day_start_us)``:
patient, kind and clinic day only (no session: the score spans sessions), so a replay
raises the same id and receivers recognise duplicates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from justwalk.records import AlertRecord

TREND_DAYS = 7
"""Calendar days of daily scores in the trend fit (the closing day and the 6 before)."""

THRESHOLD = "threshold"
WEEKLY_RISE = "weekly_rise"


@dataclass(frozen=True, slots=True)
class Trend:
    """Least-squares line through daily scores."""

    slope_per_day: float
    """Points per day."""
    r2: float
    """Coefficient of determination of the line (0 when the scores are all equal)."""
    n_days: int


def fit_trend(points: Sequence[tuple[int, float]]) -> Trend | None:
    """Ordinary least-squares fit of (day, score) pairs; None with fewer than 2 days."""
    n = len(points)
    if n < 2:
        return None
    mx = math.fsum(float(x) for x, _ in points) / n
    my = math.fsum(y for _, y in points) / n
    sxx = math.fsum((x - mx) ** 2 for x, _ in points)
    sxy = math.fsum((x - mx) * (y - my) for x, y in points)
    syy = math.fsum((y - my) ** 2 for _, y in points)
    if sxx == 0.0:
        return None
    r2 = sxy * sxy / (sxx * syy) if syy > 0.0 else 0.0
    return Trend(sxy / sxx, r2, n)


@dataclass(frozen=True, slots=True)
class RiskAlertPolicy:
    """A clinic's fall-risk alert settings (scores in points, 0..100)."""

    threshold: float = 50.0
    """Alert when the score reaches this from below."""
    weekly_rise: float = 10.0
    """Alert when the fitted line over the last 7 days rises by at least this many points
    per 7 days (slope >= weekly_rise / 7 points/day)."""
    min_days: int = 5
    """Daily scores needed within the 7 days for a weekly-rise alert."""
    hysteresis: float = 5.0
    """The threshold alert re-arms when the score falls below threshold - hysteresis."""
    min_r2: float = 0.5
    """R^2 the weekly line must reach: a steady rise, not a single jump."""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 100.0:
            raise ValueError(f"threshold must be in (0, 100] points: {self.threshold}")
        if not 0.0 <= self.hysteresis < self.threshold:
            raise ValueError(f"hysteresis must be in [0, threshold): {self.hysteresis}")
        if not self.weekly_rise > 0.0:
            raise ValueError(f"weekly_rise must be > 0 points per week: {self.weekly_rise}")
        if not 2 <= self.min_days <= TREND_DAYS:
            raise ValueError(f"min_days must be in [2, {TREND_DAYS}]: {self.min_days}")
        if not 0.0 <= self.min_r2 <= 1.0:
            raise ValueError(f"min_r2 must be in [0, 1]: {self.min_r2}")

    def crossing(self, armed: bool, score: float) -> tuple[bool, bool]:
        """(alert now, armed afterwards) for a new score, given whether the alert was armed."""
        if armed and score >= self.threshold:
            return True, False
        if not armed and score < self.threshold - self.hysteresis:
            return False, True
        return False, armed

    def rising(self, trend: Trend | None) -> bool:
        """Whether a weekly trend counts as a steady rise."""
        return (trend is not None and trend.n_days >= self.min_days
                and trend.slope_per_day * TREND_DAYS >= self.weekly_rise
                and trend.r2 >= self.min_r2)


@dataclass(frozen=True, slots=True)
class RiskAlert:
    """A fall-risk alert decision, ready to become an ``AlertRecord`` once identity is known.

    ``kind`` is "threshold" or "weekly_rise"; ``day`` the clinic day (ISO date) it belongs
    to. ``evidence`` holds the score, each component's points (``pts_<component>``), the
    inputs with units in their names, the event counts and the trend.
    """

    TYPE: ClassVar[str] = "fall_risk"
    SEVERITY: ClassVar[str] = "warning"

    kind: str
    day: str
    day_start_us: int
    event_start_us: int
    event_end_us: int
    evidence: dict[str, float | str]

    def alert_id(self, patient_id: str) -> str:
        """Stable id: patient + kind + clinic day (identical on replay)."""
        return AlertRecord.make_id(patient_id, "", f"{self.TYPE}:{self.kind}",
                                   self.day_start_us)

    def to_record(self, *, clinic_id: str, patient_id: str, device_id: str, session_id: str,
                  raised_at_us: int, chunk_received_at_us: int | None = None) -> AlertRecord:
        """The alert in the system's one alert format (type "fall_risk", "warning")."""
        return AlertRecord(
            alert_id=self.alert_id(patient_id), clinic_id=clinic_id, patient_id=patient_id,
            device_id=device_id, session_id=session_id, type=self.TYPE,
            severity=self.SEVERITY, event_start_us=self.event_start_us,
            event_end_us=self.event_end_us, raised_at_us=raised_at_us,
            evidence=dict(self.evidence), chunk_received_at_us=chunk_received_at_us,
        )
