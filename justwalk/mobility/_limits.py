"""Per-cohort plausibility limits of bout values, as Mobilise-D applies them before aggregating.

The limits are Mobilise-D's DMO threshold table, as mobgap 1.2.0 ships it
(``mobgap.aggregation.get_mobilised_dmo_thresholds``; Apache-2.0, the Mobilise-D
consortium), kept as data in ``dmo_limits.json`` and regenerated from mobgap by
``tests/fixtures/mobgap_dmo/regenerate.py --limits`` (never typed in). Per cohort (CHF,
COPD, HA, MS, PD, PFF) and value it gives a [min, max] per source: ``free_living``,
``laboratory`` (the Mobilise-D TVS), ``literature`` and ``global``.

How a bout is checked (mobgap's ``apply_thresholds`` and ``MobilisedAggregator``, read in
their documentation and source, re-implemented here):

- the range of a value is the lowest to the highest of the limits of the measurement
  condition (free-living here) and of the literature and global limits, inclusive;
- with the participant's height, the largest plausible stride length is at least the
  inverted-pendulum bound 4 sqrt(2 l h - h^2), l = 0.53 x height (leg length, Winter
  2009), h = 0.038 v^2 (vertical excursion, Miff et al. 2000) at v = sqrt(g l) (Froude
  number 1, Ivanenko et al. 2007; Zijlstra & Hof's pendulum);
- a value outside its range, or missing, is implausible and left out; walking speed is
  left out too when cadence or stride length is implausible; duration, steps and turns
  are not checked.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

__all__ = ["CHECKED", "COHORTS", "PlausibilityLimits", "max_stride_length_m"]

CHECKED = ("cadence_spm", "walking_speed_mps", "stride_length_m", "stride_duration_s")
"""Bout values with limits (the table has step duration too, which the DMOs do not use)."""
CONDITIONS = ("free_living", "laboratory")
_TABLE: dict[str, Any] = json.loads(
    files("justwalk.mobility").joinpath("dmo_limits.json").read_text(encoding="utf-8"))
COHORTS: tuple[str, ...] = tuple(sorted(_TABLE["limits"]))
"""Cohorts with limits: CHF, COPD, HA, MS, PD, PFF."""


def max_stride_length_m(height_m: float) -> float:
    """The inverted-pendulum bound on stride length for a person of ``height_m``."""
    leg = 0.53 * height_m
    excursion = 0.038 * 9.81 * leg
    return 4.0 * math.sqrt(2.0 * leg * excursion - excursion ** 2)


@dataclass(frozen=True, slots=True)
class PlausibilityLimits:
    """The [low, high] range of each checked value for one person (``for_cohort``)."""

    cohort: str
    ranges: dict[str, tuple[float, float]]

    @classmethod
    def for_cohort(cls, cohort: str, *, height_m: float | None = None,
                   condition: str = "free_living") -> PlausibilityLimits:
        """The limits of ``cohort``; ``ValueError`` names the cohorts and conditions known."""
        if cohort not in COHORTS:
            raise ValueError(f"unknown cohort {cohort!r}; known: {', '.join(COHORTS)}")
        if condition not in CONDITIONS:
            raise ValueError(f"unknown measurement condition {condition!r}; known: "
                             f"{', '.join(CONDITIONS)}")
        if height_m is not None and not (math.isfinite(height_m) and 0.5 <= height_m <= 2.5):
            raise ValueError(f"height_m must be a body height in metres, got {height_m!r}")
        table = _TABLE["limits"][cohort]
        ranges = {}
        for value in CHECKED:
            bounds = [b for src in (condition, "literature", "global")
                      for b in table[value][src] if b is not None and math.isfinite(b)]
            lo, hi = min(bounds), max(bounds)
            if value == "stride_length_m" and height_m is not None:
                hi = max(hi, max_stride_length_m(height_m))
            ranges[value] = (lo, hi)
        return cls(cohort, ranges)

    def check(self, row: list[float]) -> tuple[list[float], bool]:
        """``row`` (``QUANTITIES`` order) with implausible values set to NaN; any dropped."""
        from justwalk.mobility._definitions import QUANTITIES

        out = list(row)
        ok: dict[str, bool] = {}
        for value, (lo, hi) in self.ranges.items():
            i = QUANTITIES.index(value)
            ok[value] = lo <= out[i] <= hi  # NaN compares False: missing is implausible
            if not ok[value]:
                out[i] = math.nan
        if not (ok["cadence_spm"] and ok["stride_length_m"]):
            out[QUANTITIES.index("walking_speed_mps")] = math.nan
        return out, not all(ok.values())
