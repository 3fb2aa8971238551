"""``justwalk evaluate falls``: near-fall and fall detection against real recordings.

Usage::

    justwalk evaluate falls [--json] [--data DIR] [--loso]

Data
----
- ``DIR`` (default ``../shared/data/sisfall``): SisFall-layout folder, a ``manifest.csv``
  (columns ``file, code, category, subject, ...``) beside the subject folders. Categories:
  ``walking``, ``near_fall_stumble``, ``fall``, ``adl_confounder`` (other activities).
- Walking for false alarms per hour: the SisFall walking files of ``DIR``, the Mobilise-D
  lab recordings (``../shared/data/mobilised``, if present; Test11 also holds turns,
  pauses and sitting, and all of its time counts as walking time, which is conservative),
  and simulated walking from ``justwalk.simulator.gait_model.synthesize`` if that module is
  importable (else skipped, and the output says so).

All recordings are converted to the wire convention and resampled to 100 Hz (the device
rate) and fed to the streaming detectors exactly as a stream processor would.

Metrics
-------
Each recording gets one predicted class: ``fall`` if any fall event, else ``near_fall`` if
any near-fall event, else none. Near-fall sensitivity: stumble recordings predicted
near-fall; near-fall specificity: walking and other-activity recordings without a near-fall
event. Fall sensitivity: fall recordings with a fall event; fall specificity: every non-fall
recording (walking, stumbles, other activities) without a fall event. F1 uses the same
counts (false positives of a class: recordings of other classes predicted as it).
Detection latency: device time at which the event became final minus the time of the
recording's largest acceleration (the impact or stumble; SisFall has no onset labels),
over correctly detected stumbles and falls. False alarms per hour: all events in walking
recordings over their total duration.

``--loso`` tunes the main thresholds (near-fall acceleration and angular-rate ratios; fall
impact and lying tilt) by leave-one-subject-out over a small grid: for each subject (each
SisFall subject, each Mobilise-D participant, the simulated walkers as one group), the
thresholds are chosen on the others and applied to it; the figures reported are those of
the held-out predictions. The shipped defaults are the thresholds most folds chose.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from justwalk.evaluation import sisfall
from justwalk.falls import (
    GRAVITY_MPS2,
    Candidate,
    FallDetector,
    FallFeatures,
    NearFallDetector,
    NearFallFeatures,
)

SAMPLE_RATE_HZ = 100.0
WALKING = "walking"
NEAR_FALL = "near_fall"
FALL = "fall"
OTHER = "other"
CLASSES = (WALKING, NEAR_FALL, FALL, OTHER)
_CATEGORY_CLASS = {
    sisfall.CATEGORY_WALKING: WALKING,
    sisfall.CATEGORY_NEAR_FALL: NEAR_FALL,
    sisfall.CATEGORY_FALL: FALL,
    sisfall.CATEGORY_OTHER: OTHER,
}
JSON_KEYS = (
    "near_fall_sensitivity",
    "near_fall_specificity",
    "fall_sensitivity",
    "fall_specificity",
    "false_alarms_per_hour_walking",
    "median_detection_latency_s",
)
# LOSO grids: few parameters, physically meaningful ranges.
NEAR_FALL_GRID = {
    "min_acc_ratio": (2.0, 2.5, 3.0, 3.5, 4.0, 4.5),
    "min_gyr_ratio": (1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 2.8),
}
FALL_GRID = {
    "min_impact_acc_mps2": tuple(g * GRAVITY_MPS2 for g in (1.6, 1.7, 1.8, 1.9, 2.0, 2.2, 2.4)),
    "min_tilt_after_deg": (40.0, 45.0, 50.0, 55.0, 60.0, 65.0),
}
SIMULATED_WALKING_MIN = 30.0


@dataclass
class Recording:
    """One evaluated recording with its detector candidates."""

    name: str
    group: str
    """Subject (or walking-data group) for leave-one-subject-out."""
    label: str
    duration_s: float
    reference_us: int
    """Time of the largest acceleration (reference event time for latency)."""
    near: list[Candidate[NearFallFeatures]] = field(default_factory=list)
    fall: list[Candidate[FallFeatures]] = field(default_factory=list)
    walking_only: bool = False
    """Counts towards false alarms per hour of walking."""
    source: str = "sisfall"


def _default_data_dir() -> Path:
    here = Path.cwd() / ".." / "shared" / "data" / "sisfall"
    if here.is_dir():
        return here.resolve()
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "sisfall"


def _analyse(name: str, group: str, label: str, samples: npt.NDArray[np.float64],
             near: NearFallDetector, fall: FallDetector, *, walking_only: bool) -> Recording:
    acc_norm = np.sqrt((samples[:, 0:3] ** 2).sum(axis=1))
    ref_us = round(int(np.argmax(acc_norm)) * 1e6 / SAMPLE_RATE_HZ)
    rec = Recording(name, group, label, samples.shape[0] / SAMPLE_RATE_HZ, ref_us,
                    walking_only=walking_only, source=name.split("/")[0]
                    if name.startswith(("mobilised/", "simulated/")) else "sisfall")
    rec.near = near.scan(near.initial_state(), samples, 0, SAMPLE_RATE_HZ)
    rec.fall = fall.scan(fall.initial_state(), samples, 0, SAMPLE_RATE_HZ)
    return rec


def load_sisfall(data_dir: Path, near: NearFallDetector, fall: FallDetector) -> list[Recording]:
    """Every manifest entry of ``data_dir`` analysed."""
    out = []
    for entry in sisfall.read_manifest(data_dir):
        label = _CATEGORY_CLASS.get(entry.category)
        if label is None:
            raise ValueError(f"{entry.file}: unknown category {entry.category!r}")
        rec = sisfall.load(data_dir, entry, SAMPLE_RATE_HZ)
        out.append(_analyse(entry.file, entry.subject, label, rec.samples, near, fall,
                            walking_only=label == WALKING))
    return out


def load_mobilised(root: Path, near: NearFallDetector, fall: FallDetector) -> list[Recording]:
    """Mobilise-D lab recordings (lower back, already x up / y right / z forward, g, deg/s)."""
    from scipy import io

    out = []
    for mat in sorted(root.glob("data/lab/*/*/data.mat")):
        participant = f"{mat.parent.parent.name}{mat.parent.name}"
        data = io.loadmat(mat, squeeze_me=True, struct_as_record=False, mat_dtype=True)["data"]
        tm = data.TimeMeasure1
        for test in tm._fieldnames:
            for trial in getattr(tm, test)._fieldnames:
                imu = getattr(getattr(tm, test), trial).SU.LowerBack
                fs = float(imu.Fs.Acc)
                samples = np.concatenate(
                    [np.asarray(imu.Acc, float) * GRAVITY_MPS2,
                     np.deg2rad(np.asarray(imu.Gyr, float))], axis=1)
                samples = sisfall.resample(samples, fs, SAMPLE_RATE_HZ)
                out.append(_analyse(f"mobilised/{participant}/{test}/{trial}",
                                    f"mobilised-{participant}", WALKING, samples, near, fall,
                                    walking_only=True))
    return out


def load_simulated(near: NearFallDetector, fall: FallDetector) -> tuple[list[Recording], str]:
    """Simulated walking of a few profiles, or none (with the reason) if unavailable."""
    try:
        from justwalk.simulator.gait_model import GaitProfile, synthesize
    except ImportError as exc:
        return [], f"simulated walking skipped: {exc}"
    out = []
    profiles = [
        dict(cadence_spm=c, step_time_cv=cv, vertical_acc_pp_mps2=pp, tilt_pitch_deg=tilt)
        for c, cv, pp, tilt in [(80.0, 0.06, 2.0, 5.0), (95.0, 0.04, 2.5, 15.0),
                                (105.0, 0.02, 3.0, 8.0), (115.0, 0.03, 4.0, 0.0),
                                (125.0, 0.02, 5.0, 10.0), (90.0, 0.08, 2.0, 20.0)]
    ]
    per_s = SIMULATED_WALKING_MIN * 60.0 / len(profiles)
    try:
        for i, kw in enumerate(profiles):
            rec = synthesize(GaitProfile(**kw), per_s, SAMPLE_RATE_HZ,  # type: ignore[arg-type]
                             np.random.default_rng(1000 + i))
            out.append(_analyse(f"simulated/{i}", "simulated", WALKING,
                                np.asarray(rec.samples, dtype=np.float64), near, fall,
                                walking_only=True))
    except (TypeError, ValueError, AttributeError) as exc:
        return [], f"simulated walking skipped: {exc}"
    return out, f"simulated walking: {len(out)} recordings, {SIMULATED_WALKING_MIN:.0f} min"


# --- decisions and metrics ------------------------------------------------------------------


def _accepted_times(cands: Sequence[Candidate[Any]], decide: Callable[[Any], bool],
                    refractory_s: float) -> list[Candidate[Any]]:
    """Accepted candidates, with the detector's refractory period applied."""
    out: list[Candidate[Any]] = []
    quiet = -(2**62)
    for c in cands:
        if decide(c.features) and c.peak.peak_us >= quiet:
            out.append(c)
            quiet = c.peak.peak_us + round(refractory_s * 1e6)
    return out


