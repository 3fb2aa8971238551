"""The Mobilise-D daily digital mobility outcomes (DMOs): which they are and how each is computed.

Definitions follow Mobilise-D's aggregation as mobgap 1.2.0 implements it
(``mobgap.aggregation.MobilisedAggregator``, documented at
https://mobgap.readthedocs.io; Mobilise-D: Kirk et al., Sci Rep 14:1754, 2024, and the
consortium's R aggregation script it reproduces). Read there, written here: nothing is
copied. Per participant and day, over the walking bouts (WBs) of five duration bins:

======== =================== ==========================================================
bin      bouts               DMOs (Mobilise-D name in brackets)
======== =================== ==========================================================
``all``  every WB            count, summed duration, steps and turns; median, P90 and CV
                             of WB duration; mean and CV of cadence and stride duration
``1030`` 10 s < d <= 30 s    count; mean walking speed and stride length
``10``   d > 10 s            count; P90 of walking speed
``30``   d > 30 s            count; mean walking speed, stride length, cadence and stride
                             duration; P90 of speed and cadence; CV of speed and length
``60``   d > 60 s            count
======== =================== ==========================================================

Mobilise-D calls the location statistic of a bin "avg": it is the *mean* for speed,
stride length, cadence and stride duration and the *median* for WB duration; "max" /
"p90" is the 90th percentile (linear interpolation between order statistics, numpy's
default, as mobgap); "var" is the coefficient of variation, sample standard deviation
(n - 1) over the mean. Missing values (NaN: not measured, or implausible, see
``_limits``) are left out of each statistic; a statistic of no values is None; a CV needs
two values. Units: SI and percent, in the names (mobgap gives CVs as ratios and the total
walking duration in minutes; ``Dmo.mobgap_factor`` converts ours to theirs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from justwalk.gait._kernels import _pairwise_sum

if TYPE_CHECKING:
    from justwalk.gait.pipeline import BoutResult

__all__ = ["BINS", "DMOS", "QUANTITIES", "Dmo", "WalkingBout", "compute_dmos"]

QUANTITIES = ("duration_s", "n_steps", "n_turns", "walking_speed_mps", "stride_length_m",
              "cadence_spm", "stride_duration_s")
"""The per-bout values the DMOs are made of (columns of the state's bout table)."""


@dataclass(frozen=True, slots=True)
class WalkingBout:
    """What the DMOs need of one walking bout (NaN: not available)."""

    start_us: int
    duration_s: float
    n_steps: int
    n_turns: int
    walking_speed_mps: float
    stride_length_m: float
    cadence_spm: float
    stride_duration_s: float

    @classmethod
    def from_bout_result(cls, bout: BoutResult) -> WalkingBout:
        """The bout of a ``GaitPipeline`` (stride duration = its mean stride time)."""
        p = bout.params
        return cls(bout.start_us, bout.duration_s, p.n_steps, bout.n_turns,
                   p.walking_speed_mps, p.stride_length_m, p.cadence_spm, p.stride_time_s)

    def row(self) -> list[float]:
        """The bout as a row of ``QUANTITIES``."""
        return [float(getattr(self, q)) for q in QUANTITIES]


BINS: dict[str, Callable[[npt.NDArray[np.float64]], npt.NDArray[np.bool_]]] = {
    "all": lambda d: np.ones(d.shape, dtype=bool),
    "1030": lambda d: (d > 10.0) & (d <= 30.0),
    "10": lambda d: d > 10.0,
    "30": lambda d: d > 30.0,
    "60": lambda d: d > 60.0,
}
"""Duration bins: a mask of the bouts (by duration, s) each one holds."""


@dataclass(frozen=True, slots=True)
class Dmo:
    """One daily outcome: ``stat`` of ``quantity`` over the bouts of bin ``bin``."""

    name: str
    bin: str
    quantity: str
    stat: str
    """count, sum, mean, median, p90 or cv."""
    mobgap_name: str
    mobgap_factor: float = 1.0
    """Ours times this is mobgap's value (units)."""

    @property
    def is_count(self) -> bool:
        """Integer outcomes (counts and sums of counts)."""
        return self.stat == "count" or self.quantity in ("n_steps", "n_turns")


def _d(name: str, bin_: str, quantity: str, stat: str, mobgap: str,
       factor: float = 1.0) -> Dmo:
    return Dmo(name, bin_, quantity, stat, mobgap, factor)


DMOS: tuple[Dmo, ...] = (
    _d("wb_all_n", "all", "duration_s", "count", "wb_all_sum"),
    _d("walkdur_all_s", "all", "duration_s", "sum", "walkdur_all_sum", 1 / 60),
    _d("steps_all_n", "all", "n_steps", "sum", "wbsteps_all_sum"),
    _d("turns_all_n", "all", "n_turns", "sum", "turns_all_sum"),
    _d("wbdur_all_median_s", "all", "duration_s", "median", "wbdur_all_avg"),
    _d("wbdur_all_p90_s", "all", "duration_s", "p90", "wbdur_all_p90"),
    _d("wbdur_all_cv_pct", "all", "duration_s", "cv", "wbdur_all_var", 0.01),
    _d("cadence_all_mean_spm", "all", "cadence_spm", "mean", "cadence_all_avg"),
    _d("strdur_all_mean_s", "all", "stride_duration_s", "mean", "strdur_all_avg"),
    _d("cadence_all_cv_pct", "all", "cadence_spm", "cv", "cadence_all_var", 0.01),
    _d("strdur_all_cv_pct", "all", "stride_duration_s", "cv", "strdur_all_var", 0.01),
    _d("wb_1030_n", "1030", "duration_s", "count", "wb_1030_sum"),
    _d("ws_1030_mean_mps", "1030", "walking_speed_mps", "mean", "ws_1030_avg"),
    _d("strlen_1030_mean_m", "1030", "stride_length_m", "mean", "strlen_1030_avg"),
    _d("wb_10_n", "10", "duration_s", "count", "wb_10_sum"),
    _d("ws_10_p90_mps", "10", "walking_speed_mps", "p90", "ws_10_p90"),
    _d("wb_30_n", "30", "duration_s", "count", "wb_30_sum"),
    _d("ws_30_mean_mps", "30", "walking_speed_mps", "mean", "ws_30_avg"),
    _d("strlen_30_mean_m", "30", "stride_length_m", "mean", "strlen_30_avg"),
    _d("cadence_30_mean_spm", "30", "cadence_spm", "mean", "cadence_30_avg"),
    _d("strdur_30_mean_s", "30", "stride_duration_s", "mean", "strdur_30_avg"),
    _d("ws_30_p90_mps", "30", "walking_speed_mps", "p90", "ws_30_p90"),
    _d("cadence_30_p90_spm", "30", "cadence_spm", "p90", "cadence_30_p90"),
    _d("ws_30_cv_pct", "30", "walking_speed_mps", "cv", "ws_30_var", 0.01),
    _d("strlen_30_cv_pct", "30", "stride_length_m", "cv", "strlen_30_var", 0.01),
    _d("wb_60_n", "60", "duration_s", "count", "wb_60_sum"),
)
"""Every daily DMO, in Mobilise-D's order."""


def _percentile(s: list[float], q: float) -> float:
    """``np.percentile(x, 100 * q)`` of the sorted values ``s``, computed as NumPy does.

    NumPy's "linear" method: the virtual index ``(n - 1) * q`` between two order statistics,
    interpolated from the nearer one (``numpy.lib._function_base_impl._lerp``).
    """
    v = (len(s) - 1) * q
    if v >= len(s) - 1:
        return s[-1]
    i = math.floor(v)
    a, b, t = s[i], s[i + 1], v - i
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def _stat(stat: str, x: npt.NDArray[np.float64]) -> float | None:
    """``stat`` of the finite values ``x`` (float64, contiguous), equal to NumPy's bit for bit.

    The mean sums pairwise as ``np.mean`` does; median and P90 read the sorted values; a CV is
    ``np.std(x, ddof=1) / np.mean(x)``. (Called per DMO on a few hundred values at most: NumPy's
    own functions cost ~30 us a call there, mostly overhead.)
    """
    n = x.size
    if stat == "count":
        return float(n)
    if stat == "sum":
        return float(math.fsum(x))
    if n == 0:
        return None
    if stat in ("median", "p90"):
        s = sorted(x.tolist())
        if stat == "p90":
            return _percentile(s, 0.9)
        h = n // 2
        return s[h] if n % 2 else (s[h - 1] + s[h]) / 2
    mean = _pairwise_sum(x, 0, n) / n
    if stat == "mean":
        return mean
    if stat == "cv":
        if n < 2:
            return None
        d = x - mean
        std = math.sqrt(_pairwise_sum(d * d, 0, n) / (n - 1))
        return std / mean * 100.0 if mean != 0 else None
    raise ValueError(f"unknown statistic {stat!r}")


_COLUMN = {q: i for i, q in enumerate(QUANTITIES)}


def compute_dmos(table: npt.NDArray[np.float64] | Sequence[Sequence[float]],
                 ) -> dict[str, float | None]:
    """Every ``DMOS`` value of one day's bouts (rows of ``QUANTITIES``, implausible = NaN).

    A row whose duration is NaN is no bout (it is left out of every bin).
    """
    t = np.asarray(table, dtype=np.float64).reshape(-1, len(QUANTITIES))
    t = t[np.isfinite(t[:, 0])]
    dur = t[:, 0]
    masks = {name: f(dur) for name, f in BINS.items()}
    values: dict[tuple[str, str], npt.NDArray[np.float64]] = {}
    out: dict[str, float | None] = {}
    for d in DMOS:
        x = values.get((d.bin, d.quantity))
        if x is None:
            col = t[masks[d.bin], _COLUMN[d.quantity]]
            x = values[(d.bin, d.quantity)] = col[np.isfinite(col)]
        out[d.name] = _stat(d.stat, x)
    return out
