"""Near-fall (stumble, trip, slip with recovery) detection from a lower-back IMU.

Method
------
A near-fall is a sudden trunk perturbation during walking followed by recovery (Maidan et
al. 2014; Weiss et al. 2010). Vertical jerk and acceleration peaks alone (Weiss et al. 2010,
"peak-to-peak vertical jerk"; Pang et al. 2019) confuse stumbles with jogging, jumps and
brisk stairs, because they compare the perturbation with a fixed threshold. Here it is
compared with the person's own gait just before and just after it. Candidates are local
maxima of ``|a|`` (largest within +-``peak_half_window_s``) of at least ``gate_acc_mps2``.

1. **Walking before.** In the walking window ``pre_window_s`` = (-``before_s``,
   -``perturbation_half_s``) before the peak: at least ``min_steps_before`` steps (the
   initial contacts ``justwalk.gait.pipeline.GaitPipeline`` released as steps; they all
   arrive before the verdict, see ``_monitor``) with a regular rhythm (coefficient of
   variation of the step intervals <= ``max_step_interval_cv``), continuous (no step-free
   interval, the window's ends included, longer than ``max_step_gap_s``), with a steady
   trunk (the 0.5 s postures vary by at most ``max_tilt_range_deg``) and a gait-like trunk
   acceleration (per-step peak >= ``min_gait_acc_mps2``). Jumps, sit-to-stand and
   transfers start from standing or with a flexing trunk.
2. **A perturbation out of proportion to that gait.** Per-step baselines are medians of the
   0.5 s maxima of ``|a|`` and ``|w|`` over the walking window (and of ``|a|`` over
   ``post_window_s``). The peak's excess ``|a| - g`` must be at least ``min_acc_ratio``
   times the baseline excess both before and after (a stumble is an isolated disturbance;
   jogging and brisk stairs keep their level), and the largest angular rate within
   +-``perturbation_half_s`` at least ``min_gyr_ratio`` times its walking baseline: the
   trunk is thrown (Aziz & Robinovitch 2011; Bagala et al. 2012 use angular rate likewise).
   The perturbation (trip to recovery step) is kept out of the walking window.
3. **Recovery.** Over ``post_window_s`` the trunk is upright: tilt from vertical <=
   ``max_tilt_after_deg`` and within ``max_tilt_change_deg`` of its value before (a fall
   ends lying and is the fall detector's business).

Only ratios are thresholded, so the detector adapts to slow walkers and to sensor tilt.
The decision for a peak is final ``lookahead_s`` (3.5 s) after it. ``peak_half_window_s``
only selects candidates: each candidate carries the number of blocks its peak dominates
(``peak_dominance_blocks``), so a scan with a shorter half-window can be re-decided for a
longer one.

Parameters and their origin
---------------------------
Full table, tuning protocol, per-fold choices and the sensitivity of every window constant:
``justwalk/falls/README.md``.

- LOSO-tuned (grid in ``justwalk.evaluation.falls.NEAR_FALL_GRID``; the default is the
  setting most leave-one-subject-out folds chose): ``gate_acc_mps2`` 2.0 g,
  ``max_step_interval_cv`` 0.4, ``min_acc_ratio`` 3.0, ``min_gyr_ratio`` 2.4, and the window
  constants over ranges set from their physical arguments before any was evaluated:
  ``peak_half_window_s`` 0.7 (0.3-1.0 s: one step at 60-200 steps/min),
  ``perturbation_half_s`` 0.5 (0.5-1.0 s: trip to recovery step), ``before_s`` 4.0
  (3.0-5.0 s: a walking window of 2.5-4.5 s holds >= 3 steps at 70 steps/min).
- Literature: ``max_tilt_after_deg`` 60 (lying = trunk >= 60 deg from vertical, i.e.
  vertical acceleration <= 0.5 g, Kangas et al. 2008); ``max_tilt_change_deg`` 34 (a trunk
  angle change > 0.59 rad marks a fall, Bourke & Lyons 2008).
- Physical: ``min_steps_before`` 3 (two step intervals, the fewest that have a rhythm);
  ``max_step_gap_s`` 2.0 (one missed step at 60 steps/min); ``max_tilt_range_deg`` 30 (gait
  moves the pelvis and trunk by a few degrees, sit-to-stand and bending flex it by 40 deg
  or more); ``min_gait_acc_mps2`` 1.03 g (above standing, ~1.01 g with noise; below the
  slowest gait, ~1.07 g); ``post_window_s`` (1.0, 3.5) (after the recovery step; its end is
  the latency); ``acc_floor_mps2`` 0.1 g and ``gyr_floor_radps`` 20 deg/s (per-step |a|
  excess and trunk rate of slow gait: ratio floors); ``refractory_s`` 3 (one alarm per
  event).

References
----------
- Weiss A, Shimkin I, Giladi N, Hausdorff JM. Automated detection of near falls: algorithm
  development and preliminary results. BMC Res Notes 2010;3:62. doi:10.1186/1756-0500-3-62
- Pang I, Okubo Y, Sturnieks D, Lord SR, Brodie MA. Detection of near falls using wearable
  devices: a systematic review. J Geriatr Phys Ther 2019;42(1):48-56.
  doi:10.1519/JPT.0000000000000181
- Maidan I, Freedman T, Tzemah R, et al. Introducing a new definition of a near fall:
  intra-rater and inter-rater reliability. Gait Posture 2014;39(1):645-647.
- Aziz O, Robinovitch SN. An analysis of the accuracy of wearable sensors for classifying
  the causes of falls in humans. IEEE TNSRE 2011;19(6):670-676.
- Bagala F, Becker C, Cappello A, et al. Evaluation of accelerometer-based fall detection
  algorithms on real-world falls. PLoS One 2012;7(5):e37062.
- Kangas M, Konttila A, Lindgren P, Winblad I, Jamsa T. Comparison of low-complexity fall
  detection algorithms for body attached accelerometers. Gait Posture 2008;28(2):285-291.
- Bourke AK, Lyons GM. A threshold-based fall-detection algorithm using a bi-axial
  gyroscope sensor. Med Eng Phys 2008;30(1):84-90.
- Sucerquia A, Lopez JD, Vargas-Bonilla JF. SisFall: A Fall and Movement Dataset. Sensors
  2017;17(1):198 (the stumbles, D18, this was developed on).

"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from justwalk.falls import _features as ft
from justwalk.falls._frontend import Blocks
from justwalk.falls._scan import CandidateDetector
from justwalk.falls.base import GRAVITY_MPS2, EventType, FallEvent


@dataclass(frozen=True, slots=True)
class NearFallFeatures:
    """What the near-fall decision looks at (SI units, angles in degrees)."""

    peak_acc_mps2: float
    peak_gyr_radps: float
    gait_acc_mps2: float
    """Per-step acceleration peak (baseline) before the event."""
    acc_ratio: float
    """Peak excess acceleration over the baseline excess before the event."""
    acc_ratio_after: float
    """The same against the baseline after the event."""
    gyr_ratio: float
    """Peak angular rate over its baseline before the event."""
    n_steps_before: int
    step_interval_cv: float
    max_step_gap_s: float
    """Longest step-free interval of the walking window (its ends count as steps)."""
    tilt_range_before_deg: float
    """Range of the 0.5 s trunk postures over the walking window."""
    tilt_before_deg: float
    tilt_after_deg: float
    peak_dominance_blocks: int
    """Blocks on each side that the peak dominates (``_features.dominance_blocks``)."""
    block_s: float


class NearFallDetector(CandidateDetector[NearFallFeatures]):
    """Streaming near-fall detector; see the module docstring for the method and parameters."""

    decision_params: ClassVar[frozenset[str]] = frozenset({
        "gate_acc_mps2", "peak_half_window_s", "min_gait_acc_mps2", "min_steps_before",
        "max_step_interval_cv", "max_step_gap_s", "max_tilt_range_deg", "min_acc_ratio",
        "min_gyr_ratio", "max_tilt_after_deg", "max_tilt_change_deg", "refractory_s",
    })
    """Parameters that only ``accepts`` (and the candidate scan) read, not ``features``."""
    candidate_params: ClassVar[tuple[str, ...]] = ("gate_acc_mps2", "peak_half_window_s")

    def __init__(
        self,
        *,
        gate_acc_mps2: float = 2.0 * GRAVITY_MPS2,
        peak_half_window_s: float = 0.7,
        perturbation_half_s: float = 0.5,
        before_s: float = 4.0,
        post_window_s: tuple[float, float] = (1.0, 3.5),
        acc_floor_mps2: float = 0.1 * GRAVITY_MPS2,
        gyr_floor_radps: float = math.radians(20.0),
        min_gait_acc_mps2: float = 1.03 * GRAVITY_MPS2,
        min_steps_before: int = 3,
        max_step_interval_cv: float = 0.4,
        max_step_gap_s: float = 2.0,
        max_tilt_range_deg: float = 30.0,
        min_acc_ratio: float = 3.0,
        min_gyr_ratio: float = 2.4,
        max_tilt_after_deg: float = 60.0,
        max_tilt_change_deg: float = 34.0,
        refractory_s: float = 3.0,
    ) -> None:
        self.gate_acc_mps2 = gate_acc_mps2
        self.peak_half_window_s = peak_half_window_s
        self.perturbation_half_s = perturbation_half_s
        self.before_s = before_s
        self.post_window_s = post_window_s
        self.acc_floor_mps2 = acc_floor_mps2
        self.gyr_floor_radps = gyr_floor_radps
        self.min_gait_acc_mps2 = min_gait_acc_mps2
        self.min_steps_before = min_steps_before
        self.max_step_interval_cv = max_step_interval_cv
        self.max_step_gap_s = max_step_gap_s
        self.max_tilt_range_deg = max_tilt_range_deg
        self.min_acc_ratio = min_acc_ratio
        self.min_gyr_ratio = min_gyr_ratio
        self.max_tilt_after_deg = max_tilt_after_deg
        self.max_tilt_change_deg = max_tilt_change_deg
        self.refractory_s = refractory_s

    @property
    def pre_window_s(self) -> tuple[float, float]:
        """Walking before the event: ``before_s`` up to the perturbation."""
        return (-self.before_s, -self.perturbation_half_s)

    @property
    def lookahead_s(self) -> float:  # type: ignore[override]
        """Data needed after a peak before it is judged."""
        return max(self.post_window_s[1], self.perturbation_half_s, self.peak_half_window_s)

    @property
    def lookback_s(self) -> float:  # type: ignore[override]
        """Data read before a peak.

        The walking window, the peak's dominance (as far back as the look-ahead) and the
        event's extent (1 s).
        """
        return max(self.before_s, self.perturbation_half_s, self.peak_half_window_s,
                   self.lookahead_s, 1.0)

    def features(self, blocks: Blocks, k: int) -> NearFallFeatures:
        """Features of the candidate at block ``k``."""
        row = blocks.rows[k - blocks.first_index]
        peak_acc = float(row[ft.AMAX])
        peak_us = ft.peak_at(blocks, k).peak_us
        g = GRAVITY_MPS2
        group = ft.n_blocks(blocks, ft.BASELINE_GROUP_S)
        pre = ft.window(blocks, k, *self.pre_window_s)
        post = ft.window(blocks, k, *self.post_window_s)
        p = self.perturbation_half_s
        gyr_rows = ft.window(blocks, k, -p, p + blocks.block_s)
        peak_gyr = float(gyr_rows[:, ft.GMAX].max()) if gyr_rows.size else 0.0
        base_a = ft.baseline(pre, ft.AMAX, group)
        base_a_post = ft.baseline(post, ft.AMAX, group)
        base_g = ft.baseline(pre, ft.GMAX, group)
        excess = peak_acc - g
        acc_ratio = _ratio(excess, base_a - g, self.acc_floor_mps2)
        acc_ratio_after = _ratio(excess, base_a_post - g, self.acc_floor_mps2)
        gyr_ratio = _ratio(peak_gyr, base_g, self.gyr_floor_radps)
        # the walking window, cut at the start of the known data (stream start or gap)
        t0_us = max(peak_us + round(self.pre_window_s[0] * 1e6),
                    blocks.time_us(blocks.first_index))
        t1_us = peak_us + round(self.pre_window_s[1] * 1e6)
        steps = ft.steps_between(blocks, t0_us, t1_us)
        intervals = np.diff(steps) / 1e6
        cv = (
            float(np.std(intervals) / np.mean(intervals)) if intervals.size >= 2 else math.nan
        )
        edges = np.concatenate([[t0_us], steps, [t1_us]])
        gap = float(np.diff(edges).max()) / 1e6 if t1_us > t0_us else math.inf
        postures = ft.posture_tilts(pre, group)
        tilt_range = float(postures.max() - postures.min()) if postures.size else math.nan
        return NearFallFeatures(
            peak_acc_mps2=peak_acc,
            peak_gyr_radps=peak_gyr,
            gait_acc_mps2=base_a,
            acc_ratio=acc_ratio,
            acc_ratio_after=acc_ratio_after,
            gyr_ratio=gyr_ratio,
            n_steps_before=int(steps.size),
            step_interval_cv=cv,
            max_step_gap_s=gap,
            tilt_range_before_deg=tilt_range,
            tilt_before_deg=ft.posture_tilt(pre),
            tilt_after_deg=ft.posture_tilt(post),
            peak_dominance_blocks=ft.dominance_blocks(
                blocks, k, ft.n_blocks(blocks, self.lookahead_s)),
            block_s=blocks.block_s,
        )

    def accepts(self, f: NearFallFeatures) -> Any:
        """A candidate peak, walking before, a thrown trunk, upright after."""
        candidate = f.peak_dominance_blocks >= np.round(self.peak_half_window_s / f.block_s)
        walking = (
            (f.n_steps_before >= self.min_steps_before)
            & (f.step_interval_cv <= self.max_step_interval_cv)
            & (f.max_step_gap_s <= self.max_step_gap_s)
            & (f.tilt_range_before_deg <= self.max_tilt_range_deg)
            & (f.gait_acc_mps2 >= self.min_gait_acc_mps2)
        )
        perturbed = (
            (f.peak_acc_mps2 >= self.gate_acc_mps2)
            & (f.acc_ratio >= self.min_acc_ratio)
            & (f.acc_ratio_after >= self.min_acc_ratio)
            & (f.gyr_ratio >= self.min_gyr_ratio)
        )
        recovered = (f.tilt_after_deg <= self.max_tilt_after_deg) & (
            np.abs(f.tilt_after_deg - f.tilt_before_deg) <= self.max_tilt_change_deg
        )
        return candidate & walking & perturbed & recovered

    def confidence(self, f: NearFallFeatures) -> float:
        """0.5 at the thresholds, towards 1 with the smaller of the two ratio margins."""
        margin = min(f.acc_ratio / self.min_acc_ratio, f.acc_ratio_after / self.min_acc_ratio,
                     f.gyr_ratio / self.min_gyr_ratio)
        return float(margin / (margin + 1.0))

    def make_event(
        self, blocks: Blocks, k: int, peak: ft.Peak, detected_us: int, f: NearFallFeatures
    ) -> FallEvent:
        """Event spanning the blocks around the peak above half its excess."""
        start_k, end_k = _extent(blocks, k, f.gait_acc_mps2, window_s=1.0)
        return FallEvent(
            type=EventType.NEAR_FALL,
            start_us=blocks.time_us(start_k),
            end_us=blocks.time_us(end_k + 1),
            peak_us=peak.peak_us,
            detected_us=detected_us,
            peak_acc_mps2=f.peak_acc_mps2,
            peak_gyr_radps=f.peak_gyr_radps,
            trunk_tilt_before_deg=f.tilt_before_deg,
            trunk_tilt_after_deg=f.tilt_after_deg,
            confidence=self.confidence(f),
        )


def _ratio(num: float, den: float, floor: float) -> float:
    if math.isnan(den):
        return 0.0
    return num / max(den, floor)


def _extent(blocks: Blocks, k: int, base_mps2: float, window_s: float) -> tuple[int, int]:
    """First and last block within +-window_s of ``k`` above halfway from base to peak."""
    i = k - blocks.first_index
    h = ft.n_blocks(blocks, window_s)
    amax = blocks.rows[:, ft.AMAX]
    base = base_mps2 if math.isfinite(base_mps2) else GRAVITY_MPS2
    level = base + 0.5 * (amax[i] - base)
    lo = i
    while lo - 1 >= max(i - h, 0) and amax[lo - 1] >= level:
        lo -= 1
    hi = i
    while hi + 1 <= min(i + h, amax.size - 1) and amax[hi + 1] >= level:
        hi += 1
    return lo + blocks.first_index, hi + blocks.first_index