@dataclass
class Outcome:
    """Detections of one recording under one set of thresholds."""

    rec: Recording
    near: list[Candidate[NearFallFeatures]]
    fall: list[Candidate[FallFeatures]]

    @property
    def predicted(self) -> str | None:
        """Predicted class of the recording."""
        if self.fall:
            return FALL
        if self.near:
            return NEAR_FALL
        return None


def decide_all(recs: Sequence[Recording], near: NearFallDetector,
               fall: FallDetector) -> list[Outcome]:
    """Apply the detectors' decisions to precomputed candidates."""
    return [
        Outcome(r, _accepted_times(r.near, near.decide, near.refractory_s),
                _accepted_times(r.fall, fall.decide, fall.refractory_s))
        for r in recs
    ]


def _safe(n: float, d: float) -> float:
    return n / d if d else math.nan


def metrics(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """All figures of the evaluation (see the module docstring)."""
    sis = [o for o in outcomes if o.rec.source == "sisfall"]
    by = {c: [o for o in sis if o.rec.label == c] for c in CLASSES}
    nf_pos = by[NEAR_FALL]
    nf_neg = by[WALKING] + by[OTHER]
    f_pos = by[FALL]
    f_neg = by[WALKING] + by[NEAR_FALL] + by[OTHER]
    nf_tp = sum(o.predicted == NEAR_FALL for o in nf_pos)
    nf_fp_spec = sum(o.predicted == NEAR_FALL for o in nf_neg)
    nf_fp_all = sum(o.predicted == NEAR_FALL for o in sis if o.rec.label != NEAR_FALL)
    f_tp = sum(o.predicted == FALL for o in f_pos)
    f_fp = sum(o.predicted == FALL for o in f_neg)

    def f1(tp: int, fp: int, fn: int) -> float:
        return _safe(2 * tp, 2 * tp + fp + fn)

    latencies = []
    for o in nf_pos + f_pos:
        hits: list[Candidate[Any]] = []
        if o.rec.label == NEAR_FALL and o.predicted == NEAR_FALL:
            hits = list(o.near)
        elif o.rec.label == FALL:
            hits = list(o.fall)
        if hits:
            first = min(hits, key=lambda c: abs(c.peak.peak_us - o.rec.reference_us))
            latencies.append((first.detected_us - o.rec.reference_us) / 1e6)
    walking = [o for o in outcomes if o.rec.walking_only]
    walk_h = sum(o.rec.duration_s for o in walking) / 3600.0
    alarms = sum(len(o.near) + len(o.fall) for o in walking)
    per_class = {}
    for c in CLASSES:
        rows = by[c]
        correct = sum((o.predicted == c) if c in (NEAR_FALL, FALL) else o.predicted is None
                      for o in rows)
        per_class[c] = {"recordings": len(rows), "correct": correct,
                        "any_alarm": sum(o.predicted is not None for o in rows)}
    return {
        "near_fall_sensitivity": _safe(nf_tp, len(nf_pos)),
        "near_fall_specificity": _safe(len(nf_neg) - nf_fp_spec, len(nf_neg)),
        "near_fall_f1": f1(nf_tp, nf_fp_all, len(nf_pos) - nf_tp),
        "fall_sensitivity": _safe(f_tp, len(f_pos)),
        "fall_specificity": _safe(len(f_neg) - f_fp, len(f_neg)),
        "fall_f1": f1(f_tp, f_fp, len(f_pos) - f_tp),
        "false_alarms_per_hour_walking": _safe(alarms, walk_h),
        "false_alarms_walking": alarms,
        "walking_hours": walk_h,
        "median_detection_latency_s": statistics.median(latencies) if latencies else math.nan,
        "per_class": per_class,
        "misclassified": sorted(
            o.rec.name for o in outcomes
            if (o.rec.label in (NEAR_FALL, FALL) and o.predicted != o.rec.label)
            or (o.rec.label in (WALKING, OTHER) and o.predicted is not None)
            or (o.rec.walking_only and (o.near or o.fall))
        ),
    }


# --- leave-one-subject-out ------------------------------------------------------------------


def _configs(grid: dict[str, tuple[float, ...]]) -> list[dict[str, float]]:
    keys = list(grid)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*grid.values())]


