"""Fall detection from a lower-back IMU: impact, then a lying trunk, then little movement.

Method
------
The classic three-stage scheme for trunk- and waist-worn sensors (Bourke et al. 2007,
Kangas et al. 2008, Bourke et al. 2010):

1. **Impact.** A local maximum of the acceleration magnitude (largest within
   +-``peak_half_window_s``) of at least ``min_impact_acc_mps2``.
2. **Posture.** The trunk's tilt from vertical (angle between the sensor's up axis and the
   mean specific force, i.e. gravity) over ``tilt_after_window_s`` after the impact is at
   least ``min_tilt_after_deg`` -- lying -- and at least ``min_tilt_change_deg`` more than
   the most tilted 0.5 s posture within ``tilt_before_window_s`` before the impact: the fall
   makes a new posture. This rules out movements that start lying (turning over in bed)
   and a deep bend shortly after another one. If nothing is known before the impact (the
   stream has just started) the impact, lying and stillness decide.
3. **Low movement.** The median over the same window of the 0.1 s angular-rate maxima is at
   most ``max_gyr_after_radps``: the person lies rather than moving on (Bourke et al. 2010
   use a post-impact posture/activity window for the same purpose).

Lying down on purpose passes 2 and 3 but lacks the impact; jumps, stumbles, collapsing onto
a chair have impacts but end upright. The decision for a peak is final ``lookahead_s``
(2.0 s) after it. The event's start is the onset of the descent, estimated as the start of
the largest drop of ``integral(|a| - g)`` before the impact (Bourke et al. 2010's velocity
feature; ``descent_window_s`` and ``peak_gyr_window_s`` only shape the reported event).

Parameters and their origin
---------------------------
Full table, tuning protocol and per-fold choices: ``justwalk/falls/README.md``.

- Literature: ``min_tilt_after_deg`` 60 and ``tilt_after_window_s`` (1.6, 2.0): Kangas et
  al. 2008 call the posture lying when the vertical acceleration, averaged over 0.4 s about
  2 s after the impact, is <= 0.5 g, i.e. the trunk >= 60 deg from vertical.
- LOSO-tuned (grid in ``justwalk.evaluation.falls.FALL_GRID``; the default is the setting
  most leave-one-subject-out folds chose): ``min_impact_acc_mps2`` 1.6 g,
  ``min_tilt_change_deg`` 25, ``max_gyr_after_radps`` 1.0, and ``tilt_before_window_s``
  (-4.0, -2.0) over ends -1.0/-1.5/-2.0 s and lengths 1/2/3 s (the end must precede the
  falling phase, about 0.7 s from standing (Hsiao & Robinovitch 1998) and longer from
  sitting or in a faint; the length spans at least a stride). The impact threshold is
  tuned rather than taken from the lab literature (2-3 g at the waist, Kangas et al.
  2008): real-world falls of older people are softer than simulated ones (Klenk et al.
  2011; Bagala et al. 2012), SisFall's falls from sitting reach only 1.7 g, and 2 g misses
  the simulator's softest falls (2 g +- 5 %).
- Physical: ``peak_half_window_s`` 1.0 (one impact per fall; its phase is shorter than 1 s);
  ``refractory_s`` 10 (one alarm per fall). Every fold chooses a ``tilt_before_window_s``
  ending 2 s before the impact, the earliest end of its grid, and only such windows meet
  the targets: see the README for what later and earlier ends do.

References
----------
- Bourke AK, O'Brien JV, Lyons GM. Evaluation of a threshold-based tri-axial accelerometer
  fall detection algorithm. Gait Posture 2007;26(2):194-199.
  doi:10.1016/j.gaitpost.2006.09.012
- Kangas M, Konttila A, Lindgren P, Winblad I, Jamsa T. Comparison of low-complexity fall
  detection algorithms for body attached accelerometers. Gait Posture 2008;28(2):285-291.
  doi:10.1016/j.gaitpost.2008.01.003
- Bourke AK, van de Ven P, Gamble M, et al. Evaluation of waist-mounted tri-axial
  accelerometer based fall-detection algorithms during scripted and continuous unscripted
  activities. J Biomech 2010;43(15):3051-3057. doi:10.1016/j.jbiomech.2010.07.005
- Hsiao ET, Robinovitch SN. Common protective movements govern unexpected falls from
  standing height. J Biomech 1998;31(1):1-9.
- Klenk J, Becker C, Lieken F, et al. Comparison of acceleration signals of simulated and
  real-world backward falls. Med Eng Phys 2011;33(3):368-373.
  doi:10.1016/j.medengphy.2010.11.003
- Bagala F, Becker C, Cappello A, et al. Evaluation of accelerometer-based fall detection
  algorithms on real-world falls. PLoS One 2012;7(5):e37062.
- Sucerquia A, Lopez JD, Vargas-Bonilla JF. SisFall: A Fall and Movement Dataset. Sensors
  2017;17(1):198. doi:10.3390/s17010198

"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from justwalk.falls import _features as ft
from justwalk.falls._frontend import DV, Blocks
from justwalk.falls._near_fall import _extent
from justwalk.falls._scan import CandidateDetector
from justwalk.falls.base import GRAVITY_MPS2, EventType, FallEvent


@dataclass(frozen=True, slots=True)
class FallFeatures:
    """What the fall decision looks at (SI units, angles in degrees)."""

    peak_acc_mps2: float
    peak_gyr_radps: float
    tilt_before_deg: float
    """Most tilted 0.5 s posture in ``tilt_before_window_s`` (nan if nothing is known)."""
    tilt_after_deg: float
    gyr_after_radps: float
    """Median of the 0.1 s angular-rate maxima after the impact."""
    velocity_drop_mps: float


class FallDetector(CandidateDetector[FallFeatures]):
    """Streaming fall detector; see the module docstring for the method and parameters."""

    decision_params: ClassVar[frozenset[str]] = frozenset({
        "min_impact_acc_mps2", "min_tilt_after_deg", "min_tilt_change_deg",
        "max_gyr_after_radps", "refractory_s",
    })
    """Parameters that only ``accepts`` (and the candidate gate) read, not ``features``."""
    candidate_params: ClassVar[tuple[str, ...]] = ("min_impact_acc_mps2",)

    def __init__(
        self,
        *,
        min_impact_acc_mps2: float = 1.6 * GRAVITY_MPS2,
        peak_half_window_s: float = 1.0,
        peak_gyr_window_s: tuple[float, float] = (-1.0, 0.3),
        tilt_before_window_s: tuple[float, float] = (-4.0, -2.0),
        tilt_after_window_s: tuple[float, float] = (1.6, 2.0),
        descent_window_s: tuple[float, float] = (-1.5, 0.1),
        min_tilt_after_deg: float = 60.0,
        min_tilt_change_deg: float = 25.0,
        max_gyr_after_radps: float = 1.0,
        refractory_s: float = 10.0,
        min_flush_after_s: float = 1.0,
    ) -> None:
        self.min_flush_after_s = min_flush_after_s
        self.min_impact_acc_mps2 = min_impact_acc_mps2
        self.peak_half_window_s = peak_half_window_s
        self.peak_gyr_window_s = peak_gyr_window_s
        self.tilt_before_window_s = tilt_before_window_s
        self.tilt_after_window_s = tilt_after_window_s
        self.descent_window_s = descent_window_s
        self.min_tilt_after_deg = min_tilt_after_deg
        self.min_tilt_change_deg = min_tilt_change_deg
        self.max_gyr_after_radps = max_gyr_after_radps
        self.refractory_s = refractory_s

    @property
    def gate_acc_mps2(self) -> float:  # type: ignore[override]
        """Candidates are peaks at least this large: a smaller one cannot be an impact."""
        return self.min_impact_acc_mps2

    @property
    def lookahead_s(self) -> float:  # type: ignore[override]
        """Data needed after a peak before it is judged."""
        return max(self.tilt_after_window_s[1], self.peak_half_window_s,
                   self.peak_gyr_window_s[1], self.descent_window_s[1])

    @property
    def lookback_s(self) -> float:  # type: ignore[override]
        """Data read before an impact.

        The posture before, the descent, the angular-rate peak, the peak's half window and
        the event's extent (1 s).
        """
        return max(-self.tilt_before_window_s[0], -self.descent_window_s[0],
                   -self.peak_gyr_window_s[0], self.peak_half_window_s, 1.0)

    def truncated(self, available_s: float) -> FallDetector | None:
        """The detector for data that ends ``available_s`` after the impact (end of data).

        The posture and movement window keeps its length but ends where the data ends; with
        less than ``min_flush_after_s`` after the impact there is nothing to judge.
        """
        if available_s >= self.lookahead_s:
            return self
        if available_s < self.min_flush_after_s:
            return None
        a, b = self.tilt_after_window_s
        judge = copy.copy(self)
        judge.tilt_after_window_s = (max(available_s - (b - a), 0.0), available_s)
        return judge

    def features(self, blocks: Blocks, k: int) -> FallFeatures:
        """Features of the candidate at block ``k``."""
        row = blocks.rows[k - blocks.first_index]
        gyr_rows = ft.window(blocks, k, *self.peak_gyr_window_s)
        after = ft.window(blocks, k, *self.tilt_after_window_s)
        before = ft.posture_tilts(ft.window(blocks, k, *self.tilt_before_window_s),
                                  ft.n_blocks(blocks, ft.BASELINE_GROUP_S))
        return FallFeatures(
            peak_acc_mps2=float(row[ft.AMAX]),
            peak_gyr_radps=float(gyr_rows[:, ft.GMAX].max()) if gyr_rows.size else 0.0,
            tilt_before_deg=float(np.nanmax(before)) if np.isfinite(before).any() else math.nan,
            tilt_after_deg=ft.posture_tilt(after),
            gyr_after_radps=float(np.median(after[:, ft.GMAX])) if after.size else math.inf,
            velocity_drop_mps=ft.velocity_drop_mps(ft.window(blocks, k,
                                                             *self.descent_window_s)),
        )

    def rejects_early(self, blocks: Blocks, k: int) -> bool:
        """Not lying after the impact: the test of ``accepts`` on ``tilt_after_deg``."""
        return bool(ft.posture_tilt(ft.window(blocks, k, *self.tilt_after_window_s))
                    < self.min_tilt_after_deg)

    def accepts(self, f: FallFeatures) -> Any:
        """Impact, then lying (and more tilted than before), then little movement."""
        # no posture known before (stream start): the impact, lying and stillness decide
        before = np.where(np.isnan(f.tilt_before_deg), -np.inf, f.tilt_before_deg)
        return (
            (f.peak_acc_mps2 >= self.min_impact_acc_mps2)
            & (f.tilt_after_deg >= self.min_tilt_after_deg)
            & (f.tilt_after_deg - before >= self.min_tilt_change_deg)
            & (f.gyr_after_radps <= self.max_gyr_after_radps)
        )

    def confidence(self, f: FallFeatures) -> float:
        """0.5 at the thresholds, towards 1 with the smallest margin of impact and posture."""
        margin = min(
            f.peak_acc_mps2 / self.min_impact_acc_mps2,
            f.tilt_after_deg / self.min_tilt_after_deg,
        )
        return float(margin / (margin + 1.0))

    def make_event(
        self, blocks: Blocks, k: int, peak: ft.Peak, detected_us: int, f: FallFeatures
    ) -> FallEvent:
        """Event from the onset of the descent to the end of the impact."""
        _, end_k = _extent(blocks, k, GRAVITY_MPS2, window_s=1.0)
        i0 = k - blocks.first_index + ft.n_blocks(blocks, self.descent_window_s[0])
        i0 = max(i0, 0)
        i1 = k - blocks.first_index + 1
        c = np.concatenate([[0.0], np.cumsum(blocks.rows[i0:i1, DV])])
        drop_end = int(np.argmin(c - np.maximum.accumulate(c)))
        onset = int(np.argmax(c[: drop_end + 1]))
        return FallEvent(
            type=EventType.FALL,
            start_us=blocks.time_us(i0 + onset + blocks.first_index),
            end_us=blocks.time_us(end_k + 1),
            peak_us=peak.peak_us,
            detected_us=detected_us,
            peak_acc_mps2=f.peak_acc_mps2,
            peak_gyr_radps=f.peak_gyr_radps,
            trunk_tilt_before_deg=f.tilt_before_deg,
            trunk_tilt_after_deg=f.tilt_after_deg,
            confidence=self.confidence(f),
        )
