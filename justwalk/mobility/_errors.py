"""Expected measurement error of each bout value and each daily DMO (the uncertainty table).

The table is made by the evaluation, never typed in: ``justwalk evaluate gait --data ...
--uncertainty-out justwalk/mobility/uncertainty.json`` scores the leave-one-participant-out
held-out bouts of the development data against their reference
(``justwalk.evaluation.uncertainty``). It holds, per bout value, the mean absolute error
(MAE) in ranges of *our* value (what is known at run time), and per DMO the MAE of that
DMO between our bouts and the reference bouts of each held-out participant.

Lookup (``ErrorTable``):

- a bout value: the MAE of its range when that range had at least ``min_n`` scored bouts,
  else the MAE over all ranges; None when the value was never scored (e.g. speed on a
  dataset without a speed reference);
- a DMO that is a location (mean, median, P90) of a bout value: that value's error at the
  DMO's value. Averaging over a day's bouts reduces random error but not bias, so the
  bout-level MAE is the honest (conservative) figure;
- any other DMO (counts, sums, CVs): its own MAE from the evaluation, None when the
  development data could not score it (lab walks are short: few bouts > 30 s).
"""

from __future__ import annotations

import bisect
import functools
import json
import math
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from justwalk.mobility._definitions import DMOS, Dmo

__all__ = ["BOUT_VALUES", "ErrorTable", "load_error_table"]

BOUT_VALUES = ("cadence_spm", "walking_speed_mps", "stride_length_m", "stride_time_cv_pct",
               "stride_duration_s", "duration_s")
"""Bout values the table gives errors for (``gait_bout`` fields, plus stride duration)."""
_BY_NAME = {d.name: d for d in DMOS}
_LOCATION = ("mean", "median", "p90")


@dataclass(frozen=True, slots=True)
class RangeErrors:
    """MAE of one bout value in ranges of its value: ``edges`` split the ranges."""

    edges: tuple[float, ...]
    mae: tuple[float | None, ...]
    n: tuple[int, ...]
    overall_mae: float | None
    n_total: int


class ErrorTable:
    """The loaded uncertainty table (see the module docstring)."""

    def __init__(self, data: dict[str, Any], *, min_n: int = 5) -> None:
        try:
            self.source = str(data.get("_source", ""))
            self.bout = {k: RangeErrors(tuple(map(float, v["edges"])),
                                        tuple(None if m is None else float(m) for m in v["mae"]),
                                        tuple(int(x) for x in v["n"]),
                                        None if v["overall_mae"] is None
                                        else float(v["overall_mae"]), int(v["n_total"]))
                         for k, v in data["bout"].items()}
            self.dmo = {k: (None if v["mae"] is None else float(v["mae"]), int(v["n"]))
                        for k, v in data["dmo"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an uncertainty table: {exc!r}") from exc
        for k, v in self.bout.items():
            if len(v.mae) != len(v.edges) + 1 or len(v.n) != len(v.mae):
                raise ValueError(f"uncertainty table: {k} needs one more MAE than edges")
        self.min_n = min_n

    def bout_error(self, value: str, x: float | None) -> float | None:
        """Expected absolute error of bout value ``value`` measured as ``x``."""
        e = self.bout.get(value)
        if e is None or x is None or not math.isfinite(x):
            return None
        i = bisect.bisect_right(e.edges, x)
        if e.n[i] >= self.min_n and e.mae[i] is not None:
            return e.mae[i]
        return e.overall_mae

    def overall_error(self, value: str) -> float:
        """The overall expected absolute error of bout value ``value`` (all its bouts)."""
        e = self.bout.get(value)
        if e is None or e.overall_mae is None:
            raise ValueError(f"the uncertainty table has no overall error of {value!r}")
        return e.overall_mae

    def dmo_error(self, dmo: Dmo | str, x: float | None) -> float | None:
        """Expected absolute error of daily outcome ``dmo`` whose value is ``x``."""
        d = _BY_NAME[dmo] if isinstance(dmo, str) else dmo
        if x is None:
            return None
        if d.stat in _LOCATION:
            return self.bout_error(d.quantity, x)
        mae, _ = self.dmo.get(d.name, (None, 0))
        return mae


def load_error_table(path: Path | None = None) -> ErrorTable:
    """The table at ``path``, or the one shipped in the package (``uncertainty.json``)."""
    text = (Path(path).read_text(encoding="utf-8") if path is not None else
            files("justwalk.mobility").joinpath("uncertainty.json").read_text(encoding="utf-8"))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"uncertainty table {path or 'uncertainty.json'} is not JSON: "
                         f"{exc}") from exc
    return ErrorTable(data)


@functools.cache
def shipped_error(value: str) -> float:
    """``overall_error`` of the shipped table: one source for every module that states an error."""
    return load_error_table().overall_error(value)
