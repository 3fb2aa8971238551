"""Temporal gait parameters and variability from initial contacts and trunk acceleration.

Pure functions (no state); the streaming pipeline applies them to the steps of a bout or of
a window.

- Step time = time between consecutive ICs; stride time = between ICs two apart (same
  foot). Intervals longer than ``max_stride_time_s`` (pauses) are left out.
- Cadence per bout = mean over strides of ``120 / stride time`` (steps/min), the definition
  the Mobilise-D / INDIP reference uses per walking bout.
- Stride-time coefficient of variation = sample SD / mean of the stride times, in %.
- Step-time asymmetry = ``|mean(left step times) - mean(right step times)|`` divided by their
  mean, in % (a step time belongs to the IC that ends it).
- Step and stride regularity: unbiased autocorrelation of the vertical trunk acceleration at
  the first and second dominant peaks (near one step and one stride of lag), Moe-Nilssen &
  Helbostad (2004), J Biomech 37:121-126.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def step_times_s(ics: Sequence[int], fs: float, max_step_time_s: float = 1.5) -> FloatArray:
    """Valid step times (s) between consecutive ICs."""
    d = np.diff(np.asarray(ics, dtype=np.float64)) / fs
    return d[(d > 0) & (d <= max_step_time_s)]


def stride_times_s(ics: Sequence[int], fs: float, max_stride_time_s: float = 3.0) -> FloatArray:
    """Valid stride times (s) between ICs two apart."""
    t = np.asarray(ics, dtype=np.float64)
    if t.size < 3:
        return np.zeros(0)
    d = (t[2:] - t[:-2]) / fs
    return d[(d > 0) & (d <= max_stride_time_s)]


def hampel(x: FloatArray, half_window: int = 2, n_sigma: float = 3.0) -> FloatArray:
    """Hampel identifier (Hampel 1974; Pearson 2002): replace outliers by the local median.

    A value further than ``n_sigma`` scaled MADs (1.4826 * MAD) from the median of the
    ``2 * half_window + 1`` values centred on it (clipped at the ends) is replaced by that
    median. Mobilise-D smooths step-level cadence and step length the same way
    (mobgap ``HampelFilter(2, 3.0)``), to absorb missed or extra initial contacts.
    NaNs are ignored and kept.
    """
    v = np.asarray(x, dtype=np.float64)
    out = v.copy()
    for i in range(v.size):
        if math.isfinite(v[i]):
            out[i] = hampel_value(v[max(0, i - half_window) : i + half_window + 1],
                                  float(v[i]), n_sigma)
    return out


def hampel_value(window: FloatArray, value: float, n_sigma: float = 3.0) -> float:
    """``value``, or the median of ``window`` (which holds it) if it is an outlier there."""
    w = window[np.isfinite(window)]
    med = float(np.median(w))
    mad = 1.4826 * float(np.median(np.abs(w - med)))
    return med if abs(value - med) > n_sigma * mad else value


def cadence_spm(stride_s: FloatArray) -> float:
    """Mean of ``120 / stride time`` (steps/min); NaN without strides."""
    return float(np.mean(120.0 / stride_s)) if stride_s.size else math.nan


def cv_pct(x: FloatArray) -> float:
    """Coefficient of variation (sample SD / mean) in %; NaN with fewer than 2 values."""
    if x.size < 2:
        return math.nan
    # shifting by the first value first keeps identical values at exactly 0 spread
    return float(np.std(x - x[0], ddof=1) / np.mean(x) * 100.0)


def step_time_asymmetry_pct(ics: Sequence[int], sides: Sequence[str], fs: float,
                            max_step_time_s: float = 1.5) -> float:
    """Left/right step-time asymmetry in % (NaN without steps of both sides)."""
    t = np.asarray(ics, dtype=np.float64)
    if t.size < 3:
        return math.nan
    d = np.diff(t) / fs
    side = np.asarray(sides[1:])
    ok = (d > 0) & (d <= max_step_time_s)
    left = d[ok & (side == "left")]
    right = d[ok & (side == "right")]
    if left.size == 0 or right.size == 0:
        return math.nan
    ml, mr = float(left.mean()), float(right.mean())
    return abs(ml - mr) / (0.5 * (ml + mr)) * 100.0


def regularity(acc_v: FloatArray, step_time_s: float, fs: float) -> tuple[float, float]:
    """(step regularity, stride regularity): unbiased autocorrelation peaks (Moe-Nilssen 2004).

    The autocorrelation is normalised to 1 at lag 0; the step peak is searched within
    [0.5, 1.5] step times of lag, the stride peak within [1.5, 2.5]. NaN when the signal is
    shorter than three strides' worth of lag or the step time is unknown.
    """
    x = np.asarray(acc_v, dtype=np.float64)
    if not math.isfinite(step_time_s) or step_time_s <= 0:
        return math.nan, math.nan
    step = step_time_s * fs
    max_lag = math.ceil(2.5 * step)
    n = x.size
    if n < 2 * max_lag or n < 8:
        return math.nan, math.nan
    x = x - x.mean()
    nfft = 1 << math.ceil(math.log2(2 * n))
    f = np.fft.rfft(x, nfft)
    ac = np.fft.irfft(f * np.conj(f), nfft)[: max_lag + 1]
    if ac[0] <= 0:
        return math.nan, math.nan
    ac = ac / (n - np.arange(max_lag + 1)) / (ac[0] / n)
    lo1, hi1 = int(0.5 * step), math.ceil(1.5 * step)
    lo2, hi2 = int(1.5 * step), max_lag
    return float(ac[lo1 : hi1 + 1].max()), float(ac[lo2 : hi2 + 1].max())
