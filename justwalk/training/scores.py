"""Walk-test scores as pure functions of steps and minute values (no state, no I/O).

Distance is the sum of the released steps' lengths (the gait core's inverted-pendulum step
lengths, ``justwalk.gait.spatial``); a step without a length (the first of a bout) counts
with the mean length of the session's steps before it. Uncertainties: ``base`` explains the
rule (the evaluation's stride-length MAE relative to the session's stride length).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from justwalk.training.base import (
    DWI_FATIGABILITY_PCT,
    GATE_TIMING_UNCERTAINTY_S,
    STRIDE_LENGTH_MAE_M,
    T25FW_DISTANCE_M,
    T25FW_MEANINGFUL_CHANGE_PCT,
    MinuteValues,
    Step,
)


def relative_distance_uncertainty(mean_step_length_m: float) -> float | None:
    """Relative uncertainty of an IMU distance at this mean step length (None: no steps)."""
    if not (math.isfinite(mean_step_length_m) and mean_step_length_m > 0):
        return None
    return STRIDE_LENGTH_MAE_M / (2.0 * mean_step_length_m)


def step_lengths_m(steps: Sequence[Step]) -> list[float]:
    """Each step's length, missing ones replaced by the mean of those before (0 at first)."""
    out: list[float] = []
    total, n = 0.0, 0
    for s in steps:
        if math.isfinite(s.step_length_m) and s.step_length_m >= 0:
            out.append(s.step_length_m)
            total, n = total + s.step_length_m, n + 1
        else:
            out.append(total / n if n else 0.0)
    return out


def minute_values(minute: int, duration_s: float, distance_m: float,
                  steps: int) -> MinuteValues:
    """Per-minute values: speed = distance / duration, cadence = steps per minute."""
    if duration_s <= 0:
        raise ValueError(f"minute {minute} has no duration")
    return MinuteValues(minute=minute, duration_s=round(duration_s, 6),
                        distance_m=round(distance_m, 4), steps=steps,
                        speed_mps=round(distance_m / duration_s, 4),
                        cadence_spm=round(steps * 60.0 / duration_s, 3))


def dwi_pct(minutes: Sequence[MinuteValues], *, baseline_minute: int = 1) -> float | None:
    """Distance Walked Index: (last full minute - baseline minute) / baseline x 100.

    The last minute is the test's last full one (minute 6 of a 6MWT); None when the test
    has no full minute after the baseline, or the baseline distance is 0.
    """
    full = [m for m in minutes if m.duration_s >= 59.999]
    by_minute = {m.minute: m for m in full}
    base = by_minute.get(baseline_minute)
    if base is None or base.distance_m <= 0 or not full or full[-1].minute <= baseline_minute:
        return None
    return round((full[-1].distance_m - base.distance_m) / base.distance_m * 100.0, 2)


def fatigability(dwi: float | None) -> bool | None:
    """DWI at or below -15 %: walking-related fatigability (None without a DWI)."""
    return None if dwi is None else dwi <= DWI_FATIGABILITY_PCT


def crossing_time_us(steps: Sequence[Step], start_us: int,
                     distance_m: float = T25FW_DISTANCE_M) -> int | None:
    """Device time at which the steps after ``start_us`` have covered ``distance_m``.

    Linear within the step that crosses it: a step of length L ending at t_k (its initial
    contact) started at the previous contact t_{k-1} (``start_us`` for the first).
    """
    steps = [s for s in steps if s.t_us >= start_us]
    covered, t_prev = 0.0, start_us
    for s, length in zip(steps, step_lengths_m(steps), strict=True):
        if length > 0 and covered + length >= distance_m:
            frac = (distance_m - covered) / length
            return round(t_prev + frac * (s.t_us - t_prev))
        covered += length
        t_prev = s.t_us
    return None


def t25fw_time_uncertainty_s(time_s: float, rel_distance: float | None, *,
                             gated: bool) -> float | None:
    """Uncertainty of a T25FW time: gate timing, or the distance's error at the test's speed.

    An IMU-timed walk crosses 7.62 m early or late by the distance error over the speed,
    i.e. the time's relative error equals the distance's.
    """
    if gated:
        return GATE_TIMING_UNCERTAINTY_S
    if rel_distance is None:
        return None
    return round(time_s * rel_distance, 3)


def t25fw_change_pct(previous_s: float, current_s: float) -> tuple[float, bool]:
    """Change of a T25FW time (+: slower) and whether it is clinically meaningful (>= 20 %)."""
    if previous_s <= 0 or current_s <= 0:
        raise ValueError("T25FW times must be positive")
    change = (current_s - previous_s) / previous_s * 100.0
    return round(change, 2), abs(change) >= T25FW_MEANINGFUL_CHANGE_PCT


def cv_pct(n: int, total: float, total_sq: float) -> float | None:
    """Coefficient of variation (sample SD / mean, %) from running sums; None below 2."""
    if n < 2 or total <= 0:
        return None
    mean = total / n
    var = max(total_sq - n * mean * mean, 0.0) / (n - 1)
    return round(math.sqrt(var) / mean * 100.0, 3)
