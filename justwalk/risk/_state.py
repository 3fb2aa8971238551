"""Per-patient streaming state of the fall-risk score (JSON-serialisable, exact round trip).

The state keeps one ``DayAggregate`` per clinic day that had data, for the last
``history_days`` days (14 by default): duration-weighted sums of the gait inputs, the ids
(start times) of the bouts and events already counted, and the day's closing score. Sums
instead of per-bout values keep it small; ids make replays harmless (a bout or event seen
twice is counted once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DayAggregate:
    """What one clinic day contributed (day = days since 1970-01-01 in clinic time)."""

    day: int
    n_bouts: int = 0
    walking_s: float = 0.0
    speed_w: float = 0.0
    """Sum of the weights (bout durations, s) of the bouts with a walking speed."""
    speed_wx: float = 0.0
    """Sum of weight * walking speed (m/s)."""
    cv_w: float = 0.0
    cv_wx: float = 0.0
    asym_w: float = 0.0
    asym_wx: float = 0.0
    bouts: list[int] = field(default_factory=list)
    """Start times (us) of the bouts counted."""
    near_falls: list[int] = field(default_factory=list)
    """Start times (us) of the near-falls counted."""
    falls: list[int] = field(default_factory=list)
    """Start times (us) of the falls counted."""
    score: float | None = None
    """The day's closing score, set when the day rolls over (None while open)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "day": self.day, "n_bouts": self.n_bouts, "walking_s": self.walking_s,
            "speed_w": self.speed_w, "speed_wx": self.speed_wx,
            "cv_w": self.cv_w, "cv_wx": self.cv_wx,
            "asym_w": self.asym_w, "asym_wx": self.asym_wx,
            "bouts": list(self.bouts), "near_falls": list(self.near_falls),
            "falls": list(self.falls), "score": self.score,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DayAggregate:
        """Inverse of ``to_dict``."""
        return cls(
            day=int(d["day"]), n_bouts=int(d["n_bouts"]), walking_s=float(d["walking_s"]),
            speed_w=float(d["speed_w"]), speed_wx=float(d["speed_wx"]),
            cv_w=float(d["cv_w"]), cv_wx=float(d["cv_wx"]),
            asym_w=float(d["asym_w"]), asym_wx=float(d["asym_wx"]),
            bouts=[int(x) for x in d["bouts"]],
            near_falls=[int(x) for x in d["near_falls"]],
            falls=[int(x) for x in d["falls"]],
            score=None if d["score"] is None else float(d["score"]),
        )


@dataclass
class FallRiskState:
    """All per-patient state of ``FallRiskScorer``."""

    day: int | None = None
    """The open clinic day (None before the first input)."""
    last_t_us: int | None = None
    """Latest event time whose data is in the score."""
    days: list[DayAggregate] = field(default_factory=list)
    """Days with data, oldest first, at most ``history_days`` back from ``day``."""
    armed: bool = True
    """Threshold alert armed: the score was never above, or fell below threshold - hysteresis."""
    last_threshold_alert_day: int | None = None
    last_rise_alert_day: int | None = None
    n_late_ignored: int = 0
    """Inputs older than the retained history, dropped (counted for monitoring)."""
    dmos: dict[int, dict[str, float]] = field(default_factory=dict)
    """Daily mobility outcomes (``justwalk.mobility``, ``DMO_FEATURES``) per clinic day,
    latest publication, for the retained history: inputs the scorer can read
    (``FallRiskScorer.dmo_features``); they do not enter the points."""

    def find(self, day: int) -> DayAggregate | None:
        """The aggregate of ``day``, if that day has data."""
        for agg in self.days:
            if agg.day == day:
                return agg
        return None

    def get_or_add(self, day: int) -> DayAggregate:
        """The aggregate of ``day``, created (in day order) if needed."""
        agg = self.find(day)
        if agg is None:
            agg = DayAggregate(day)
            self.days.append(agg)
            self.days.sort(key=lambda a: a.day)
        return agg

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "day": self.day, "last_t_us": self.last_t_us,
            "days": [a.to_dict() for a in self.days], "armed": self.armed,
            "last_threshold_alert_day": self.last_threshold_alert_day,
            "last_rise_alert_day": self.last_rise_alert_day,
            "n_late_ignored": self.n_late_ignored,
            "dmos": {str(k): dict(v) for k, v in self.dmos.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FallRiskState:
        """Inverse of ``to_dict``."""

        def opt_int(x: Any) -> int | None:
            return None if x is None else int(x)

        return cls(
            day=opt_int(d["day"]), last_t_us=opt_int(d["last_t_us"]),
            days=[DayAggregate.from_dict(a) for a in d["days"]], armed=bool(d["armed"]),
            last_threshold_alert_day=opt_int(d["last_threshold_alert_day"]),
            last_rise_alert_day=opt_int(d["last_rise_alert_day"]),
            n_late_ignored=int(d["n_late_ignored"]),
            dmos={int(k): {str(n): float(x) for n, x in v.items()}
                  for k, v in d.get("dmos", {}).items()},
        )