def _smoothed_best(grid: dict[str, tuple[float, ...]], scores: dict[tuple[int, ...], float]
                   ) -> tuple[int, ...]:
    """Grid index with the best score, ties broken by the mean score of its neighbours."""
    def neighbourhood(idx: tuple[int, ...]) -> float:
        vals = []
        for d in itertools.product((-1, 0, 1), repeat=len(idx)):
            j = tuple(i + di for i, di in zip(idx, d, strict=True))
            if j in scores:
                vals.append(scores[j])
        return sum(vals) / len(vals)

    return max(scores, key=lambda i: (scores[i], neighbourhood(i), -sum(
        abs(v - (len(g) - 1) / 2) for v, g in zip(i, grid.values(), strict=True))))


def tune(recs: Sequence[Recording], near: NearFallDetector, fall: FallDetector
         ) -> tuple[dict[str, float], dict[str, float]]:
    """Thresholds chosen on ``recs`` by Youden's J (sensitivity + specificity).

    For near-falls, minus 0.1 per false alarm per hour of walking. Ties go to the threshold
    set whose grid neighbours score best (the middle of a plateau), then to the grid centre.
    """
    near_scores: dict[tuple[int, ...], float] = {}
    for idx in itertools.product(*(range(len(v)) for v in NEAR_FALL_GRID.values())):
        cfg = {k: NEAR_FALL_GRID[k][i] for k, i in zip(NEAR_FALL_GRID, idx, strict=True)}
        m = metrics(decide_all(recs, _with(near, cfg), fall))
        fa = m["false_alarms_per_hour_walking"]
        fa = 0.0 if math.isnan(fa) else fa
        near_scores[idx] = (_nz(m["near_fall_sensitivity"]) + _nz(m["near_fall_specificity"])
                            - 0.1 * fa)
    fall_scores: dict[tuple[int, ...], float] = {}
    for idx in itertools.product(*(range(len(v)) for v in FALL_GRID.values())):
        cfg = {k: FALL_GRID[k][i] for k, i in zip(FALL_GRID, idx, strict=True)}
        m = metrics(decide_all(recs, near, _with(fall, cfg)))
        fall_scores[idx] = _nz(m["fall_sensitivity"]) + _nz(m["fall_specificity"])
    bn = _smoothed_best(NEAR_FALL_GRID, near_scores)
    bf = _smoothed_best(FALL_GRID, fall_scores)
    return ({k: NEAR_FALL_GRID[k][i] for k, i in zip(NEAR_FALL_GRID, bn, strict=True)},
            {k: FALL_GRID[k][i] for k, i in zip(FALL_GRID, bf, strict=True)})


