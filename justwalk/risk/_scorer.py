"""The streaming per-patient fall-risk scorer: bouts and fall events in, scores and alerts out.

A reducer in the Quix Streams sense: ``initial_state()``, then ``on_bout(state, bout)``,
``on_event(state, event)`` and ``on_time(state, t_us)`` update ``state`` in place and
return a ``RiskUpdate``. Only event time is used (device clock, us since the epoch); a
clinic day is a UTC day shifted by the clinic's fixed offset ``utc_offset_min``.

- A bout or event of a later day than the open one first closes the open day: its
  closing score becomes a ``DailyRiskScore`` (with the weekly trend) and the weekly-rise
  rule is checked. ``on_time`` closes days the same way from any event-time watermark
  (for example the device time of the latest chunk), for patients who stop walking.
- A bout or event that is counted yields a new ``RiskScore`` snapshot, which the
  threshold rule is checked against. A bout too short, an event below the confidence
  floor, or a duplicate (same start time) changes nothing and yields no snapshot.
- Late input (a day already closed) is added to its day and so enters later scores, but
  closed daily scores are not rewritten; input older than the retained history
  (``history_days``) is dropped and counted in ``state.n_late_ignored``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

from justwalk.falls.base import EventType, FallEvent
from justwalk.gait.pipeline import BoutResult
from justwalk.risk._alerts import (
    THRESHOLD,
    TREND_DAYS,
    WEEKLY_RISE,
    RiskAlert,
    RiskAlertPolicy,
    Trend,
    fit_trend,
)
from justwalk.risk._model import FallRiskModel
from justwalk.risk._state import DayAggregate, FallRiskState

US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)

DMO_FEATURES = ("wb_all_n", "walkdur_all_s", "cadence_all_mean_spm", "strdur_all_cv_pct",
                "ws_10_p90_mps", "ws_30_mean_mps", "wbdur_all_p90_s")
"""Daily mobility outcomes the scorer keeps (``on_daily_dmos``): amount of walking, its
pace and variability, and the best speed of the day (P90 of bouts > 10 s)."""

INPUT_KEYS = ("walking_speed_mps", "stride_time_cv_pct", "step_time_asymmetry_pct", "walking_s")
"""Keys of ``RiskScore.inputs``: the gait-window inputs of the score, units in the names."""


@dataclass(frozen=True, slots=True)
class BoutSummary:
    """What the scorer needs of one walking bout (a ``BoutResult`` is converted to this)."""

    start_us: int
    end_us: int
    duration_s: float
    n_steps: int
    walking_speed_mps: float
    stride_time_cv_pct: float
    step_time_asymmetry_pct: float

    @classmethod
    def from_bout_result(cls, bout: BoutResult) -> BoutSummary:
        """The summary of a ``GaitPipeline`` bout."""
        p = bout.params
        return cls(bout.start_us, bout.end_us, bout.duration_s, p.n_steps,
                   p.walking_speed_mps, p.stride_time_cv_pct, p.step_time_asymmetry_pct)


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


@dataclass(frozen=True, slots=True)
class RiskScore:
    """A fall-risk snapshot (no identity: the processor attaches patient and clinic).

    ``score`` is in points, 0..100; ``components`` the points of each component (they sum
    to ``score``); ``inputs`` the gait values over the gait window (None = no qualifying
    walking). ``n_bouts`` counts bouts in the gait window, ``n_near_falls``/``n_falls``
    events in the event window. ``trend_per_day`` (points/day) is the least-squares slope
    of the daily scores of the 7 days before ``day`` (None with fewer than 2 of them).
    """

    t_us: int
    day: str
    score: float
    components: dict[str, float]
    inputs: dict[str, float | None]
    n_bouts: int
    n_near_falls: int
    n_falls: int
    trend_per_day: float | None
    n_trend_days: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RiskScore:
        """Inverse of ``to_dict``."""
        return cls(
            t_us=int(d["t_us"]), day=str(d["day"]), score=float(d["score"]),
            components={str(k): float(v) for k, v in d["components"].items()},
            inputs={str(k): _opt_float(v) for k, v in d["inputs"].items()},
            n_bouts=int(d["n_bouts"]), n_near_falls=int(d["n_near_falls"]),
            n_falls=int(d["n_falls"]), trend_per_day=_opt_float(d["trend_per_day"]),
            n_trend_days=int(d["n_trend_days"]),
        )


@dataclass(frozen=True, slots=True)
class DailyRiskScore:
    """The closing score of one clinic day, with the weekly trend ending that day.

    ``trend_per_day`` (points/day) and ``trend_r2`` are the least-squares line through the
    daily scores of ``day`` and the 6 days before (None with fewer than 2 of them).
    """

    day: str
    day_start_us: int
    score: float
    components: dict[str, float]
    inputs: dict[str, float | None]
    n_bouts: int
    n_near_falls: int
    n_falls: int
    trend_per_day: float | None
    trend_r2: float | None
    n_trend_days: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DailyRiskScore:
        """Inverse of ``to_dict``."""
        return cls(
            day=str(d["day"]), day_start_us=int(d["day_start_us"]), score=float(d["score"]),
            components={str(k): float(v) for k, v in d["components"].items()},
            inputs={str(k): _opt_float(v) for k, v in d["inputs"].items()},
            n_bouts=int(d["n_bouts"]), n_near_falls=int(d["n_near_falls"]),
            n_falls=int(d["n_falls"]), trend_per_day=_opt_float(d["trend_per_day"]),
            trend_r2=_opt_float(d["trend_r2"]), n_trend_days=int(d["n_trend_days"]),
        )


@dataclass(frozen=True, slots=True)
class RiskUpdate:
    """What one input produced: a new snapshot (None if nothing changed), closed days, alerts."""

    score: RiskScore | None = None
    daily: list[DailyRiskScore] = field(default_factory=list)
    alerts: list[RiskAlert] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Level:
    """The score of a day computed from the windows ending on it."""

    score: float
    points: dict[str, float]
    inputs: dict[str, float | None]
    n_bouts: int
    n_near_falls: int
    n_falls: int


def _mean(w: float, wx: float) -> float | None:
    return wx / w if w > 0.0 else None


class FallRiskScorer:
    """Per-patient fall-risk score; see the module and package docstrings."""

    def __init__(
        self,
        *,
        model: FallRiskModel | None = None,
        policy: RiskAlertPolicy | None = None,
        utc_offset_min: int = 0,
        gait_window_days: int = 3,
        event_window_days: int = 14,
        min_bout_duration_s: float = 10.0,
        min_bout_steps: int = 10,
        min_event_confidence: float = 0.5,
    ) -> None:
        if not -14 * 60 <= utc_offset_min <= 14 * 60:
            raise ValueError(f"utc_offset_min must be within +-14 h: {utc_offset_min}")
        if gait_window_days < 1 or event_window_days < 1:
            raise ValueError("window lengths must be >= 1 day")
        self.model = model or FallRiskModel()
        self.policy = policy or RiskAlertPolicy()
        self.utc_offset_min = utc_offset_min
        self.gait_window_days = gait_window_days
        self.event_window_days = event_window_days
        self.min_bout_duration_s = min_bout_duration_s
        self.min_bout_steps = min_bout_steps
        self.min_event_confidence = min_event_confidence

    # ------------------------------------------------------------------ time

    @property
    def history_days(self) -> int:
        """Days of aggregates kept in the state (windows and the trend fit need them)."""
        return max(self.gait_window_days, self.event_window_days, TREND_DAYS + 1)

    def day_of(self, t_us: int) -> int:
        """Clinic day (days since 1970-01-01, clinic time) of device time ``t_us``."""
        return (t_us + self.utc_offset_min * 60_000_000) // US_PER_DAY

    def day_start_us(self, day: int) -> int:
        """Device time (us, UTC epoch) at which clinic day ``day`` starts."""
        return day * US_PER_DAY - self.utc_offset_min * 60_000_000

    @staticmethod
    def day_iso(day: int) -> str:
        """ISO date of clinic day ``day``."""
        return (_EPOCH + timedelta(days=day)).isoformat()

    # ------------------------------------------------------------------ inputs

    def initial_state(self) -> FallRiskState:
        """State of a patient never seen before."""
        return FallRiskState()

    def on_bout(self, state: FallRiskState, bout: BoutSummary | BoutResult) -> RiskUpdate:
        """Consume one walking bout (counted on the clinic day it started)."""
        b = BoutSummary.from_bout_result(bout) if isinstance(bout, BoutResult) else bout
        day = self.day_of(b.start_us)
        daily, alerts = self._advance(state, day)
        if b.duration_s < self.min_bout_duration_s or b.n_steps < self.min_bout_steps:
            return RiskUpdate(None, daily, alerts)
        agg = self._target(state, day)
        if agg is None or b.start_us in agg.bouts:
            return RiskUpdate(None, daily, alerts)
        w = b.duration_s
        agg.bouts.append(b.start_us)
        agg.n_bouts += 1
        agg.walking_s += w
        if math.isfinite(b.walking_speed_mps):
            agg.speed_w += w
            agg.speed_wx += w * b.walking_speed_mps
        if math.isfinite(b.stride_time_cv_pct):
            agg.cv_w += w
            agg.cv_wx += w * b.stride_time_cv_pct
        if math.isfinite(b.step_time_asymmetry_pct):
            agg.asym_w += w
            agg.asym_wx += w * b.step_time_asymmetry_pct
        return self._changed(state, b.end_us, daily, alerts)

    def on_event(self, state: FallRiskState, event: FallEvent) -> RiskUpdate:
        """Consume one detected near-fall or fall (counted on the day it started)."""
        day = self.day_of(event.start_us)
        daily, alerts = self._advance(state, day)
        if event.confidence < self.min_event_confidence:
            return RiskUpdate(None, daily, alerts)
        agg = self._target(state, day)
        if agg is None:
            return RiskUpdate(None, daily, alerts)
        ids = agg.falls if event.type == EventType.FALL else agg.near_falls
        if event.start_us in ids:
            return RiskUpdate(None, daily, alerts)
        ids.append(event.start_us)
        return self._changed(state, event.end_us, daily, alerts)

    def on_time(self, state: FallRiskState, t_us: int) -> RiskUpdate:
        """Event-time watermark: close every day before the clinic day of ``t_us``."""
        daily, alerts = self._advance(state, self.day_of(t_us))
        return RiskUpdate(None, daily, alerts)

    def on_daily_dmos(self, state: FallRiskState, day_start_us: int,
                      dmos: dict[str, float | None]) -> None:
        """Keep a clinic day's daily mobility outcomes (``justwalk.mobility``) as inputs.

        Only ``DMO_FEATURES`` are kept, for the retained history; the points are not
        changed by them (no outcome data to weight them yet: issue #15).
        """
        day = self.day_of(day_start_us + US_PER_DAY // 2)
        newest = max([day, *state.dmos, *([] if state.day is None else [state.day])])
        state.dmos[day] = {k: float(v) for k in DMO_FEATURES
                           if (v := dmos.get(k)) is not None}
        for old in [d for d in state.dmos if d <= newest - self.history_days]:
            del state.dmos[old]

    def dmo_features(self, state: FallRiskState, day: int | None = None,
                     ) -> dict[str, float]:
        """The daily mobility outcomes of clinic ``day`` (default: the latest day with some)."""
        if not state.dmos:
            return {}
        return dict(state.dmos.get(max(state.dmos) if day is None else day, {}))

    def current(self, state: FallRiskState) -> RiskScore | None:
        """The snapshot for the open day, or None before any counted input."""
        if state.day is None or state.last_t_us is None:
            return None
        return self._snapshot(state, state.last_t_us)

    # ------------------------------------------------------------------ helpers

    def _target(self, state: FallRiskState, day: int) -> DayAggregate | None:
        """The aggregate an input of ``day`` goes to; None (and counted) if too old."""
        assert state.day is not None
        if day <= state.day - self.history_days:
            state.n_late_ignored += 1
            return None
        return state.get_or_add(day)

    def _window(self, state: FallRiskState, end_day: int, n_days: int) -> list[DayAggregate]:
        return [a for a in state.days if end_day - n_days < a.day <= end_day]

    def _level(self, state: FallRiskState, day: int) -> _Level:
        gait = self._window(state, day, self.gait_window_days)
        events = self._window(state, day, self.event_window_days)
        inputs: dict[str, float | None] = {
            "walking_speed_mps": _mean(math.fsum(a.speed_w for a in gait),
                                       math.fsum(a.speed_wx for a in gait)),
            "stride_time_cv_pct": _mean(math.fsum(a.cv_w for a in gait),
                                        math.fsum(a.cv_wx for a in gait)),
            "step_time_asymmetry_pct": _mean(math.fsum(a.asym_w for a in gait),
                                             math.fsum(a.asym_wx for a in gait)),
            "walking_s": math.fsum(a.walking_s for a in gait),
        }
        n_near = sum(len(a.near_falls) for a in events)
        n_falls = sum(len(a.falls) for a in events)
        points = self.model.points(
            walking_speed_mps=inputs["walking_speed_mps"],
            stride_time_cv_pct=inputs["stride_time_cv_pct"],
            step_time_asymmetry_pct=inputs["step_time_asymmetry_pct"],
            n_near_falls=n_near, n_falls=n_falls)
        return _Level(self.model.total(points), points, inputs,
                      sum(a.n_bouts for a in gait), n_near, n_falls)

    def _trend(self, state: FallRiskState, last_day: int) -> Trend | None:
        """Line through the daily scores of ``last_day`` and the 6 days before."""
        pts = [(a.day, a.score) for a in self._window(state, last_day, TREND_DAYS)
               if a.score is not None]
        return fit_trend(pts)

    def _snapshot(self, state: FallRiskState, t_us: int) -> RiskScore:
        assert state.day is not None
        lv = self._level(state, state.day)
        trend = self._trend(state, state.day - 1)
        return RiskScore(
            t_us=t_us, day=self.day_iso(state.day), score=lv.score, components=lv.points,
            inputs=lv.inputs, n_bouts=lv.n_bouts, n_near_falls=lv.n_near_falls,
            n_falls=lv.n_falls, trend_per_day=None if trend is None else trend.slope_per_day,
            n_trend_days=0 if trend is None else trend.n_days,
        )

    def _changed(self, state: FallRiskState, t_us: int, daily: list[DailyRiskScore],
                 alerts: list[RiskAlert]) -> RiskUpdate:
        """A counted input: new snapshot, threshold rule."""
        assert state.day is not None
        state.last_t_us = t_us if state.last_t_us is None else max(state.last_t_us, t_us)
        snap = self._snapshot(state, state.last_t_us)
        fire, state.armed = self.policy.crossing(state.armed, snap.score)
        if fire and state.last_threshold_alert_day != state.day:
            state.last_threshold_alert_day = state.day
            lv = _Level(snap.score, snap.components, snap.inputs, snap.n_bouts,
                        snap.n_near_falls, snap.n_falls)
            alerts = [*alerts, RiskAlert(
                kind=THRESHOLD, day=snap.day, day_start_us=self.day_start_us(state.day),
                event_start_us=snap.t_us, event_end_us=snap.t_us,
                evidence=self._evidence(THRESHOLD, snap.day, lv,
                                        self._trend(state, state.day - 1)))]
        return RiskUpdate(snap, daily, alerts)

    def _advance(self, state: FallRiskState, day: int
                 ) -> tuple[list[DailyRiskScore], list[RiskAlert]]:
        """Move the open day forward to ``day`` (never back), closing the open one."""
        if state.day is None:
            state.day = day
            return [], []
        if day <= state.day:
            return [], []
        daily: list[DailyRiskScore] = []
        alerts: list[RiskAlert] = []
        closing = state.day
        agg = state.find(closing)
        if agg is not None:
            lv = self._level(state, closing)
            agg.score = lv.score
            trend = self._trend(state, closing)
            iso = self.day_iso(closing)
            daily.append(DailyRiskScore(
                day=iso, day_start_us=self.day_start_us(closing), score=lv.score,
                components=lv.points, inputs=lv.inputs, n_bouts=lv.n_bouts,
                n_near_falls=lv.n_near_falls, n_falls=lv.n_falls,
                trend_per_day=None if trend is None else trend.slope_per_day,
                trend_r2=None if trend is None else trend.r2,
                n_trend_days=0 if trend is None else trend.n_days))
            recent = (state.last_rise_alert_day is not None
                      and closing - state.last_rise_alert_day < TREND_DAYS)
            if self.policy.rising(trend) and not recent:
                state.last_rise_alert_day = closing
                alerts.append(RiskAlert(
                    kind=WEEKLY_RISE, day=iso, day_start_us=self.day_start_us(closing),
                    event_start_us=self.day_start_us(closing - TREND_DAYS + 1),
                    event_end_us=self.day_start_us(closing + 1) - 1,
                    evidence=self._evidence(WEEKLY_RISE, iso, lv, trend)))
        state.day = day
        state.days = [a for a in state.days if a.day > day - self.history_days]
        return daily, alerts

    def _evidence(self, kind: str, day_iso: str, lv: _Level,
                  trend: Trend | None) -> dict[str, float | str]:
        ev: dict[str, float | str] = {
            "kind": kind, "day": day_iso, "score": round(lv.score, 1),
            "threshold": self.policy.threshold,
        }
        for name, pts in lv.points.items():
            ev[f"pts_{name}"] = round(pts, 2)
        for name, value in lv.inputs.items():
            if value is not None:
                ev[name] = round(value, 3)
        ev["n_bouts"] = lv.n_bouts
        ev["n_near_falls"] = lv.n_near_falls
        ev["n_falls"] = lv.n_falls
        if trend is not None:
            ev["trend_per_day"] = round(trend.slope_per_day, 3)
            ev["trend_r2"] = round(trend.r2, 3)
            ev["n_trend_days"] = trend.n_days
        if kind == WEEKLY_RISE:
            ev["weekly_rise"] = self.policy.weekly_rise
        return ev
