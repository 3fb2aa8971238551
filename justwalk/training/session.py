"""One training session as a pure reducer with a small serialisable state.

``TrainingCore.start(plan, start_us)`` makes the state; then, in the order the processor
meets them, ``on_step`` (each released step), ``on_fall_event`` (near-falls and falls),
``on_time`` (the device time the session's data has reached), ``stop`` (the device's stop,
at its device time) and ``close`` (the session ended or went quiet without a stop). Each
returns a ``TrainingOutput``: feedback decisions, minutes made final and, once, the result.

Event time only. Steps are released by the gait pipeline a few seconds after their contact
(bout decisions hold them up to ~2 s plus the detector's look-ahead), so a minute, and the
session, are final ``settle_s`` of device time after their end: later steps of that time
are ignored. The same chunks therefore give the same minutes, feedback and result, live or
replayed. A timed test (2MWT/6MWT) stops itself at its duration; an IMU-timed T25FW when
its steps cover 7.62 m; with a measured course the T25FW is timed by the device's start
and stop (gates), and a 2MWT/6MWT's distance is the course's laps (counted by the turns
at its ends, ``on_turn``) plus the IMU distance of the last, partly walked one (per-minute
values stay IMU). Only steps with start_us <= t < stop count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from justwalk.training import feedback as fb
from justwalk.training import scores
from justwalk.training.base import (
    MINUTE_US,
    T25FW_DISTANCE_M,
    Feedback,
    MinuteValues,
    Plan,
    SessionKind,
    Status,
    Step,
    WalkResult,
)

STATE_VERSION = 1
RECENT_STEPS = 24
LAP_TURN_DEG = 135.0
"""A turn of at least this much ends a lap of a measured course (a U-turn is ~180 deg; the
gait core's turns, ``justwalk.gait.turns``, start at 45 deg)."""


@dataclass(slots=True)
class TrainingOutput:
    """What one input decided."""

    feedback: list[Feedback] = field(default_factory=list)
    minutes: list[MinuteValues] = field(default_factory=list)
    result: WalkResult | None = None

    def extend(self, other: TrainingOutput) -> None:
        """Append ``other``'s decisions."""
        self.feedback += other.feedback
        self.minutes += other.minutes
        if other.result is not None:
            self.result = other.result


@dataclass(slots=True)
class TrainingState:
    """Everything one session's training core remembers (``pack``: a short list)."""

    plan: Plan
    start_us: int
    stop_us: int | None = None
    stop_reason: str | None = None
    horizon_us: int = 0
    n_steps: int = 0
    distance_m: float = 0.0
    n_len: int = 0
    sum_len_m: float = 0.0
    stride_n: int = 0
    stride_sum_s: float = 0.0
    stride_sumsq_s2: float = 0.0
    minute_acc: list[list[float]] = field(default_factory=list)
    """[distance, steps] per minute not yet final."""
    minutes: list[MinuteValues] = field(default_factory=list)
    """Minutes made final so far."""
    last_step_us: int | None = None
    recent_step_s: list[float] = field(default_factory=list)
    out_run: int = 0
    last_cue_us: int | None = None
    band_steps: int = 0
    in_band_steps: int = 0
    near_falls: int = 0
    falls: int = 0
    fatigue_said: bool = False
    next_progress_us: int = 0
    crossing_us: int | None = None
    done: bool = False
    laps: int = 0
    """Turns at the course's ends so far (timed test on a measured course)."""
    lap_distance_m: float = 0.0
    """IMU distance at the last of them."""
    recent_cum: list[list[float]] = field(default_factory=list)
    """[t_us, IMU distance after it] of the last ``RECENT_STEPS`` steps (turns are known a
    few steps late)."""

    def pack(self) -> list[Any]:
        """Msgpack-ready form."""
        return [STATE_VERSION, self.plan.to_dict(), self.start_us, self.stop_us,
                self.stop_reason, self.horizon_us, self.n_steps, self.distance_m, self.n_len,
                self.sum_len_m, self.stride_n, self.stride_sum_s, self.stride_sumsq_s2,
                [x for acc in self.minute_acc for x in acc],
                [[m.minute, m.duration_s, m.distance_m, m.steps, m.speed_mps, m.cadence_spm]
                 for m in self.minutes],
                self.last_step_us, self.recent_step_s, self.out_run, self.last_cue_us,
                self.band_steps, self.in_band_steps, self.near_falls, self.falls,
                self.fatigue_said, self.next_progress_us, self.crossing_us, self.done,
                self.laps, self.lap_distance_m, [x for r in self.recent_cum for x in r]]

    @classmethod
    def unpack(cls, obj: list[Any]) -> TrainingState:
        """Inverse of ``pack``; ValueError for a state this release cannot read."""
        if not obj or obj[0] != STATE_VERSION:
            raise ValueError(f"training state version {obj[:1]!r} is not {STATE_VERSION}")
        (_, plan, start, stop, reason, horizon, n_steps, dist, n_len, sum_len, sn, ss, ssq,
         acc, minutes, last, recent, run, last_cue, band, in_band, nf, falls, said, nxt,
         crossing, done, laps, lap_m, cum) = obj
        return cls(Plan.from_dict(plan), int(start), stop, reason, int(horizon), int(n_steps),
                   float(dist), int(n_len), float(sum_len), int(sn), float(ss), float(ssq),
                   [[float(acc[i]), float(acc[i + 1])] for i in range(0, len(acc), 2)],
                   [MinuteValues(int(m[0]), float(m[1]), float(m[2]), int(m[3]),
                                 float(m[4]), float(m[5])) for m in minutes],
                   last, [float(x) for x in recent], int(run), last_cue, int(band),
                   int(in_band), int(nf), int(falls), bool(said), int(nxt), crossing,
                   bool(done), int(laps), float(lap_m),
                   [[float(cum[i]), float(cum[i + 1])] for i in range(0, len(cum), 2)])


def plan_laps(plan: Plan) -> bool:
    """A timed test on a measured course: its distance counts laps."""
    return plan.course_length_m is not None and plan.kind.test_duration_s is not None


class TrainingCore:
    """Scores a training session and decides its feedback (see the module docstring).

    ``settle_s``: device time after which a minute is final (longer than the gait
    pipeline's step release delay); ``cue_steps``: steps out of band before a cue, and the
    steps of the running cadence; ``cue_every_s``: least time between cues;
    ``fatigue_decline_pct``: the fatigue rule's decline (``feedback``).
    """

    def __init__(self, *, settle_s: float = 4.0, cue_steps: int = 4,
                 cue_every_s: float = 10.0, fatigue_decline_pct: float = 15.0) -> None:
        if settle_s < 0 or cue_steps < 1 or cue_every_s < 0 or fatigue_decline_pct <= 0:
            raise ValueError("settle_s, cue_every_s >= 0, cue_steps >= 1, "
                             "fatigue_decline_pct > 0")
        self.settle_s = settle_s
        self.cue_steps = cue_steps
        self.cue_every_s = cue_every_s
        self.fatigue_decline_pct = fatigue_decline_pct

    def start(self, plan: Plan, start_us: int) -> TrainingState:
        """The state of a session started at device time ``start_us``."""
        return TrainingState(plan=plan, start_us=start_us, horizon_us=start_us,
                             next_progress_us=start_us + round(plan.progress_every_s * 1e6))

    # ------------------------------------------------------------------ inputs

    def on_step(self, state: TrainingState, step: Step) -> TrainingOutput:
        """Count one released step (ignored outside the session or in a final minute)."""
        out = TrainingOutput()
        t = step.t_us
        if state.done or t < state.start_us or (state.stop_us is not None
                                                and t >= state.stop_us):
            return out
        m = (t - state.start_us) // MINUTE_US
        if m < len(state.minutes):
            return out  # that minute is final already
        length = step.step_length_m
        if math.isfinite(length) and length >= 0:
            state.n_len += 1
            state.sum_len_m += length
        else:
            length = state.sum_len_m / state.n_len if state.n_len else 0.0
        prev_dist, prev_t = state.distance_m, state.last_step_us
        state.n_steps += 1
        state.distance_m += length
        state.last_step_us = t
        if plan_laps(state.plan):
            state.recent_cum = [*state.recent_cum, [float(t), state.distance_m]][-RECENT_STEPS:]
        while len(state.minutes) + len(state.minute_acc) <= m:
            state.minute_acc.append([0.0, 0.0])
        acc = state.minute_acc[m - len(state.minutes)]
        acc[0] += length
        acc[1] += 1
        st = step.stride_time_s
        if math.isfinite(st) and st > 0:
            state.stride_n += 1
            state.stride_sum_s += st
            state.stride_sumsq_s2 += st * st
        self._cadence(state, step, out)
        plan = state.plan
        if (plan.kind is SessionKind.T25FW and plan.course_length_m is None
                and state.crossing_us is None and state.distance_m >= T25FW_DISTANCE_M
                and length > 0):
            t_prev = state.start_us if prev_t is None else prev_t
            frac = (T25FW_DISTANCE_M - prev_dist) / length
            state.crossing_us = round(t_prev + frac * (t - t_prev))
            state.stop_us, state.stop_reason = state.crossing_us + 1, "distance"
            out.feedback.append(fb.test_end(t, "distance"))
        return out

    def on_fall_event(self, state: TrainingState, t_us: int, event: str) -> TrainingOutput:
        """A near-fall (``near_fall``) or fall (``fall``) starting at ``t_us``."""
        out = TrainingOutput()
        if state.done or t_us < state.start_us or (state.stop_us is not None
                                                   and t_us >= state.stop_us):
            return out
        if event == "fall":
            state.falls += 1
        else:
            state.near_falls += 1
        out.feedback.append(fb.safety(t_us, event))
        return out

    def on_turn(self, state: TrainingState, t_us: int, angle_deg: float) -> TrainingOutput:
        """A turn (gait core) starting at ``t_us``: a lap's end on a measured course.

        Counted for a 2MWT/6MWT with a ``course_length_m`` when it turns the walker round
        (``|angle| >= LAP_TURN_DEG``) inside the test.
        """
        plan = state.plan
        if (not state.done and plan_laps(plan) and abs(angle_deg) >= LAP_TURN_DEG
                and t_us >= state.start_us
                and (state.stop_us is None or t_us < state.stop_us)):
            state.laps += 1
            before = [d for t, d in state.recent_cum if t < t_us]
            state.lap_distance_m = before[-1] if before else (
                state.recent_cum[0][1] if state.recent_cum else state.distance_m)
        return TrainingOutput()

    def stop(self, state: TrainingState, t_us: int) -> TrainingOutput:
        """The device stopped the session at device time ``t_us`` (once; later stops no-op)."""
        if state.stop_us is None and not state.done:
            state.stop_us, state.stop_reason = max(t_us, state.start_us), "device"
        return self.on_time(state, state.horizon_us)

    def on_time(self, state: TrainingState, horizon_us: int) -> TrainingOutput:
        """The session's data reached device time ``horizon_us``: minutes, progress, end."""
        out = TrainingOutput()
        if state.done:
            return out
        state.horizon_us = max(state.horizon_us, horizon_us)
        h, plan = state.horizon_us, state.plan
        duration = plan.kind.test_duration_s
        if duration is not None and state.stop_us is None:
            end = state.start_us + round(duration * 1e6)
            if h >= end:
                state.stop_us, state.stop_reason = end, "duration"
                out.feedback.append(fb.test_end(end, "duration"))
        if h >= state.next_progress_us and (state.stop_us is None or h < state.stop_us):
            out.feedback.append(fb.progress(h, (h - state.start_us) / 1e6, state.distance_m,
                                            state.n_steps))
            every = round(plan.progress_every_s * 1e6)
            state.next_progress_us += every * ((h - state.next_progress_us) // every + 1)
        self._settle(state, h - round(self.settle_s * 1e6), out)
        if state.stop_us is not None and h - round(self.settle_s * 1e6) >= state.stop_us:
            out.result = self._finish(state)
        return out

    def close(self, state: TrainingState, *, ended: bool = False) -> TrainingOutput:
        """The session's data ended: finish with what there is.

        Without a stop, the session ends at its newest data: as stopped by the device when
        its recording ``ended`` (the last chunk), else as disconnected (a quiet device).
        """
        out = TrainingOutput()
        if state.done:
            return out
        if state.stop_us is None:
            state.stop_us = state.horizon_us
            state.stop_reason = "device" if ended else "disconnected"
        self._settle(state, max(state.stop_us, state.horizon_us), out)
        out.result = self._finish(state)
        return out

    # ------------------------------------------------------------------ internals

    def _cadence(self, state: TrainingState, step: Step, out: TrainingOutput) -> None:
        plan = state.plan
        st = step.step_time_s
        if not (plan.has_band and math.isfinite(st) and 0.2 <= st <= 2.0):
            return
        state.recent_step_s = [*state.recent_step_s, st][-self.cue_steps:]
        if len(state.recent_step_s) < self.cue_steps:
            return
        cadence = fb.running_cadence_spm(state.recent_step_s)
        pos = fb.band_position(plan, cadence)
        state.band_steps += 1
        state.in_band_steps += pos == 0
        state.out_run = 0 if pos == 0 else (state.out_run + pos if state.out_run * pos >= 0
                                            else pos)
        every = round(self.cue_every_s * 1e6)
        if (plan.cadence_cue and abs(state.out_run) >= self.cue_steps
                and (state.last_cue_us is None or step.t_us - state.last_cue_us >= every)):
            state.last_cue_us = step.t_us
            out.feedback.append(fb.cadence_cue(plan, step.t_us, cadence, pos))

    def _settle(self, state: TrainingState, settled_us: int, out: TrainingOutput) -> None:
        """Make final every minute that ends at or before ``settled_us``."""
        while True:
            m = len(state.minutes)
            lo = state.start_us + m * MINUTE_US
            hi = lo + MINUTE_US
            if state.stop_us is not None:
                if lo >= state.stop_us:
                    return
                hi = min(hi, state.stop_us)
            if hi > settled_us:
                return
            dist, n = state.minute_acc.pop(0) if state.minute_acc else (0.0, 0.0)
            mv = scores.minute_values(m + 1, (hi - lo) / 1e6, dist, int(n))
            state.minutes.append(mv)
            out.minutes.append(mv)
            first = state.minutes[0]
            if (m >= 1 and mv.duration_s >= 59.999 and not state.fatigue_said
                    and state.plan.rest_suggestion):
                decline = fb.fatigue_decline(first, mv, self.fatigue_decline_pct)
                if decline is not None:
                    state.fatigue_said = True
                    out.feedback.append(fb.fatigue(hi, decline))

    def _finish(self, state: TrainingState) -> WalkResult:
        state.done = True
        plan = state.plan
        assert state.stop_us is not None
        start, end = state.start_us, state.stop_us
        duration_s = max(end - start, 0) / 1e6
        mean_len = state.sum_len_m / state.n_len if state.n_len else math.nan
        rel = scores.relative_distance_uncertainty(mean_len)
        kind = plan.kind
        distance, source = state.distance_m, "imu"
        dist_unc = None if rel is None else distance * rel
        t25 = t25_unc = None
        if plan.course_length_m is not None and state.laps and kind.test_duration_s:
            # laps of the measured course, the last one partly walked (IMU, at most a lap)
            partial = min(max(state.distance_m - state.lap_distance_m, 0.0),
                          plan.course_length_m)
            distance, source = state.laps * plan.course_length_m + partial, "course"
            dist_unc = None if rel is None else partial * rel
        if kind is SessionKind.T25FW:
            gated = plan.course_length_m is not None
            if gated:
                assert plan.course_length_m is not None
                distance, source, dist_unc = plan.course_length_m, "course", 0.0
                t25 = duration_s if state.stop_reason == "device" else None
            elif state.crossing_us is not None:
                distance, dist_unc = T25FW_DISTANCE_M, T25FW_DISTANCE_M * (rel or 0.0)
                t25 = (state.crossing_us - start) / 1e6
                duration_s = t25
            if t25 is not None:
                t25 = round(t25, 3)
                t25_unc = scores.t25fw_time_uncertainty_s(t25, rel, gated=gated)
        speed = distance / duration_s if duration_s > 0 else None
        if speed is None:
            speed_unc = None
        elif source == "course" and kind is not SessionKind.T25FW:
            speed_unc = None if dist_unc is None else round(dist_unc / duration_s, 4)
        elif source == "course":
            speed_unc = round(speed * scores.GATE_TIMING_UNCERTAINTY_S / duration_s, 4)
        else:
            speed_unc = None if rel is None else round(speed * rel, 4)
        status = self._status(state, duration_s)
        dwi = dwi2 = fatigable = None  # only a test walked to its end has a DWI
        if status is Status.COMPLETED and kind in (SessionKind.TWO_MWT, SessionKind.SIX_MWT):
            dwi = scores.dwi_pct(state.minutes, baseline_minute=1)
        if status is Status.COMPLETED and kind is SessionKind.SIX_MWT:
            dwi2 = scores.dwi_pct(state.minutes, baseline_minute=2)
            fatigable = scores.fatigability(dwi)
        return WalkResult(
            kind=kind, status=status, start_us=start, end_us=end,
            duration_s=round(duration_s, 6), distance_m=round(distance, 4),
            distance_uncertainty_m=None if dist_unc is None else round(dist_unc, 4),
            distance_source=source, steps=state.n_steps,
            mean_speed_mps=None if speed is None else round(speed, 4),
            speed_uncertainty_mps=speed_unc,
            mean_cadence_spm=round(state.n_steps * 60.0 / duration_s, 3)
            if duration_s > 0 else None,
            stride_time_cv_pct=scores.cv_pct(state.stride_n, state.stride_sum_s,
                                             state.stride_sumsq_s2),
            near_falls=state.near_falls, adherence_pct=self._adherence(state, duration_s),
            cadence_in_band_pct=round(100.0 * state.in_band_steps / state.band_steps, 2)
            if state.band_steps else None,
            t25fw_time_s=t25, t25fw_time_uncertainty_s=t25_unc, dwi_pct=dwi,
            dwi_minute2_pct=dwi2, fatigability=fatigable, minutes=tuple(state.minutes))

    @staticmethod
    def _status(state: TrainingState, duration_s: float) -> Status:
        reason, plan = state.stop_reason, state.plan
        if reason == "disconnected":
            return Status.DISCONNECTED
        if reason in ("duration", "distance"):
            return Status.COMPLETED
        if plan.kind is SessionKind.T25FW:  # stopped by the device
            return Status.COMPLETED if plan.course_length_m is not None \
                else Status.STOPPED_EARLY
        test = plan.kind.test_duration_s
        if test is not None and duration_s < test:
            return Status.STOPPED_EARLY
        return Status.COMPLETED

    @staticmethod
    def _adherence(state: TrainingState, duration_s: float) -> float | None:
        """Share of the prescription done: its time, else its distance (capped at 100 %)."""
        plan = state.plan
        if plan.kind is SessionKind.T25FW:
            done = state.crossing_us is not None or (plan.course_length_m is not None
                                                     and state.stop_reason == "device")
            return 100.0 if done else round(min(state.distance_m / T25FW_DISTANCE_M, 1) * 100,
                                            2)
        want = plan.effective_duration_s
        if want:
            return round(min(duration_s / want, 1.0) * 100.0, 2)
        if plan.target_distance_m:
            return round(min(state.distance_m / plan.target_distance_m, 1.0) * 100.0, 2)
        return None