def _nz(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def _with(det: Any, cfg: dict[str, float]) -> Any:
    params = {k: v for k, v in vars(det).items() if not k.startswith("_")}
    return type(det)(**{**params, **cfg})


def loso(recs: Sequence[Recording], near: NearFallDetector, fall: FallDetector
         ) -> tuple[list[Outcome], list[tuple[str, dict[str, float], dict[str, float]]]]:
    """Held-out outcomes of every group, and the thresholds each fold chose."""
    groups = sorted({r.group for r in recs})
    outcomes: list[Outcome] = []
    chosen = []
    for g in groups:
        train = [r for r in recs if r.group != g]
        test = [r for r in recs if r.group == g]
        cn, cf = tune(train, near, fall)
        chosen.append((g, cn, cf))
        outcomes += decide_all(test, _with(near, cn), _with(fall, cf))
    return outcomes, chosen


# --- command line ---------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return "  n/a" if isinstance(x, float) and math.isnan(x) else f"{x:5.3f}"


def _print_report(m: dict[str, Any], title: str, notes: list[str]) -> None:
    print(title)
    for n in notes:
        print(f"  ({n})")
    print(f"  {'class':10s} {'recordings':>10s} {'correct':>8s} {'any alarm':>9s}")
    for c, row in m["per_class"].items():
        print(f"  {c:10s} {row['recordings']:10d} {row['correct']:8d} {row['any_alarm']:9d}")
    print(f"  near-fall  sensitivity {_fmt(m['near_fall_sensitivity'])}  specificity "
          f"{_fmt(m['near_fall_specificity'])}  F1 {_fmt(m['near_fall_f1'])}")
    print(f"  fall       sensitivity {_fmt(m['fall_sensitivity'])}  specificity "
          f"{_fmt(m['fall_specificity'])}  F1 {_fmt(m['fall_f1'])}")
    print(f"  false alarms while walking: {m['false_alarms_walking']} in "
          f"{m['walking_hours']:.2f} h = {m['false_alarms_per_hour_walking']:.2f} per hour")
    print(f"  median detection latency: {m['median_detection_latency_s']:.2f} s")
    if m["misclassified"]:
        print("  misclassified: " + ", ".join(m["misclassified"]))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``justwalk evaluate falls``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="justwalk evaluate falls", description=__doc__
                                     and __doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the key figures as JSON")
    parser.add_argument("--data", type=Path, default=None,
                        help="SisFall-layout folder (manifest.csv beside subject folders)")
    parser.add_argument("--loso", action="store_true",
                        help="report leave-one-subject-out figures (thresholds tuned per fold)")
    args = parser.parse_args(argv)
    data_dir = args.data.resolve() if args.data else _default_data_dir()
    if not (data_dir / "manifest.csv").is_file():
        print(f"error: no manifest.csv in {data_dir}", file=sys.stderr)
        return 2
    near, fall = NearFallDetector(), FallDetector()
    notes = [f"data: {data_dir}"]
    recs = load_sisfall(data_dir, near, fall)
    mob_root = _default_data_dir().parent / "mobilised"
    if (mob_root / "data").is_dir():
        mob = load_mobilised(mob_root, near, fall)
        recs += mob
        notes.append(f"Mobilise-D walking: {len(mob)} recordings")
    else:
        notes.append("Mobilise-D walking skipped: not found")
    sim, note = load_simulated(near, fall)
    recs += sim
    notes.append(note)
    if args.loso:
        outcomes, chosen = loso(recs, near, fall)
        m = metrics(outcomes)
        title = "Fall detection, leave-one-subject-out (thresholds tuned without the subject)"
    else:
        m = metrics(decide_all(recs, near, fall))
        chosen = []
        title = "Fall detection with the shipped thresholds"
    if args.json:
        print(json.dumps({k: (None if isinstance(m[k], float) and math.isnan(m[k]) else m[k])
                          for k in JSON_KEYS}))
        return 0
    _print_report(m, title, notes)
    if chosen:
        print("  thresholds chosen per held-out group:")
        for g, cn, cf in chosen:
            print(f"    {g:18s} near: acc ratio {cn['min_acc_ratio']:.1f}, gyr ratio "
                  f"{cn['min_gyr_ratio']:.1f}; fall: impact "
                  f"{cf['min_impact_acc_mps2'] / GRAVITY_MPS2:.1f} g, lying "
                  f"{cf['min_tilt_after_deg']:.0f} deg")
        modes = Counter((cn["min_acc_ratio"], cn["min_gyr_ratio"]) for _, cn, _ in chosen)
        fmodes = Counter((cf["min_impact_acc_mps2"] / GRAVITY_MPS2, cf["min_tilt_after_deg"])
                         for _, _, cf in chosen)
        print(f"  most chosen: near {modes.most_common(1)[0][0]}, "
              f"fall {tuple(round(v, 2) for v in fmodes.most_common(1)[0][0])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
