"""Analytic tests of the fall-risk score: formula, directions, days, trend, alerts, state."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from justwalk.falls import EventType, FallEvent
from justwalk.gait.pipeline import BoutResult, GaitParameters
from justwalk.records import AlertRecord
from justwalk.risk import (
    COMPONENTS,
    US_PER_DAY,
    BoutSummary,
    DailyRiskScore,
    FallRiskModel,
    FallRiskScorer,
    FallRiskState,
    RiskAlertPolicy,
    RiskScore,
    fit_trend,
)

DAY0 = 19_800  # 2024-03-18, days since the epoch
H_US = 3_600_000_000


def t(day: int, hour: float) -> int:
    """Device time (us) at ``hour`` of UTC day DAY0 + ``day``."""
    return (DAY0 + day) * US_PER_DAY + round(hour * H_US)


def bout(start_us: int, *, speed: float = 1.3, cv: float = 1.5, asym: float = 1.0,
         duration_s: float = 60.0, n_steps: int = 100) -> BoutSummary:
    return BoutSummary(start_us, start_us + round(duration_s * 1e6), duration_s, n_steps,
                       speed, cv, asym)


def event(start_us: int, kind: EventType = EventType.NEAR_FALL,
          confidence: float = 0.8) -> FallEvent:
    return FallEvent(kind, start_us, start_us + 1_000_000, start_us + 500_000,
                     start_us + 2_000_000, 25.0, 3.0, 5.0, 6.0, confidence)


def level(scorer: FallRiskScorer, **bout_kw: float) -> float:
    st = scorer.initial_state()
    up = scorer.on_bout(st, bout(t(0, 10), **bout_kw))
    assert up.score is not None
    return up.score.score


# ------------------------------------------------------------------ the formula


def test_fast_regular_walker_without_events_scores_zero():
    sc = FallRiskScorer()
    st = sc.initial_state()
    for k in range(5):
        up = sc.on_bout(st, bout(t(0, 8 + k)))
    assert up.score is not None
    assert up.score.score == 0.0
    assert set(up.score.components) == set(COMPONENTS)
    assert all(v == 0.0 for v in up.score.components.values())
    assert up.score.n_bouts == 5
    assert up.score.inputs["walking_speed_mps"] == pytest.approx(1.3)
    assert up.score.inputs["walking_s"] == pytest.approx(300.0)
    assert up.alerts == []


def test_slow_variable_walker_with_near_falls_scores_high():
    sc = FallRiskScorer()
    st = sc.initial_state()
    sc.on_bout(st, bout(t(0, 8), speed=0.5, cv=8.0, asym=12.0))
    for k in range(3):
        up = sc.on_event(st, event(t(0, 9 + k)))
    assert up.score is not None
    # every component at full weight except falls: 25 + 20 + 10 + 25
    assert up.score.score == pytest.approx(80.0)
    assert up.score.components == pytest.approx(
        {"walking_speed": 25.0, "stride_time_cv": 20.0, "step_time_asymmetry": 10.0,
         "near_falls": 25.0, "falls": 0.0})
    up = sc.on_event(st, event(t(0, 13), EventType.FALL))
    assert up.score is not None and up.score.score == pytest.approx(100.0)
    assert (up.score.n_near_falls, up.score.n_falls) == (3, 1)


def test_hand_computed_intermediate_values():
    # speed 0.8 m/s: half-way 1.0 -> 0.6 => 12.5; CV 4.75 %: half-way 2.5 -> 7.0 => 10;
    # asymmetry 6.5 %: half-way 3 -> 10 => 5; one near-fall: 25/3
    sc = FallRiskScorer()
    st = sc.initial_state()
    sc.on_bout(st, bout(t(0, 8), speed=0.8, cv=4.75, asym=6.5))
    up = sc.on_event(st, event(t(0, 9)))
    assert up.score is not None
    assert up.score.score == pytest.approx(12.5 + 10.0 + 5.0 + 25.0 / 3.0)


def test_bouts_are_weighted_by_duration():
    sc = FallRiskScorer()
    st = sc.initial_state()
    sc.on_bout(st, bout(t(0, 8), speed=1.2, duration_s=30.0))
    up = sc.on_bout(st, bout(t(0, 9), speed=0.6, duration_s=90.0))
    assert up.score is not None
    assert up.score.inputs["walking_speed_mps"] == pytest.approx((1.2 * 30 + 0.6 * 90) / 120)


@pytest.mark.parametrize(("name", "low", "high"), [
    ("speed", 1.2, 0.7),   # slower -> higher
    ("cv", 2.0, 5.0),      # more variable -> higher
    ("asym", 2.0, 8.0),    # more asymmetric -> higher
])
def test_each_gait_component_moves_the_score_in_the_documented_direction(name, low, high):
    sc = FallRiskScorer()
    base = {"speed": 0.9, "cv": 3.0, "asym": 4.0}
    a = level(sc, **{**base, name: low})
    b = level(sc, **{**base, name: high})
    assert b > a


def test_event_components_raise_the_score():
    sc = FallRiskScorer()
    scores = []
    st = sc.initial_state()
    scores.append(level(sc, speed=0.9))
    sc.on_bout(st, bout(t(0, 8), speed=0.9))
    for k, kind in enumerate([EventType.NEAR_FALL, EventType.NEAR_FALL, EventType.FALL]):
        up = sc.on_event(st, event(t(0, 9 + k), kind))
        assert up.score is not None
        scores.append(up.score.score)
    assert scores == sorted(scores) and len(set(scores)) == 4


def test_unknown_gait_gives_zero_points_and_none_inputs():
    sc = FallRiskScorer()
    st = sc.initial_state()
    up = sc.on_event(st, event(t(0, 9)))
    assert up.score is not None
    assert up.score.inputs["walking_speed_mps"] is None
    assert up.score.components["walking_speed"] == 0.0
    assert up.score.score == pytest.approx(25.0 / 3.0)


def test_short_bouts_low_confidence_events_and_duplicates_change_nothing():
    sc = FallRiskScorer()
    st = sc.initial_state()
    assert sc.on_bout(st, bout(t(0, 8), duration_s=5.0)).score is None
    assert sc.on_bout(st, bout(t(0, 8), n_steps=6)).score is None
    assert sc.on_event(st, event(t(0, 8), confidence=0.3)).score is None
    b = bout(t(0, 9), speed=0.7)
    assert sc.on_bout(st, b).score is not None
    assert sc.on_bout(st, b).score is None          # replayed bout
    e = event(t(0, 10))
    assert sc.on_event(st, e).score is not None
    assert sc.on_event(st, e).score is None         # replayed event
    snap = sc.current(st)
    assert snap is not None and (snap.n_bouts, snap.n_near_falls) == (1, 1)


def test_bout_result_from_the_gait_pipeline_is_accepted():
    p = GaitParameters(40, 100.0, 0.6, 1.2, 8.0, 12.0, 0.8, 0.8, 0.6, 0.5)
    b = BoutResult(0, t(0, 8), t(0, 8) + 30_000_000, 0, 3000, 30.0, p, 0, 0.0)
    sc = FallRiskScorer()
    up = sc.on_bout(sc.initial_state(), b)
    assert up.score is not None
    assert up.score.score == pytest.approx(25.0 + 20.0 + 10.0)


def test_model_rejects_weights_not_summing_to_100():
    with pytest.raises(ValueError, match="sum"):
        FallRiskModel(speed_weight_pts=30.0)
    with pytest.raises(ValueError):
        RiskAlertPolicy(threshold=0.0)
    with pytest.raises(ValueError):
        RiskAlertPolicy(min_days=1)


# ------------------------------------------------------------------ days, in event time


def test_day_rollover_follows_event_time_not_wall_time():
    sc = FallRiskScorer()
    st = sc.initial_state()
    up = sc.on_bout(st, bout(t(0, 23.5), speed=0.8))
    assert up.daily == [] and up.score is not None and up.score.day == "2024-03-18"
    # the next bout is 1 h later in device time: the day closes, whatever the wall clock
    up = sc.on_bout(st, bout(t(1, 0.5), speed=0.8))
    assert len(up.daily) == 1
    d = up.daily[0]
    assert d.day == "2024-03-18" and d.day_start_us == t(0, 0)
    assert d.score == pytest.approx(12.5) and d.n_bouts == 1
    assert up.score is not None and up.score.day == "2024-03-19"
    # the gait window (3 days) now holds both bouts
    assert up.score.n_bouts == 2
    # a watermark closes the day without any walking
    up = sc.on_time(st, t(2, 6))
    assert [x.day for x in up.daily] == ["2024-03-19"] and up.score is None
    assert sc.on_time(st, t(2, 7)).daily == []


def test_clinic_utc_offset_moves_the_day_boundary():
    utc = FallRiskScorer()
    cet = FallRiskScorer(utc_offset_min=60)
    assert utc.day_of(t(0, 23.5)) == DAY0
    assert cet.day_of(t(0, 23.5)) == DAY0 + 1          # 00:30 local
    assert cet.day_start_us(DAY0 + 1) == t(0, 23)
    st = cet.initial_state()
    cet.on_bout(st, bout(t(0, 22.5)))
    up = cet.on_bout(st, bout(t(0, 23.5)))
    assert [d.day for d in up.daily] == ["2024-03-18"]


def test_event_window_forgets_old_near_falls():
    sc = FallRiskScorer()
    st = sc.initial_state()
    sc.on_event(st, event(t(0, 9)))
    up = sc.on_bout(st, bout(t(13, 9)))
    assert up.score is not None and up.score.n_near_falls == 1
    up = sc.on_bout(st, bout(t(14, 9)))
    assert up.score is not None and up.score.n_near_falls == 0


def test_late_input_counts_but_too_old_input_is_dropped():
    sc = FallRiskScorer()
    st = sc.initial_state()
    sc.on_bout(st, bout(t(5, 9)))
    up = sc.on_event(st, event(t(4, 9)))     # yesterday: inside the 14-day window
    assert up.score is not None and up.score.n_near_falls == 1
    assert sc.on_event(st, event(t(-20, 9))).score is None
    assert st.n_late_ignored == 1


# ------------------------------------------------------------------ alerts


def test_threshold_crossing_alerts_once_with_hysteresis():
    sc = FallRiskScorer(policy=RiskAlertPolicy(threshold=50.0, hysteresis=5.0))
    st = sc.initial_state()
    # 25 (speed 0.6) + 20 (CV 7) = 45: below
    up = sc.on_bout(st, bout(t(0, 8), speed=0.6, cv=7.0))
    assert up.alerts == []
    up = sc.on_event(st, event(t(0, 9)))               # + 8.33 = 53.3: crosses
    assert [a.kind for a in up.alerts] == ["threshold"]
    a = up.alerts[0]
    assert a.evidence["score"] == pytest.approx(53.3)
    assert a.evidence["pts_near_falls"] == pytest.approx(8.33)
    assert a.evidence["walking_speed_mps"] == pytest.approx(0.6)
    up = sc.on_event(st, event(t(0, 10)))              # 61.7, still above: no new alert
    assert up.alerts == []
    # next day: faster walking dilutes the 3-day gait window; after three 10 s bouts the
    # score is 16.67 + 13.33 + 16.67 = 46.7, inside the band [45, 50): not re-armed
    for k in range(3):
        up = sc.on_bout(st, bout(t(1, 8 + k), speed=1.0, cv=2.5, duration_s=10.0,
                                 n_steps=20))
        assert up.alerts == []
    assert up.score is not None and up.score.score == pytest.approx(46.667, abs=1e-3)
    assert not st.armed
    # back above the threshold: still no alert, because it never fell below 45
    up = sc.on_event(st, event(t(1, 12)))
    assert up.score is not None and up.score.score > 50.0
    assert up.alerts == [] and not st.armed


def test_threshold_rearms_below_the_hysteresis_band_and_alerts_again():
    sc = FallRiskScorer(policy=RiskAlertPolicy(threshold=40.0, hysteresis=5.0),
                        gait_window_days=1)
    st = sc.initial_state()
    up = sc.on_bout(st, bout(t(0, 8), speed=0.6, cv=7.0))     # 45: alert
    assert [a.kind for a in up.alerts] == ["threshold"]
    up = sc.on_bout(st, bout(t(1, 8), speed=0.7, cv=5.2))     # 18.75 + 12 = 30.75: re-arm
    assert up.alerts == [] and st.armed
    up = sc.on_bout(st, bout(t(2, 8), speed=0.6, cv=7.0))     # 45 again: second alert
    assert [a.kind for a in up.alerts] == ["threshold"]


def _week(scorer: FallRiskScorer, speeds: list[float]) -> tuple[FallRiskState, list]:
    st = scorer.initial_state()
    alerts = []
    daily = []
    for d, v in enumerate(speeds):
        up = scorer.on_bout(st, bout(t(d, 10), speed=v))
        alerts += up.alerts
        daily += up.daily
    up = scorer.on_time(st, t(len(speeds), 0))
    return st, [*alerts, *up.alerts], [*daily, *up.daily]


def test_steady_seven_day_rise_alerts():
    # speed falls 0.05 m/s a day: +3.125 points a day, 21.9 points a week (>= 10)
    sc = FallRiskScorer(gait_window_days=1, policy=RiskAlertPolicy(threshold=90.0))
    speeds = [1.0 - 0.05 * d for d in range(7)]
    _, alerts, daily = _week(sc, speeds)
    assert [d.score for d in daily] == pytest.approx([3.125 * d for d in range(7)])
    assert daily[-1].trend_per_day == pytest.approx(3.125)
    assert daily[-1].trend_r2 == pytest.approx(1.0)
    rises = [a for a in alerts if a.kind == "weekly_rise"]
    # min_days = 5: the rise is first recognised when day 4 (the 5th score) closes,
    # and not repeated within the week
    assert len(rises) == 1 and rises[0].day == "2024-03-22"
    assert rises[0].evidence["trend_per_day"] == pytest.approx(3.125)


def test_steady_rise_with_default_windows_alerts():
    sc = FallRiskScorer()
    _, alerts, _ = _week(sc, [1.0 - 0.05 * d for d in range(7)])
    assert any(a.kind == "weekly_rise" for a in alerts)


def test_flat_week_and_small_or_unsteady_changes_do_not_alert():
    sc = FallRiskScorer(gait_window_days=1)
    _, alerts, daily = _week(sc, [0.8] * 7)
    assert alerts == [] and daily[-1].trend_per_day == pytest.approx(0.0)
    # a slow drift: 1 point/day would be 7/week < 10
    _, alerts, _ = _week(sc, [1.0 - 0.016 * d for d in range(7)])
    assert [a for a in alerts if a.kind == "weekly_rise"] == []
    # noise around a flat level
    _, alerts, _ = _week(sc, [0.80, 0.95, 0.75, 0.92, 0.78, 0.93, 0.80])
    assert [a for a in alerts if a.kind == "weekly_rise"] == []
    # one jump on the last day: the slope is steep enough, but R^2 = 9/28 * 7/6 = 0.375
    _, alerts, daily = _week(sc, [1.0] * 6 + [0.6])
    assert daily[-1].trend_per_day is not None and daily[-1].trend_per_day * 7 >= 10.0
    assert daily[-1].trend_r2 == pytest.approx(0.375)
    assert [a for a in alerts if a.kind == "weekly_rise"] == []


def test_fit_trend_is_least_squares():
    tr = fit_trend([(0, 1.0), (1, 3.0), (2, 2.0), (3, 5.0)])
    assert tr is not None
    assert tr.slope_per_day == pytest.approx(1.1)     # sxy 5.5 / sxx 5
    assert tr.r2 == pytest.approx(5.5 ** 2 / (5.0 * 8.75))
    assert fit_trend([(0, 1.0)]) is None


def test_alert_ids_are_stable_and_records_valid():
    sc = FallRiskScorer(policy=RiskAlertPolicy(threshold=40.0))
    runs = []
    for _ in range(2):
        st = sc.initial_state()
        up = sc.on_bout(st, bout(t(0, 8), speed=0.6, cv=7.0))
        runs.append(up.alerts[0])
    assert runs[0] == runs[1]
    rec = runs[0].to_record(clinic_id="c1", patient_id="p1", device_id="d1",
                            session_id="s1", raised_at_us=123)
    assert rec.type == "fall_risk" and rec.severity == "warning"
    assert rec.alert_id == AlertRecord.make_id("p1", "", "fall_risk:threshold", t(0, 0))
    assert rec.alert_id != runs[0].alert_id("p2")
    assert json.loads(rec.to_json())["evidence"]["score"] == pytest.approx(45.0)


# ------------------------------------------------------------------ state


def test_state_round_trip_is_exact_and_resumes_identically():
    sc = FallRiskScorer()
    inputs = [("b", bout(t(d, 9 + k), speed=1.0 - 0.03 * d, cv=2.0 + 0.4 * d))
              for d in range(9) for k in range(3)]
    inputs += [("e", event(t(d, 15))) for d in (2, 5, 6)]
    inputs.sort(key=lambda x: x[1].start_us)

    def feed(scorer, st, items):
        out = []
        for kind, x in items:
            up = scorer.on_bout(st, x) if kind == "b" else scorer.on_event(st, x)
            out.append(up)
        return out

    st_a = sc.initial_state()
    ref = feed(sc, st_a, inputs)
    st_b = sc.initial_state()
    half = len(inputs) // 2
    first = feed(sc, st_b, inputs[:half])
    d = st_b.to_dict()
    restored = FallRiskState.from_dict(json.loads(json.dumps(d)))
    assert restored == st_b and restored.to_dict() == d
    second = feed(sc, restored, inputs[half:])
    assert first + second == ref
    assert restored == st_a
    # output records round-trip too
    snap = ref[-1].score
    assert snap is not None
    assert RiskScore.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    daily = [x for u in ref for x in u.daily]
    assert len(daily) == 8
    for x in daily:
        assert DailyRiskScore.from_dict(json.loads(json.dumps(x.to_dict()))) == x
    assert len(st_a.days) <= sc.history_days


def test_risk_package_imports_no_io_library():
    code = (
        "import sys, justwalk.risk;"
        "bad = [m for m in ('aiokafka', 'faust', 'aiohttp', 'sinks', 'ingest',"
        " 'asyncio', 'http.client', 'urllib3', 'requests') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
