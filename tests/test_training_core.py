"""Analytic tests of the training core: hand-made steps, hand-computed scores and feedback."""

from __future__ import annotations

import math

import msgpack
import pytest

from justwalk.training import (
    STRIDE_LENGTH_MAE_M,
    Plan,
    SessionKind,
    Status,
    Step,
    TrainingCore,
    TrainingOutput,
    TrainingState,
    scores,
)

START = 1_000_000_000
SIX_MWT_LENGTHS = [0.70, 0.70, 0.68, 0.65, 0.62, 0.56]
"""Step length (m) per minute: 120 steps a minute of 0.5 s each."""


def six_mwt_steps(lengths: list[float] = SIX_MWT_LENGTHS, step_s: float = 0.5) -> list[Step]:
    per_min = round(60 / step_s)
    out = []
    for m, length in enumerate(lengths):
        for i in range(per_min):
            t = START + round((m * 60 + (i + 0.5) * step_s) * 1e6)
            out.append(Step(t, step_s, length, 2 * step_s))
    return out


def run(core: TrainingCore, state: TrainingState, steps: list[Step], until_us: int, *,
        chunk_s: float = 1.0, lag_s: float = 2.0, stop_at_us: int | None = None,
        repack: bool = False) -> tuple[TrainingState, TrainingOutput]:
    """Feed steps as the processor would: per chunk, the steps released by it, then time."""
    out = TrainingOutput()
    h = START
    pending = list(steps)
    while h < until_us:
        h += round(chunk_s * 1e6)
        while pending and pending[0].t_us <= h - lag_s * 1e6:
            out.extend(core.on_step(state, pending.pop(0)))
        out.extend(core.on_time(state, h))
        if stop_at_us is not None and h >= stop_at_us:
            out.extend(core.stop(state, stop_at_us))
            stop_at_us = None
        if repack:
            state = TrainingState.unpack(msgpack.unpackb(msgpack.packb(state.pack())))
    return state, out


def test_six_minute_walk_distance_minutes_and_dwi() -> None:
    core = TrainingCore()
    plan = Plan(kind=SessionKind.SIX_MWT, progress_every_s=60)
    _, out = run(core, core.start(plan, START), six_mwt_steps(), START + 380_000_000)
    r = out.result
    assert r is not None and r.status is Status.COMPLETED
    assert [m.distance_m for m in r.minutes] == pytest.approx([120 * x for x in SIX_MWT_LENGTHS])
    assert [m.steps for m in r.minutes] == [120] * 6
    assert [m.cadence_spm for m in r.minutes] == pytest.approx([120.0] * 6)
    assert r.minutes[0].speed_mps == pytest.approx(84.0 / 60)
    assert r.distance_m == pytest.approx(120 * sum(SIX_MWT_LENGTHS))
    assert r.duration_s == 360.0 and r.steps == 720
    assert r.mean_speed_mps == pytest.approx(120 * sum(SIX_MWT_LENGTHS) / 360, abs=1e-4)
    assert r.mean_cadence_spm == pytest.approx(120.0)
    assert r.stride_time_cv_pct == pytest.approx(0.0)
    assert r.dwi_pct == pytest.approx((0.56 - 0.70) / 0.70 * 100)  # -20 %
    assert r.dwi_minute2_pct == pytest.approx(-20.0)
    assert r.fatigability is True
    rel = STRIDE_LENGTH_MAE_M / (2 * sum(SIX_MWT_LENGTHS) / 6)
    assert r.distance_uncertainty_m == pytest.approx(r.distance_m * rel, abs=1e-3)
    assert r.adherence_pct == 100.0
    kinds = [f.kind for f in out.feedback]
    assert kinds.count("test_end") == 1 and kinds.count("fatigue") == 1
    fatigue = next(f for f in out.feedback if f.kind == "fatigue")
    assert fatigue.values["minute"] == 6 and fatigue.t_us == START + 360_000_000
    assert fatigue.values["speed_change_pct"] == pytest.approx(-20.0)
    progress = [f for f in out.feedback if f.kind == "progress"]
    assert [f.values["elapsed_s"] for f in progress] == [60.0, 120.0, 180.0, 240.0, 300.0]
    # released with a 2 s lag: at 60 s the steps up to 58 s are in (116 steps of 0.7 m)
    assert progress[0].values["steps"] == 116
    assert progress[0].values["distance_m"] == pytest.approx(81.2)


def test_minute_two_baseline_and_no_fatigability() -> None:
    lengths = [0.60, 0.70, 0.70, 0.70, 0.68, 0.63]  # a slow start, then -10 % vs minute 2
    core = TrainingCore()
    _, out = run(core, core.start(Plan(kind=SessionKind.SIX_MWT), START), six_mwt_steps(lengths),
                 START + 380_000_000)
    r = out.result
    assert r is not None
    assert r.dwi_pct == pytest.approx(5.0)
    assert r.dwi_minute2_pct == pytest.approx(-10.0)
    assert r.fatigability is False
    assert not [f for f in out.feedback if f.kind == "fatigue"]


