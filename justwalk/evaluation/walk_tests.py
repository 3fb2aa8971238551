"""Walk-test scores on real recordings: distance and speed against the INDIP reference.

Each INDIP walking bout (``MicroWB``) of the Mobilise-D lab recordings
(``shared/data/mobilised``) is scored as a timed walk by the training core
(``justwalk.training``), on the steps our streaming gait pipeline detects in the whole
recording: the walk starts 0.1 s after the reference bout's first initial contact (so the
step ending at it, which lies before the bout, is left out) and stops 0.1 s after its
last (so the step ending there counts), i.e. it covers the reference's first-to-last-contact
distance. Compared: distance (the reference's ``Length``) and mean speed over the bout
(distance / the bout's duration; the reference's ``WalkingSpeed``, a mean of stride
speeds), and whether the reference lies inside our stated uncertainty
(``justwalk.training.base``). The straight walks (Test5, "Straight Walk Comfortable")
are the walk-test-like ones; the bouts of the simulated daily activities (Test11) are
shown separately. This module does file I/O (evaluation layer).

    justwalk evaluate walk-tests [--json] [--data DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from justwalk.evaluation.gait import DEFAULT_DATA
from justwalk.evaluation.gait_reference import REFERENCE_SYSTEM, Trial, load_trials
from justwalk.gait.pipeline import GaitPipeline, StepResult
from justwalk.training import Plan, SessionKind, Step, TrainingCore

WINDOW_S = 5.0
EDGE_S = 0.1
STRAIGHT_TEST = "Test5"


@dataclass(frozen=True)
class BoutScore:
    """One reference bout scored as a timed walk."""

    recording: str
    test: str
    bout: int
    duration_s: float
    ref_distance_m: float
    distance_m: float
    distance_uncertainty_m: float | None
    ref_speed_mps: float
    speed_mps: float
    steps: int

    @property
    def distance_error_m(self) -> float:
        """Ours - reference."""
        return self.distance_m - self.ref_distance_m

    @property
    def within_uncertainty(self) -> bool:
        """The reference distance lies within ours +- our uncertainty."""
        u = self.distance_uncertainty_m
        return u is not None and abs(self.distance_error_m) <= u


def _steps(trial: Trial) -> list[StepResult]:
    pipe = GaitPipeline(sensor_height_m=trial.sensor_height_m, window_s=WINDOW_S)
    state = pipe.initial_state(t0_us=trial.t0_us, sample_rate_hz=trial.sample_rate_hz)
    acc = trial.samples[:, :3].astype(np.float64)
    gyr = trial.samples[:, 3:].astype(np.float64)
    out = pipe.process(state, acc, gyr)
    return [*out.steps, *pipe.flush(state).steps]


def reference_bouts(data_dir: Path) -> dict[str, list[dict[str, str]]]:
    """INDIP MicroWB rows of ``derived/reference_walking_bouts.csv`` by recording name."""
    path = Path(data_dir) / "derived" / "reference_walking_bouts.csv"
    out: dict[str, list[dict[str, str]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["system"] == REFERENCE_SYSTEM and row["wb_level"] == "MicroWB":
                name = f"{row['cohort']}/{row['participant_id']} {row['test']} {row['trial']}"
                out.setdefault(name, []).append(row)
    return out


def score_bout(steps: list[StepResult], t0_us: int, start_s: float,
               end_s: float) -> tuple[float, float | None, int]:
    """(distance, its uncertainty, steps) of a timed walk over [start_s, end_s] of a recording."""
    core = TrainingCore(settle_s=0.0)
    state = core.start(Plan(kind=SessionKind.FREE_WALK),
                       t0_us + round((start_s + EDGE_S) * 1e6))
    core.stop(state, t0_us + round((end_s + EDGE_S) * 1e6))  # the stop gate first
    for s in steps:
        core.on_step(state, Step(s.t_us, s.step_time_s, s.step_length_m, s.stride_time_s))
    result = core.close(state).result
    assert result is not None
    return result.distance_m, result.distance_uncertainty_m, result.steps


def evaluate(data_dir: Path) -> list[BoutScore]:
    """Every INDIP bout of every recording, scored."""
    refs = reference_bouts(data_dir)
    scores = []
    for trial in load_trials(data_dir):
        rows = refs.get(trial.name, [])
        if not rows:
            continue
        steps = _steps(trial)
        for row in rows:
            start, end = float(row["start_s"]), float(row["end_s"])
            length, speed = float(row["length_m"]), float(row["walking_speed_mps"])
            if not (math.isfinite(length) and math.isfinite(speed)) or end <= start:
                continue
            dist, unc, n = score_bout(steps, trial.t0_us, start, end)
            scores.append(BoutScore(trial.name, trial.test, int(row["wb_id"]), end - start,
                                    length, dist, unc, speed, dist / (end - start), n))
    return scores


def summary(scores: list[BoutScore]) -> dict[str, float | int]:
    """Errors over a set of bouts."""
    if not scores:
        return {"bouts": 0}
    d = np.array([s.distance_error_m for s in scores])
    rel = np.array([s.distance_error_m / s.ref_distance_m * 100 for s in scores])
    v = np.array([s.speed_mps - s.ref_speed_mps for s in scores])
    return {"bouts": len(scores), "distance_mae_m": round(float(np.mean(np.abs(d))), 3),
            "distance_bias_m": round(float(np.mean(d)), 3),
            "distance_mape_pct": round(float(np.mean(np.abs(rel))), 1),
            "speed_mae_mps": round(float(np.mean(np.abs(v))), 3),
            "speed_bias_mps": round(float(np.mean(v)), 3),
            "within_uncertainty_pct": round(100.0 * float(np.mean(
                [s.within_uncertainty for s in scores])), 1)}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``justwalk evaluate walk-tests``."""
    ap = argparse.ArgumentParser(prog="justwalk evaluate walk-tests",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="Mobilise-D style folder (data/lab/..., derived/...)")
    args = ap.parse_args(argv)
    try:
        scores = evaluate(args.data)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    straight = [s for s in scores if s.test == STRAIGHT_TEST]
    daily = [s for s in scores if s.test != STRAIGHT_TEST]
    if args.json:
        print(json.dumps({"straight_walks": summary(straight), "daily_activity_bouts":
                          summary(daily), "bouts": [asdict(s) for s in scores]}))
        return 0
    print("| recording | bout | s | INDIP m | ours m (± unc.) | INDIP m/s | ours m/s |")
    print("|---|---|---|---|---|---|---|")
    for s in scores:
        unc = "" if s.distance_uncertainty_m is None else f" ± {s.distance_uncertainty_m:.2f}"
        print(f"| {s.recording} | {s.bout} | {s.duration_s:.1f} | {s.ref_distance_m:.2f} | "
              f"{s.distance_m:.2f}{unc} | {s.ref_speed_mps:.3f} | {s.speed_mps:.3f} |")
    print()
    print("| bouts | n | distance MAE m | bias m | MAPE % | speed MAE m/s | bias m/s | "
          "ref. within unc. % |")
    print("|---|---|---|---|---|---|---|---|")
    for label, group in (("straight walks (Test5)", straight),
                         ("daily-activity bouts (Test11)", daily)):
        m: dict[str, Any] = summary(group)
        if m["bouts"]:
            print(f"| {label} | {m['bouts']} | {m['distance_mae_m']} | {m['distance_bias_m']} | "
                  f"{m['distance_mape_pct']} | {m['speed_mae_mps']} | {m['speed_bias_mps']} | "
                  f"{m['within_uncertainty_pct']} |")
    return 0
