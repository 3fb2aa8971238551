"""Cadence over event-time windows, from step (initial-contact) times.

One definition serves the stream processor (on detected steps) and the simulator's ground
truth (on true steps), so the two are compared like for like.

Windows are tumbling, aligned to multiples of ``window_us`` since the Unix epoch on the
device clock: window k covers [k * window_us, (k + 1) * window_us). The step intervals that
*end* inside a window belong to it. Intervals longer than ``max_step_time_s`` are pauses,
not steps, and are left out. A window counts as walking when it holds at least
``min_intervals`` step intervals; its cadence is 60 / mean(step interval) in steps/min.
Using the mean interval rather than a step count keeps the estimate free of the +-1 step
quantisation error a count over a few seconds would have (12 steps/min at 5 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MAX_STEP_TIME_S = 2.0
MIN_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class WindowCadence:
    """Cadence result of one window."""

    window_start_us: int
    n_steps: int
    walking: bool
    cadence_spm: float | None
    mean_step_time_s: float | None


def window_start(t_us: int, window_us: int) -> int:
    """Start of the window containing device time ``t_us``."""
    return (t_us // window_us) * window_us


def window_cadence(
    steps_us: npt.ArrayLike,
    window_start_us: int,
    window_us: int,
    *,
    max_step_time_s: float = MAX_STEP_TIME_S,
    min_intervals: int = MIN_INTERVALS,
) -> WindowCadence:
    """Cadence of one window from sorted step times (us).

    ``steps_us`` must contain every step inside the window and the last step before it
    (so that the first interval of the window is known); others are ignored.
    """
    t = np.asarray(steps_us, dtype=np.int64)
    end_us = window_start_us + window_us
    in_window = (t >= window_start_us) & (t < end_us)
    n_steps = int(in_window.sum())
    if t.size < 2:
        return WindowCadence(window_start_us, n_steps, False, None, None)
    intervals_s = np.diff(t) / 1e6
    ends_in = in_window[1:]
    valid = intervals_s[ends_in & (intervals_s <= max_step_time_s) & (intervals_s > 0)]
    if valid.size < min_intervals:
        return WindowCadence(window_start_us, n_steps, False, None, None)
    mean_step = float(valid.mean())
    return WindowCadence(window_start_us, n_steps, True, 60.0 / mean_step, mean_step)


def cadence_windows(
    steps_us: npt.ArrayLike,
    first_us: int,
    last_us: int,
    window_us: int,
    **kwargs: float | int,
) -> list[WindowCadence]:
    """Every window from the one holding ``first_us`` to the one holding ``last_us``."""
    t = np.sort(np.asarray(steps_us, dtype=np.int64))
    out = []
    start = window_start(first_us, window_us)
    while start <= last_us:
        # the window's steps plus the one before it
        lo = int(np.searchsorted(t, start, side="left"))
        hi = int(np.searchsorted(t, start + window_us, side="left"))
        out.append(window_cadence(t[max(lo - 1, 0) : hi], start, window_us, **kwargs))  # type: ignore[arg-type]
        start += window_us
    return out