def test_two_minute_walk_dwi_is_minute_two_against_one() -> None:
    core = TrainingCore()
    _, out = run(core, core.start(Plan(kind=SessionKind.TWO_MWT), START),
                 six_mwt_steps([0.7, 0.63]), START + 130_000_000)
    r = out.result
    assert r is not None and len(r.minutes) == 2 and r.duration_s == 120
    assert r.dwi_pct == pytest.approx(-10.0)
    assert r.dwi_minute2_pct is None and r.fatigability is None


def test_chunking_lag_and_restarts_do_not_change_the_result() -> None:
    core = TrainingCore()
    plan = Plan(kind=SessionKind.SIX_MWT, cadence_low_spm=100, cadence_high_spm=110)
    steps = six_mwt_steps()
    _, a = run(core, core.start(plan, START), steps, START + 380_000_000)
    _, b = run(core, core.start(plan, START), steps, START + 380_000_000, chunk_s=0.4,
               lag_s=3.0, repack=True)
    assert a.result == b.result
    assert [(f.kind, f.t_us) for f in a.feedback if f.kind != "progress"] == \
        [(f.kind, f.t_us) for f in b.feedback if f.kind != "progress"]


def test_stopped_early_keeps_what_was_walked_and_has_no_dwi() -> None:
    core = TrainingCore()
    _, out = run(core, core.start(Plan(kind=SessionKind.SIX_MWT), START), six_mwt_steps(),
                 START + 215_000_000, stop_at_us=START + 200_000_000)
    r = out.result
    assert r is not None and r.status is Status.STOPPED_EARLY
    assert r.duration_s == 200.0
    assert [m.minute for m in r.minutes] == [1, 2, 3, 4] and r.minutes[3].duration_s == 20.0
    assert r.minutes[3].steps == 40 and r.minutes[3].distance_m == pytest.approx(40 * 0.65)
    assert r.steps == 400 and r.dwi_pct is None and r.fatigability is None
    assert r.adherence_pct == pytest.approx(200 / 360 * 100, abs=0.01)


def test_disconnect_finishes_with_the_data_there_is() -> None:
    core = TrainingCore()
    state, out = run(core, core.start(Plan(kind=SessionKind.SIX_MWT), START), six_mwt_steps(),
                     START + 90_000_000)
    assert out.result is None
    closed = core.close(state)
    r = closed.result
    assert r is not None and r.status is Status.DISCONNECTED
    assert r.end_us == START + 90_000_000
    assert r.steps == 176  # released up to 88 s (2 s lag)
    assert [m.minute for m in r.minutes] == [1, 2]
    assert core.close(state).result is None  # finished once


def test_cadence_cue_direction_tempo_and_rate_limit() -> None:
    core = TrainingCore(cue_steps=4, cue_every_s=10)
    plan = Plan(kind=SessionKind.GUIDED_WALK, duration_s=600, cadence_low_spm=100,
                cadence_high_spm=110)
    steps = six_mwt_steps([0.7])  # 120 steps/min: above the band
    _, out = run(core, core.start(plan, START), steps, START + 70_000_000)
    cues = [f for f in out.feedback if f.kind == "cadence_cue"]
    # the 4th step gives the first running cadence; out for 4 running values -> 7th step
    assert cues[0].t_us == steps[6].t_us
    assert cues[0].values == {"direction": "slower", "cadence_spm": 120.0,
                              "band_spm": [100, 110], "metronome_spm": 105.0}
    assert [c.t_us - cues[0].t_us for c in cues[:3]] == [0, 10_000_000, 20_000_000]
    slow = Plan(kind=SessionKind.GUIDED_WALK, cadence_low_spm=130, cadence_high_spm=140,
                metronome_spm=135)
    _, out = run(core, core.start(slow, START), steps, START + 20_000_000)
    cue = next(f for f in out.feedback if f.kind == "cadence_cue")
    assert cue.values["direction"] == "faster" and cue.values["metronome_spm"] == 135


def test_no_cue_inside_the_band_and_in_band_share() -> None:
    core = TrainingCore()
    plan = Plan(kind=SessionKind.GUIDED_WALK, duration_s=60, cadence_low_spm=115,
                cadence_high_spm=125)
    state, out = run(core, core.start(plan, START), six_mwt_steps([0.7]), START + 62_000_000)
    assert not [f for f in out.feedback if f.kind == "cadence_cue"]
    r = core.close(state).result
    assert r is not None and r.cadence_in_band_pct == 100.0


def test_t25fw_timed_by_the_imu() -> None:
    core = TrainingCore()
    steps = [Step(START + round(0.6e6 * i), 0.6, 0.5, 1.2) for i in range(1, 30)]
    _, out = run(core, core.start(Plan(kind=SessionKind.T25FW), START), steps,
                 START + 20_000_000)
    r = out.result
    assert r is not None and r.status is Status.COMPLETED
    # 15 steps cover 7.5 m; the 16th (9.0 -> 9.6 s) crosses 7.62 m 0.12/0.5 of the way
    assert r.t25fw_time_s == pytest.approx(9.144)
    assert r.distance_m == pytest.approx(7.62) and r.steps == 16
    rel = STRIDE_LENGTH_MAE_M / 1.0
    assert r.t25fw_time_uncertainty_s == pytest.approx(9.144 * rel, abs=1e-3)
    assert [f.kind for f in out.feedback] == ["test_end"]


