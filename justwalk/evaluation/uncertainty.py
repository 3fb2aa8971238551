"""The uncertainty table (``justwalk.mobility._errors``) from an evaluation's held-out bouts.

``justwalk evaluate gait --data DIR [--data DIR ...] --uncertainty-out FILE`` calls
``table_from_evaluation`` with the leave-one-participant-out held-out counts: every
reference bout with a detected partner gives an (ours, reference) pair per bout value
(``gait_reference.PAIRED_VALUES``), binned by our value with the fixed ``EDGES`` below
(chosen before looking at the errors: roughly slow / usual / brisk walking); every
held-out participant gives one (ours, reference) value per daily DMO, its detected and
its reference bouts each aggregated as one day (``justwalk.mobility.compute_dmos``).
The MAE per range and per DMO, with how many values it rests on, is what the table holds.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from justwalk.evaluation.gait_reference import PAIRED_VALUES, Counts
from justwalk.mobility import DMOS, compute_dmos

EDGES: dict[str, tuple[float, ...]] = {
    "cadence_spm": (80.0, 100.0, 120.0),
    "walking_speed_mps": (0.6, 0.9, 1.2),
    "stride_length_m": (0.8, 1.1, 1.4),
    "stride_time_cv_pct": (3.0, 6.0, 10.0),
    "stride_duration_s": (1.0, 1.2, 1.5),
    "duration_s": (10.0, 30.0, 60.0),
}
"""Range edges of each bout value (a value equal to an edge goes to the range above)."""


def _mae(errs: list[float]) -> float | None:
    return round(float(np.mean(errs)), 6) if errs else None


def table_from_evaluation(held: Mapping[str, Counts], dataset_of: Mapping[str, str], *,
                          command: str) -> dict[str, Any]:
    """The table (JSON-ready) from each held-out participant's counts."""
    pooled = Counts()
    for c in held.values():
        pooled.merge(c)
    bout: dict[str, Any] = {}
    for key in PAIRED_VALUES:
        edges = EDGES[key]
        pairs = pooled.pairs[key]
        bins: list[list[float]] = [[] for _ in range(len(edges) + 1)]
        for ours, ref in pairs:
            bins[int(np.searchsorted(edges, ours, side="right"))].append(abs(ours - ref))
        by_ds: dict[str, Any] = {}
        for ds in sorted(set(dataset_of.values())):
            errs = [abs(o - r) for p, c in held.items() if dataset_of[p] == ds
                    for o, r in c.pairs[key]]
            by_ds[ds] = {"mae": _mae(errs), "n": len(errs)}
        bout[key] = {"edges": list(edges), "mae": [_mae(b) for b in bins],
                     "n": [len(b) for b in bins],
                     "overall_mae": _mae([abs(o - r) for o, r in pairs]),
                     "n_total": len(pairs), "by_dataset": by_ds}
    dmo_errs: dict[str, list[float]] = {d.name: [] for d in DMOS}
    for c in held.values():
        if not c.bout_rows["ref"]:
            continue
        mine, theirs = compute_dmos(c.bout_rows["ours"]), compute_dmos(c.bout_rows["ref"])
        for d in DMOS:
            a, b = mine[d.name], theirs[d.name]
            if d.quantity in ("n_steps", "n_turns"):
                continue  # the references here give no per-bout steps or turns
            if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
                dmo_errs[d.name].append(abs(a - b))
    return {
        "_source": f"{command} (justwalk.evaluation.uncertainty, "
                   f"{dt.datetime.now(dt.UTC).date().isoformat()}): leave-one-participant-out "
                   "held-out bouts; MAE of our value against the reference",
        "participants": {p: dataset_of[p] for p in sorted(held)},
        "bout": bout,
        "dmo": {name: {"mae": _mae(e), "n": len(e)} for name, e in dmo_errs.items()},
    }


def write_table(path: Path, table: dict[str, Any]) -> None:
    """Write the table as JSON (stable key order)."""
    Path(path).write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
