"""Gait parameters of the open walking bout, accumulated step by step (no I/O).

A bout's parameters are means over all its steps and strides (``pipeline`` module
docstring), and a bout can last many minutes. Instead of keeping every step until the bout
ends, each released step adds its values to running sums, so a bout's state does not grow
with its length. The definitions are those ``variability`` applies to a list of steps: step
times and strides longer than the limits are left out, cadence is the mean of 120 / stride
time, the stride-time CV uses the sample SD (Welford's running variance, Welford 1962,
Technometrics 4:419-420), the step-time asymmetry compares the mean step times ending on a
left and on a right contact. Sums are plain sequential sums, so a bout's means can differ
from numpy's pairwise-summed ones in the last bits.

``robust`` (``GaitPipeline.robust_params``) Hampel-filters the step times and step lengths
as ``variability.hampel`` does, each value once its two neighbours on either side are known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from justwalk.gait.variability import hampel_value

_HALF = 2
"""Hampel half window (``variability.hampel``'s default)."""


@dataclass
class HampelMean:
    """Running mean of a Hampel-filtered sequence."""

    recent: list[float] = field(default_factory=list)
    """The last ``2 * _HALF`` values."""
    n: int = 0
    total: float = 0.0
    done: int = 0

    def add(self, v: float) -> None:
        self.recent = [*self.recent, v][-2 * _HALF - 1:]
        self.n += 1
        if self.n > _HALF:  # value n - 1 - _HALF has its whole window
            self._finish(self.n - 1 - _HALF)
        self.recent = self.recent[-2 * _HALF:]

    def _finish(self, i: int) -> None:
        first = self.n - len(self.recent)  # index of recent[0]
        lo = max(0, i - _HALF)
        w = np.asarray(self.recent[lo - first: i + _HALF + 1 - first])
        self.total += hampel_value(w, self.recent[i - first])
        self.done += 1

    def mean(self) -> float:
        """Mean of the filtered values, the last ones with their windows clipped."""
        keep = (list(self.recent), self.n, self.total, self.done)
        for i in range(self.done, self.n):
            self._finish(i)
        out = self.total / self.done if self.done else math.nan
        self.recent, self.n, self.total, self.done = keep
        return out

    def pack(self) -> list[Any]:
        return [self.recent, self.n, self.total, self.done]


@dataclass
class RunningParams:
    """Running sums of one bout's step and stride values."""

    bout: int
    n_steps: int = 0
    st: list[float] = field(default_factory=lambda: [0.0, 0])
    """Valid step times: [sum, count]."""
    left: list[float] = field(default_factory=lambda: [0.0, 0])
    right: list[float] = field(default_factory=lambda: [0.0, 0])
    """Valid step times ending on a left / right contact: [sum, count]."""
    sr: list[float] = field(default_factory=lambda: [0.0, 0, 0.0, 0.0])
    """Valid stride times: [sum, count, Welford mean, Welford M2]."""
    cadence: float = 0.0
    """Sum of 120 / stride time."""
    length: list[float] = field(default_factory=lambda: [0.0, 0])
    speed: list[float] = field(default_factory=lambda: [0.0, 0])
    """Finite stride lengths and speeds: [sum, count]."""
    robust_st: HampelMean | None = None
    robust_sl: HampelMean | None = None
    n_turns: int = 0
    turn_angle_deg: float = 0.0
    """Turns already known to be in the bout: how many, sum of absolute angles."""

    def add(self, side: str, step_t: float, stride_t: float, step_len: float,
            stride_len: float, speed: float) -> None:
        """One released step (NaN where a value is not available)."""
        self.n_steps += 1
        isfinite = math.isfinite
        if isfinite(step_t):
            s = self.st
            s[0] += step_t
            s[1] += 1
            s = self.left if side == "left" else self.right
            s[0] += step_t
            s[1] += 1
            if self.robust_st is not None:
                self.robust_st.add(step_t)
        if self.robust_sl is not None and isfinite(step_len):
            self.robust_sl.add(step_len)
        if isfinite(stride_t):
            s = self.sr
            s[0] += stride_t
            s[1] += 1
            delta = stride_t - s[2]
            s[2] += delta / s[1]
            s[3] += delta * (stride_t - s[2])
            self.cadence += 120.0 / stride_t
        if isfinite(stride_len):
            s = self.length
            s[0] += stride_len
            s[1] += 1
        if isfinite(speed):
            s = self.speed
            s[0] += speed
            s[1] += 1

    def values(self) -> dict[str, float]:
        """Cadence, step and stride time, CV, asymmetry, stride length and speed."""
        sr_n = int(self.sr[1])
        stride = self.sr[0] / sr_n if sr_n else math.nan
        asym = math.nan
        if self.n_steps >= 3 and self.left[1] and self.right[1]:
            ml, mr = _mean(self.left), _mean(self.right)
            asym = abs(ml - mr) / (0.5 * (ml + mr)) * 100.0
        out = {
            "cadence_spm": self.cadence / sr_n if sr_n else math.nan,
            "step_time_s": _mean(self.st), "stride_time_s": stride,
            "stride_time_cv_pct": (math.sqrt(self.sr[3] / (sr_n - 1)) / stride * 100.0
                                   if sr_n >= 2 else math.nan),
            "step_time_asymmetry_pct": asym,
            "stride_length_m": _mean(self.length), "walking_speed_mps": _mean(self.speed),
        }
        if self.robust_st is not None and self.robust_sl is not None and self.st[1]:
            # Mobilise-D style (CadFromIc, SlZijlstra): step-level values cleaned with a
            # Hampel filter, so one missed or extra IC does not bias the bout value.
            cadence = 60.0 / self.robust_st.mean()
            stride_length = 2.0 * self.robust_sl.mean()
            out.update(cadence_spm=cadence, stride_length_m=stride_length,
                       walking_speed_mps=stride_length * cadence / 120.0)
        return out

    def pack(self) -> list[Any]:
        """Msgpack-ready form."""
        return [self.bout, self.n_steps, self.st, self.left, self.right, self.sr,
                self.cadence, self.length, self.speed,
                None if self.robust_st is None else self.robust_st.pack(),
                None if self.robust_sl is None else self.robust_sl.pack(),
                self.n_turns, self.turn_angle_deg]

    @classmethod
    def unpack(cls, obj: list[Any]) -> RunningParams:
        """Inverse of ``pack``."""
        bout, n, st, left, right, sr, cadence, length, speed, rst, rsl, n_turns, angle = obj
        return cls(bout, n, list(st), list(left), list(right), list(sr), cadence,
                   list(length), list(speed),
                   None if rst is None else HampelMean(list(rst[0]), *rst[1:]),
                   None if rsl is None else HampelMean(list(rsl[0]), *rsl[1:]),
                   n_turns, angle)


def _mean(s: list[float]) -> float:
    return s[0] / s[1] if s[1] else math.nan