def test_t25fw_with_a_course_is_timed_by_the_gates() -> None:
    core = TrainingCore()
    steps = [Step(START + round(0.6e6 * i), 0.6, 0.5, 1.2) for i in range(1, 30)]
    plan = Plan(kind=SessionKind.T25FW, course_length_m=7.62)
    _, out = run(core, core.start(plan, START), steps, START + 20_000_000,
                 stop_at_us=START + 8_800_000)
    r = out.result
    assert r is not None and r.status is Status.COMPLETED and r.distance_source == "course"
    assert r.t25fw_time_s == 8.8 and r.t25fw_time_uncertainty_s == 0.1
    assert r.mean_speed_mps == pytest.approx(7.62 / 8.8, abs=1e-4)


def test_near_fall_gives_a_safety_message_and_is_counted() -> None:
    core = TrainingCore()
    state = core.start(Plan(kind=SessionKind.FREE_WALK), START)
    assert core.on_fall_event(state, START - 1, "near_fall").feedback == []  # before start
    out = core.on_fall_event(state, START + 5_000_000, "near_fall")
    assert out.feedback[0].kind == "safety" and out.feedback[0].values == {"event": "near_fall"}
    core.on_fall_event(state, START + 6_000_000, "fall")
    r = core.close(state).result
    assert r is not None and r.near_falls == 1 and state.falls == 1


def test_scores_helpers() -> None:
    assert scores.t25fw_change_pct(10.0, 12.0) == (20.0, True)
    assert scores.t25fw_change_pct(10.0, 11.8) == (18.0, False)
    assert scores.fatigability(-15.0) is True and scores.fatigability(-14.9) is False
    assert scores.cv_pct(3, 3.0, 3.0 + 2 * 0.01) == pytest.approx(
        math.sqrt(0.02 / 2 - 0.0) * 100, rel=1e-6)
    lengths = scores.step_lengths_m([Step(1, step_length_m=math.nan), Step(2, step_length_m=0.6),
                                     Step(3), Step(4, step_length_m=0.8)])
    assert lengths == [0.0, 0.6, 0.6, 0.8]
    with pytest.raises(ValueError, match="cadence band"):
        Plan(kind=SessionKind.GUIDED_WALK, cadence_low_spm=110, cadence_high_spm=100)
    with pytest.raises(ValueError):
        Plan(kind="marathon")


def test_kinds_and_statuses_are_the_database_values() -> None:
    from justwalk.db.models import SessionStatus, SessionType

    assert {k.value for k in SessionKind} == {t.value for t in SessionType}
    assert {s.value for s in Status} <= {s.value for s in SessionStatus}


def test_a_recording_that_ends_counts_as_stopped_by_the_device() -> None:
    core = TrainingCore()
    state, _ = run(core, core.start(Plan(kind=SessionKind.SIX_MWT), START), six_mwt_steps(),
                   START + 90_000_000)
    r = core.close(state, ended=True).result
    assert r is not None and r.status is Status.STOPPED_EARLY
    walk = core.start(Plan(kind=SessionKind.GUIDED_WALK, duration_s=600), START)
    r = core.close(walk, ended=True).result
    assert r is not None and r.status is Status.COMPLETED and r.adherence_pct == 0.0


def test_a_six_minute_walk_on_a_measured_course_counts_laps() -> None:
    """30 m corridor: 0.5 m steps every 0.5 s (1 m/s); a U-turn every 30 m (30 s), known
    only 3 s after it starts (the gait core's turn delay)."""
    core = TrainingCore()
    plan = Plan(kind=SessionKind.SIX_MWT, course_length_m=30.0)
    state = core.start(plan, START)
    steps = [Step(START + round(0.5e6 * i), 0.5, 0.5, 1.0) for i in range(1, 740)]
    turns = [START + k * 30_000_000 + 100_000 for k in range(1, 12)]  # 11 turns in 360 s
    out = TrainingOutput()
    for s in steps:
        out.extend(core.on_step(state, s))
        for tt in [x for x in turns if x + 3_000_000 <= s.t_us]:
            core.on_turn(state, tt, 178.0)
            turns.remove(tt)
        core.on_turn(state, s.t_us, 60.0)  # an ordinary turn is no lap
        out.extend(core.on_time(state, s.t_us + 2_000_000))
    r = out.result
    assert r is not None and r.distance_source == "course" and state.laps == 11
    # 11 laps of 30 m, then 29.9 s of the 12th lap: the IMU distance after the 11th turn
    assert r.distance_m == pytest.approx(11 * 30 + 29.5, abs=0.6)
    assert r.distance_uncertainty_m == pytest.approx(29.5 * STRIDE_LENGTH_MAE_M / 1.0, abs=0.1)
    assert [m.distance_m for m in r.minutes] == pytest.approx([60.0] * 6, abs=0.6)  # IMU
