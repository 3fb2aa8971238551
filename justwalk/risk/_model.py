"""The fall-risk formula: reference values, weights and the points of each component.

Each component maps one input onto a fraction of its weight with a clipped linear ramp
between a reference value with no added risk (``x_0``) and one of full risk (``x_1``)::

    f(x) = clip((x - x_0) / (x_1 - x_0), 0, 1)          points_k = w_k * f_k(x_k)
    score = sum_k points_k                               (0..100 points, sum_k w_k = 100)

The ramp works in both directions (for walking speed ``x_1 < x_0``: slower is riskier).
An input that is unknown (no qualifying walking in the window) contributes 0 points.
The reference values and weights are set from published associations, not fitted to
outcomes (we have no outcome data); the package docstring and README give the sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WALKING_SPEED = "walking_speed"
STRIDE_TIME_CV = "stride_time_cv"
STEP_TIME_ASYMMETRY = "step_time_asymmetry"
NEAR_FALLS = "near_falls"
FALLS = "falls"
COMPONENTS = (WALKING_SPEED, STRIDE_TIME_CV, STEP_TIME_ASYMMETRY, NEAR_FALLS, FALLS)
"""Names of the score's components, in the order they are reported."""

MAX_SCORE = 100.0


def ramp(x: float | None, no_risk: float, full_risk: float) -> float:
    """Fraction in [0, 1] of the way from ``no_risk`` to ``full_risk``; 0 when unknown."""
    if x is None or not math.isfinite(x):
        return 0.0
    return min(1.0, max(0.0, (x - no_risk) / (full_risk - no_risk)))


@dataclass(frozen=True, slots=True)
class FallRiskModel:
    """Reference values (units in the names) and weights (points) of the fall-risk score.

    The defaults are the documented formula; a clinic may change them, and must then
    document its own choice. Weights must sum to 100 so that the score spans 0..100.
    """

    speed_no_risk_mps: float = 1.0
    speed_full_risk_mps: float = 0.6
    speed_weight_pts: float = 25.0
    stride_cv_no_risk_pct: float = 2.5
    stride_cv_full_risk_pct: float = 7.0
    stride_cv_weight_pts: float = 20.0
    asymmetry_no_risk_pct: float = 3.0
    asymmetry_full_risk_pct: float = 10.0
    asymmetry_weight_pts: float = 10.0
    near_falls_full_risk: int = 3
    """Near-falls in the event window that give the full weight (0 gives none)."""
    near_falls_weight_pts: float = 25.0
    falls_full_risk: int = 1
    """Falls in the event window that give the full weight (0 gives none)."""
    falls_weight_pts: float = 20.0

    def __post_init__(self) -> None:
        weights = self.weights_pts()
        if any(w < 0 or not math.isfinite(w) for w in weights.values()):
            raise ValueError(f"weights must be finite and >= 0: {weights}")
        if not math.isclose(sum(weights.values()), MAX_SCORE, abs_tol=1e-9):
            raise ValueError(f"weights must sum to {MAX_SCORE:g} points: {weights}")
        pairs = {
            "speed": (self.speed_no_risk_mps, self.speed_full_risk_mps),
            "stride_cv": (self.stride_cv_no_risk_pct, self.stride_cv_full_risk_pct),
            "asymmetry": (self.asymmetry_no_risk_pct, self.asymmetry_full_risk_pct),
        }
        for name, (lo, hi) in pairs.items():
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo == hi:
                raise ValueError(f"{name}: the two reference values must differ: {lo}, {hi}")
        if self.near_falls_full_risk < 1 or self.falls_full_risk < 1:
            raise ValueError("event counts for full risk must be >= 1")

    def weights_pts(self) -> dict[str, float]:
        """Weight (maximum points) of each component."""
        return {
            WALKING_SPEED: self.speed_weight_pts,
            STRIDE_TIME_CV: self.stride_cv_weight_pts,
            STEP_TIME_ASYMMETRY: self.asymmetry_weight_pts,
            NEAR_FALLS: self.near_falls_weight_pts,
            FALLS: self.falls_weight_pts,
        }

    def points(
        self,
        *,
        walking_speed_mps: float | None,
        stride_time_cv_pct: float | None,
        step_time_asymmetry_pct: float | None,
        n_near_falls: int,
        n_falls: int,
    ) -> dict[str, float]:
        """Points of each component (keys ``COMPONENTS``); None inputs give 0 points."""
        return {
            WALKING_SPEED: self.speed_weight_pts * ramp(
                walking_speed_mps, self.speed_no_risk_mps, self.speed_full_risk_mps),
            STRIDE_TIME_CV: self.stride_cv_weight_pts * ramp(
                stride_time_cv_pct, self.stride_cv_no_risk_pct, self.stride_cv_full_risk_pct),
            STEP_TIME_ASYMMETRY: self.asymmetry_weight_pts * ramp(
                step_time_asymmetry_pct, self.asymmetry_no_risk_pct,
                self.asymmetry_full_risk_pct),
            NEAR_FALLS: self.near_falls_weight_pts * ramp(
                float(n_near_falls), 0.0, float(self.near_falls_full_risk)),
            FALLS: self.falls_weight_pts * ramp(float(n_falls), 0.0, float(self.falls_full_risk)),
        }

    @staticmethod
    def total(points: dict[str, float]) -> float:
        """The score: the sum of the points, clipped to 0..100."""
        return min(MAX_SCORE, max(0.0, math.fsum(points.values())))
