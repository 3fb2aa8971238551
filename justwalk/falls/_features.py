"""Features of a candidate event, computed from block rows (``_frontend``).

All windows are given in seconds relative to the candidate's peak block and converted to
block counts with the stream's block duration, so the same parameters work at any sample
rate. A window that reaches before the start of the history is cut at the start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from justwalk.falls._frontend import (
    AMAX,
    AMAX_OFF,
    AX,
    AZ,
    DV,
    GMAX,
    Blocks,
    FloatArray,
    tilt_deg,
)
from justwalk.falls.base import GRAVITY_MPS2

BASELINE_GROUP_S = 0.5
"""Baselines are medians of maxima over groups of this length (about one step)."""


def n_blocks(blocks: Blocks, seconds: float) -> int:
    """Whole blocks in ``seconds``."""
    return round(seconds / blocks.block_s)


def window(blocks: Blocks, k: int, start_s: float, end_s: float) -> FloatArray:
    """Rows of blocks ``k + start .. k + end`` (end exclusive), clipped to what is known."""
    i0 = k - blocks.first_index + n_blocks(blocks, start_s)
    i1 = k - blocks.first_index + n_blocks(blocks, end_s)
    return blocks.rows[max(i0, 0) : max(i1, 0)]


def baseline(rows: FloatArray, col: int, group: int) -> float:
    """Median over groups of ``group`` blocks of each group's maximum of column ``col``."""
    n = rows.shape[0] // group
    if n == 0:
        return math.nan
    start = rows.shape[0] - n * group  # align groups to the end of the window
    m = np.sort(rows[start:, col].reshape(n, group).max(axis=1))
    return float(m[n // 2]) if n % 2 else float(0.5 * (m[n // 2 - 1] + m[n // 2]))


def posture_tilt(rows: FloatArray) -> float:
    """Trunk tilt (deg from vertical) of the mean specific force over ``rows``."""
    if rows.shape[0] == 0:
        return math.nan
    return tilt_deg(rows[:, AX : AZ + 1].mean(axis=0))


def posture_tilts(rows: FloatArray, group: int) -> FloatArray:
    """Trunk tilt (deg) of the mean specific force of each group of ``group`` blocks.

    Groups are aligned to the end of ``rows``; a shorter remainder at the start is dropped
    (all of ``rows`` makes one group if there are fewer than ``group``).
    """
    n = rows.shape[0] // group
    if n == 0:
        return np.array([posture_tilt(rows)]) if rows.shape[0] else np.empty(0)
    start = rows.shape[0] - n * group
    m = rows[start:, AX : AZ + 1].reshape(n, group, 3).mean(axis=1)
    norm = np.sqrt((m * m).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norm > 1e-9, m[:, 0] / norm, np.nan)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def dominance_blocks(blocks: Blocks, k: int, cap: int) -> int:
    """Blocks on each side of ``k`` that its acceleration peak dominates (at most ``cap``).

    Earlier blocks must be strictly smaller and later ones no larger (the tie rule of
    ``is_local_max``); a side that reaches the start or end of the known rows counts as
    ``cap``. ``is_local_max(blocks, k, h)`` holds exactly when this is at least
    ``n_blocks(blocks, h)`` (for ``n_blocks(h) <= cap`` and ``k`` at least that far from the
    end), so a candidate found with a short half-window can be re-judged for a longer one.
    """
    i = k - blocks.first_index
    a = blocks.rows[:, AMAX]
    v = a[i]
    left = a[max(i - cap, 0) : i][::-1]
    hit = np.flatnonzero(left >= v)
    n_left = int(hit[0]) if hit.size else cap
    hit = np.flatnonzero(a[i + 1 : i + 1 + cap] > v)
    n_right = int(hit[0]) if hit.size else cap
    return min(n_left, n_right)


def velocity_drop_mps(rows: FloatArray) -> float:
    """Largest fall of the velocity proxy ``integral(|a| - g)`` within ``rows`` (>= 0).

    Bourke et al. 2010 integrate ``|a| - g`` over the descent to estimate the downward
    velocity of the trunk before impact; here the largest drop over any sub-interval.
    """
    if rows.shape[0] == 0:
        return 0.0
    c = np.concatenate([[0.0], np.cumsum(rows[:, DV])])
    return float(-(c - np.maximum.accumulate(c)).min())


@dataclass(frozen=True, slots=True)
class Peak:
    """The acceleration peak of a candidate."""

    k: int
    peak_us: int
    acc_mps2: float


def peak_at(blocks: Blocks, k: int) -> Peak:
    """The peak inside block ``k``."""
    row = blocks.rows[k - blocks.first_index]
    return Peak(k, blocks.sample_time_us(k, row[AMAX_OFF]), float(row[AMAX]))


def is_local_max(blocks: Blocks, k: int, half_s: float) -> bool:
    """Block ``k`` holds the largest acceleration within +-``half_s`` (ties: earliest)."""
    h = n_blocks(blocks, half_s)
    i = k - blocks.first_index
    lo = max(i - h, 0)
    seg = blocks.rows[lo : i + h + 1, AMAX]
    return bool(seg.size) and int(np.argmax(seg)) == i - lo


def steps_between(blocks: Blocks, t0_us: int, t1_us: int) -> np.ndarray:
    """Step times in [t0, t1)."""
    s = blocks.steps_us
    return s[(s >= t0_us) & (s < t1_us)]


def excess_g(acc_mps2: float) -> float:
    """Acceleration magnitude above 1 g, in g."""
    return (acc_mps2 - GRAVITY_MPS2) / GRAVITY_MPS2


__all__ = [
    "AMAX",
    "GMAX",
    "Peak",
    "baseline",
    "dominance_blocks",
    "excess_g",
    "is_local_max",
    "n_blocks",
    "peak_at",
    "posture_tilt",
    "posture_tilts",
    "steps_between",
    "velocity_drop_mps",
    "window",
]
