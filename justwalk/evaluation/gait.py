"""``justwalk evaluate gait``: our streaming gait pipeline against INDIP, beside mobgap's.

Runs ``justwalk.gait.pipeline.GaitPipeline`` on every referenced recording of a Mobilise-D
style folder (default ``../shared/data/mobilised``) and, in the same run and on the same
recordings, mobgap's ``MobilisedPipelineImpaired`` when mobgap can be imported (it is a
benchmark-only dependency, installed in ``.venv-bench``; the runtime never imports it).
Scoring rules are those of ``gait_reference`` (issue #3). Prints a table per recording and
overall, or with ``--json`` one object whose keys hold ``{"ours": ..., "mobgap": ...}``.

Several datasets (issue #15): ``--data`` may be repeated (e.g. ``../shared/data/mobilised``
and ``../shared/data/voisard_dev``). The figures are then pooled over all folders (the
top-level keys, as with one folder) and given per folder under ``by_dataset`` (keyed by
the folder's name), each with the same keys plus its own ``lopo``: the held-out counts of
that folder's participants from the one pooled leave-one-participant-out run (each fold
tunes on every other participant of every folder). Participant ids are prefixed with the
folder's name, since ids repeat across datasets.

Leave-one-participant-out (LOPO): the few parameters that were tuned (``TUNING_GRID``) are
chosen, for each participant, on the *other* participants only (``selection_score``) and
the held-out participant is scored with that choice; the pooled held-out counts are printed
as "LOPO" beside the pooled figures of the shipped defaults. The shipped defaults are, for
each tuned parameter, the value most folds chose (so no default was chosen by scoring
all participants together). On a folder of unseen
recordings (``--data DIR``) the same procedure runs over that folder's participants, so the
printed LOPO figures show how much the tuning would move there.

Besides the issue's figures the table shows "IC F1 inside ref bouts": the detected ICs that
lie inside reference walking bouts only (``gait_reference``), i.e. step detection on its
own, as Mobilise-D scores IC detectors; the gap to the full IC F1 is what bout detection
costs (ICs outside the reference bouts, bouts missed). "ref same-foot IC gaps" counts the
places where the reference lists two consecutive contacts of the same foot inside a bout,
i.e. missed one; "false ICs inside those gaps" are detections scored false there
(``gait_reference.same_foot_gaps``).

"window cadence MAE" scores exactly what the stream processor publishes as the
``gait_window`` cadence: our pipeline's windows of ``--window-s`` (default 5 s, the
processor's), each walking window against the reference cadence defined the same way over
the same window (``gait_reference.window_cadence_errors``).

Processing speed is samples per second of the algorithms alone (data already in memory),
our pipeline fed each recording whole; both after one warm-up run (ours: loading its
compiled kernels).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import math
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from justwalk.evaluation.gait_reference import Bout, Counts, Detection, Trial, load_trials
from justwalk.gait.gsd import BoutAssembler
from justwalk.gait.icd import IcDetector
from justwalk.gait.pipeline import GaitPipeline
from justwalk.gait.spatial import StepLengthEstimator
from justwalk.gait.transfers import TransferGate

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "mobilised"
WINDOW_S = 5.0
"""Window length of the window cadence figure (the stream processor's)."""
JSON_KEYS = {
    "ic_f1": "ic_f1",
    "ic_timing_error_s": "ic_timing_error_s",
    "bout_f1": "bout_f1",
    "cadence_mae_spm": "cadence_mae_spm",
    "speed_mae_mps": "speed_mae_mps",
    "stride_length_mae_m": "stride_length_mae_m",
    "stride_time_cv_mae_pp": "stride_time_cv_mae_pp",
    "samples_per_s": "samples_per_s",
}


TUNING_GRID: dict[str, tuple[float, ...]] = {
    "icd.abs_threshold_mps2": (0.2, 0.3),
    "icd.weak_ratio": (0.5, 1.0),
    "bouts.edge_factor": (1.5, 2.0),
    "bouts.drop_last_ics": (0, 1),
    "bouts.max_hold_s": (1.6, 1.8, 2.0),
    "spatial.turn_shortening": (2.0, 3.0),
    "transfers.max_rate_dps": (80.0, 100.0),
    "transfers.max_posture_deg": (20.0, 25.0, 30.0),
}
"""Parameters tuned by leave-one-participant-out; everything else is from the literature."""

TARGETS = {"ic_f1": 0.85, "bout_f1": 0.75, "cadence_mae_spm": 4.0, "speed_mae_mps": 0.12,
           "stride_length_mae_m": 0.15}


def selection_score(s: dict[str, float]) -> float:
    """One number to maximise when choosing parameters: each figure relative to its target."""
    def v(key: str) -> float:
        x = s.get(key, math.nan)
        return x if math.isfinite(x) else (0.0 if key.endswith("f1") else 10 * TARGETS[key])
    mae = (v("cadence_mae_spm") / TARGETS["cadence_mae_spm"]
           + v("speed_mae_mps") / TARGETS["speed_mae_mps"]
           + v("stride_length_mae_m") / TARGETS["stride_length_mae_m"]) / 3
    return v("ic_f1") / TARGETS["ic_f1"] + v("bout_f1") / TARGETS["bout_f1"] - mae


def make_pipeline(sensor_height_m: float, params: dict[str, float] | None = None,
                  window_s: float = WINDOW_S) -> GaitPipeline:
    """Our pipeline with the defaults, or with ``params`` (keys as in ``TUNING_GRID``)."""
    kw: dict[str, dict[str, Any]] = {"icd": {}, "bouts": {}, "spatial": {}, "transfers": {}}
    for key, val in (params or {}).items():
        stage, name = key.split(".")
        kw[stage][name] = int(val) if name.startswith(("min_", "drop_")) else val
    return GaitPipeline(sensor_height_m=sensor_height_m, window_s=window_s,
                        icd=IcDetector(**kw["icd"]),
                        bouts=BoutAssembler(**kw["bouts"]),
                        spatial=StepLengthEstimator(**kw["spatial"]),
                        transfers=TransferGate(**kw["transfers"]))


def _combos() -> list[dict[str, float]]:
    keys = list(TUNING_GRID)
    return [dict(zip(keys, vals, strict=True))
            for vals in itertools.product(*(TUNING_GRID[k] for k in keys))]


_SCORE_TERMS = ("ic_tp", "ic_fp", "ic_fn", "bout_tp", "bout_fp", "bout_fn")
_SCORE_MAES = {"cadence_mae_spm": "cadence_spm", "speed_mae_mps": "walking_speed_mps",
               "stride_length_mae_m": "stride_length_m"}


def _score_terms(c: Counts) -> npt.NDArray[np.float64]:
    """The additive parts of ``selection_score``: counts, and sum and number of each error."""
    errs = [c.errors[k] for k in _SCORE_MAES.values()]
    return np.asarray([*(getattr(c, k) for k in _SCORE_TERMS),
                       *(v for e in errs for v in (math.fsum(e), len(e)))], dtype=np.float64)


def _score_of_terms(t: npt.NDArray[np.float64]) -> float:
    """``selection_score`` of pooled counts given as (summed) ``_score_terms``."""
    def f1(tp: float, fp: float, fn: float) -> float:
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    s = {"ic_f1": f1(*t[0:3]), "bout_f1": f1(*t[3:6])}
    for i, key in enumerate(_SCORE_MAES):
        total, n = t[6 + 2 * i], t[7 + 2 * i]
        s[key] = total / n if n else math.nan
    return selection_score(s)


_LOPO_TRIALS: list[Trial] = []
"""The trials the LOPO workers score (set before the worker processes fork)."""
_LOPO_WINDOW_S: list[float] = [WINDOW_S]
"""The window length the LOPO workers use (set with ``_LOPO_TRIALS``)."""


def _per_participant(combo: dict[str, float]) -> dict[str, Counts]:
    """Counts of one parameter set, per participant, over ``_LOPO_TRIALS``."""
    out: dict[str, Counts] = {}
    for tr in _LOPO_TRIALS:
        out.setdefault(tr.participant, Counts()).add(
            tr, run_ours(tr, make_pipeline(tr.sensor_height_m, combo, _LOPO_WINDOW_S[0])))
    return out


def lopo(trials: list[Trial], jobs: int = 1, window_s: float = WINDOW_S,
         ) -> tuple[dict[str, float], list[tuple[str, dict[str, float]]]]:
    """Leave-one-participant-out figures over ``TUNING_GRID`` (pooled held-out counts)."""
    held, chosen = lopo_folds(trials, jobs, window_s)
    pooled = Counts()
    for q, _ in chosen:
        pooled.merge(held[q])
    return pooled.summary(), chosen


def lopo_folds(trials: list[Trial], jobs: int = 1, window_s: float = WINDOW_S,
               ) -> tuple[dict[str, Counts], list[tuple[str, dict[str, float]]]]:
    """Each participant's held-out counts, and the parameters chosen without them.

    Every parameter set runs once on every trial (in ``jobs`` processes); each fold then
    scores the sets on the other participants by subtracting the held-out participant's
    counts from the totals, so the cost grows with the data, not with data x participants.
    """
    combos = _combos()
    _LOPO_TRIALS[:] = trials
    _LOPO_WINDOW_S[0] = window_s
    try:
        if jobs > 1:
            ctx = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
                per = list(pool.map(_per_participant, combos, chunksize=4))
        else:
            per = [_per_participant(c) for c in combos]
    finally:
        _LOPO_TRIALS.clear()
    participants = sorted({tr.participant for tr in trials})
    terms = np.asarray([[_score_terms(p[q]) for q in participants] for p in per])
    totals = terms.sum(axis=1)
    held: dict[str, Counts] = {}
    chosen = []
    for qi, q in enumerate(participants):
        scores = [_score_of_terms(t) for t in totals - terms[:, qi]]
        best = int(np.argmax(scores))  # first of equal scores, as before
        held[q] = per[best][q]
        chosen.append((q, combos[best]))
    return held, chosen


def run_ours(trial: Trial, pipeline: GaitPipeline | None = None,
             chunk: int | None = None) -> Detection:
    """Our streaming pipeline on one trial (whole, or in chunks of ``chunk`` samples)."""
    pipe = pipeline or GaitPipeline(sensor_height_m=trial.sensor_height_m, window_s=WINDOW_S)
    acc = trial.samples[:, :3].astype(np.float64)
    gyr = trial.samples[:, 3:].astype(np.float64)
    t = time.perf_counter()
    state = pipe.initial_state(t0_us=trial.t0_us, sample_rate_hz=trial.sample_rate_hz)
    step = chunk or acc.shape[0]
    outs = [pipe.process(state, acc[i:i + step], gyr[i:i + step])
            for i in range(0, acc.shape[0], step)]
    outs.append(pipe.flush(state))
    seconds = time.perf_counter() - t
    steps = [s for o in outs for s in o.steps]
    bouts = [Bout(b.start_sample, b.end_sample, b.params.cadence_spm,
                  b.params.walking_speed_mps, b.params.stride_length_m,
                  b.params.stride_time_cv_pct) for o in outs for b in o.bouts]
    return Detection(ics=np.asarray([s.sample for s in steps], dtype=np.int64), bouts=bouts,
                     seconds=seconds, ic_sides=[s.side for s in steps],
                     windows=[w for o in outs for w in o.windows])


def mobgap_runner(data_dir: Path) -> tuple[Callable[[Trial], Detection] | None, str]:
    """A function running mobgap on a trial, or None and the reason it is unavailable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mobgap.data import GenericMobilisedDataset
            from mobgap.pipeline import MobilisedPipelineImpaired
    except Exception as exc:
        return None, (f"mobgap is not importable in this interpreter ({type(exc).__name__}: "
                      f"{exc}); install it in a separate venv, e.g. .venv-bench, and run "
                      "`.venv-bench/bin/python -m justwalk.evaluation.gait`")
    files = sorted(Path(data_dir).glob("data/lab/*/*/data.mat")) or sorted(
        Path(data_dir).rglob("data.mat"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = GenericMobilisedDataset(
            files, test_level_names=("time_measure", "test", "trial"),
            parent_folders_as_metadata=["cohort", "participant_id"],
            measurement_condition="laboratory")
    by_name = {f"{g.cohort}/{g.participant_id} {g.test} {g.trial}": ds.get_subset(
        **{k: v for k, v in g._asdict().items()}) for g in ds.group_labels}
    warmed: list[bool] = []

    def run(trial: Trial) -> Detection:
        dp = by_name[trial.name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not warmed:
                MobilisedPipelineImpaired().safe_run(dp)
                warmed.append(True)
            t = time.perf_counter()
            p = MobilisedPipelineImpaired().safe_run(dp)
            seconds = time.perf_counter() - t
        ics = np.sort(p.raw_ic_list_["ic"].to_numpy(dtype=np.int64))
        wb = p.per_wb_parameters_
        strides = p.per_stride_parameters_
        bouts = []
        for wb_id, r in zip(wb.index, wb.itertuples(), strict=True):
            cv = math.nan
            if "wb_id" in strides.columns or "wb_id" in strides.index.names:
                sel = strides.reset_index()
                d = sel.loc[sel["wb_id"] == wb_id, "stride_duration_s"].to_numpy(float)
                d = d[np.isfinite(d)]
                if d.size > 1:
                    cv = float(np.std(d, ddof=1) / np.mean(d) * 100.0)
            bouts.append(Bout(int(r.start), int(r.end), float(r.cadence_spm),
                              float(r.walking_speed_mps), float(r.stride_length_m), cv))
        return Detection(ics=ics, bouts=bouts, seconds=seconds)

    return run, "mobgap MobilisedPipelineImpaired"


ROWS = [
    ("IC precision", "ic_precision", "{:.3f}"),
    ("IC recall", "ic_recall", "{:.3f}"),
    ("IC F1 (+-0.25 s)", "ic_f1", "{:.3f}"),
    ("IC median timing error (s)", "ic_timing_error_s", "{:.3f}"),
    ("IC F1 inside ref bouts", "ic_f1_in_ref_bouts", "{:.3f}"),
    ("bout F1 (80 % rule)", "bout_f1", "{:.3f}"),
    ("bout F1 (IoU >= 0.5)", "bout_f1_iou", "{:.3f}"),
    ("ref bouts without partner", "bouts_missed", "{:.0f}"),
    ("ref same-foot IC gaps", "ref_same_foot_gaps", "{:.0f}"),
    ("  false ICs inside those gaps", "ic_fp_in_ref_gaps", "{:.0f}"),
    ("cadence MAE (steps/min)", "cadence_mae_spm", "{:.2f}"),
    ("walking speed MAE (m/s)", "speed_mae_mps", "{:.3f}"),
    ("stride length MAE (m)", "stride_length_mae_m", "{:.3f}"),
    ("stride-time CV MAE (pp)", "stride_time_cv_mae_pp", "{:.2f}"),
    ("window cadence MAE (steps/min)", "window_cadence_mae_spm", "{:.2f}"),
    ("  walking windows scored", "windows_scored", "{:.0f}"),
    ("samples/s", "samples_per_s", "{:,.0f}"),
]


def _fmt(fmt: str, v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else fmt.format(v)


def _table(title: str, ours: dict[str, float], theirs: dict[str, float] | None) -> str:
    lines = [title, f"  {'metric':30s} {'ours':>12s} {'mobgap':>12s}"]
    for label, key, fmt in ROWS:
        lines.append(f"  {label:30s} {_fmt(fmt, ours.get(key)):>12s} "
                     f"{_fmt(fmt, theirs.get(key) if theirs else None):>12s}")
    return "\n".join(lines)


def dataset_labels(data_dirs: Sequence[Path]) -> list[str]:
    """A short, distinct label per folder: its name, or more of its path where names clash."""
    paths = [Path(d).resolve() for d in data_dirs]
    if len(set(paths)) != len(paths):
        raise ValueError("the same --data folder is given twice")
    depth = 1
    while True:
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels) or depth >= max(len(p.parts) for p in paths):
            return labels
        depth += 1


def evaluate(data_dir: Path | Sequence[Path], *, with_mobgap: bool = True,
             with_lopo: bool = True, jobs: int = 1, window_s: float = WINDOW_S,
             ) -> dict[str, Any]:
    """Score both pipelines on one or several folders; per-trial, pooled and per-folder figures.

    Recordings that cannot be read, and recordings mobgap fails on, are left out of both
    pipelines' figures (so both are scored on the same recordings) and listed under
    ``skipped`` with the reason. With several folders, participant ids are prefixed with
    the folder's label (``voisard_dev/HA/001``): ids repeat across datasets but the people
    do not, and leave-one-participant-out runs over all of them together.
    """
    dirs = [Path(data_dir)] if isinstance(data_dir, (str, Path)) else [Path(d) for d in data_dir]
    if not dirs:
        raise FileNotFoundError("no --data folder given")
    labels = dataset_labels(dirs)
    skipped: list[str] = []
    trials: list[Trial] = []
    dataset_of: dict[str, str] = {}
    theirs: dict[str, Detection] = {}
    notes: list[str] = []
    has_runner: dict[str, bool] = {}
    for label, folder in zip(labels, dirs, strict=True):
        found = load_trials(folder, skipped)
        if not found:
            raise FileNotFoundError(f"no referenced recordings under {folder}")
        runner, note = mobgap_runner(folder) if with_mobgap else (None, "mobgap skipped")
        notes.append(note)
        has_runner[label] = runner is not None
        kept = []
        for tr in found:
            mine = tr if len(dirs) == 1 else replace(tr, participant=f"{label}/{tr.participant}")
            if runner is not None:
                try:
                    theirs[mine.name] = runner(tr)
                except Exception as exc:  # third-party code: one failing recording is left out
                    skipped.append(f"{mine.name}: mobgap failed ({type(exc).__name__}: {exc})")
                    continue
            kept.append(mine)
            dataset_of[mine.participant] = label
        if not kept:
            raise FileNotFoundError(f"mobgap failed on every recording under {folder}")
        trials += kept
    lopo_summary, lopo_chosen, held = None, None, None
    if with_lopo and len({tr.participant for tr in trials}) >= 2:
        held, lopo_chosen = lopo_folds(trials, jobs, window_s)
        pooled_held = Counts()
        for q, _ in lopo_chosen:
            pooled_held.merge(held[q])
        lopo_summary = pooled_held.summary()
    ours_all, theirs_all = Counts(), Counts()
    ours_by = {label: Counts() for label in labels}
    theirs_by = {label: Counts() for label in labels}
    per_trial = []
    run_ours(trials[0], make_pipeline(trials[0].sensor_height_m, window_s=window_s))  # warm-up
    for tr in trials:
        c_ours = Counts()
        det = run_ours(tr, make_pipeline(tr.sensor_height_m, window_s=window_s))
        c_ours.add(tr, det)
        ours_all.merge(c_ours)
        ours_by[dataset_of[tr.participant]].merge(c_ours)
        c_theirs = None
        if tr.name in theirs:
            c_theirs = Counts()
            c_theirs.add(tr, theirs[tr.name])
            theirs_all.merge(c_theirs)
            theirs_by[dataset_of[tr.participant]].merge(c_theirs)
        per_trial.append((tr.name, c_ours.summary(), c_theirs.summary() if c_theirs else None))
    by_dataset: dict[str, dict[str, Any]] = {}
    for label, folder in zip(labels, dirs, strict=True):
        people = sorted(p for p, d in dataset_of.items() if d == label)
        lo = None
        if held is not None:
            c = Counts()
            for p in people:
                c.merge(held[p])
            lo = c.summary()
        by_dataset[label] = {
            "data": str(folder), "n_trials": sum(dataset_of[t.participant] == label
                                                  for t in trials),
            "participants": people, "ours": ours_by[label].summary(),
            "mobgap": theirs_by[label].summary() if has_runner[label] else None,
            "lopo": lo}
    return {"trials": per_trial, "ours": ours_all.summary(),
            "mobgap": theirs_all.summary() if any(has_runner.values()) else None,
            "mobgap_note": "; ".join(sorted(set(notes))), "n_trials": len(trials),
            "lopo": lopo_summary, "lopo_chosen": lopo_chosen, "lopo_held_out": held,
            "skipped": skipped, "window_s": window_s, "by_dataset": by_dataset,
            "dataset_of": dataset_of}


def _clean(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _json_figures(ours: dict[str, float], theirs: dict[str, float] | None,
                  lo: dict[str, float] | None) -> dict[str, Any]:
    """The JSON keys of one scope (pooled, or one folder): ``{"ours": .., "mobgap": ..}``."""
    out: dict[str, Any] = {k: {"ours": _clean(ours[src]),
                               "mobgap": _clean(theirs[src]) if theirs else None}
                           for k, src in JSON_KEYS.items()}
    for extra in ("bout_f1_iou", "ic_f1_in_ref_bouts", "ic_fp_in_ref_gaps",
                  "window_cadence_mae_spm", "windows_scored"):
        out[extra] = {"ours": _clean(ours[extra]),
                      "mobgap": _clean(theirs[extra]) if theirs else None}
    out["lopo"] = {k: _clean(lo[src]) for k, src in [*JSON_KEYS.items(), (
        "window_cadence_mae_spm", "window_cadence_mae_spm")] if k != "samples_per_s"
    } if lo else None
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``justwalk evaluate gait [--json] [--data DIR ...]``."""
    ap = argparse.ArgumentParser(prog="justwalk evaluate gait", description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--data", type=Path, action="append", default=None,
                    help="Mobilise-D style folder (data/lab/<cohort>/<id>/data.mat); repeat "
                    "it to score several folders pooled and per folder (default: "
                    f"{DEFAULT_DATA})")
    ap.add_argument("--no-mobgap", action="store_true", help="skip the mobgap comparison")
    ap.add_argument("--no-lopo", action="store_true",
                    help="skip the leave-one-participant-out figures")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="processes for the leave-one-participant-out grid (default: CPUs)")
    ap.add_argument("--window-s", type=float, default=WINDOW_S,
                    help="window length of the window cadence figure (default: %(default)s, "
                    "the stream processor's)")
    ap.add_argument("--uncertainty-out", type=Path, default=None,
                    help="write the measurement-error table of the bout values and daily "
                    "DMOs (justwalk.evaluation.uncertainty) from the leave-one-participant-"
                    "out held-out bouts to this JSON file")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    if not args.window_s > 0:
        ap.error("--window-s must be positive")
    if args.uncertainty_out is not None and args.no_lopo:
        ap.error("--uncertainty-out needs the leave-one-participant-out run (drop --no-lopo)")
    data = args.data or [DEFAULT_DATA]
    try:
        res = evaluate(data, with_mobgap=not args.no_mobgap, with_lopo=not args.no_lopo,
                       jobs=args.jobs, window_s=args.window_s)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.uncertainty_out is not None:
        if res["lopo_held_out"] is None:
            print("error: --uncertainty-out needs at least two participants", file=sys.stderr)
            return 2
        from justwalk.evaluation.uncertainty import table_from_evaluation, write_table

        command = "justwalk evaluate gait " + " ".join(
            [*(f"--data {d['data']}" for d in res["by_dataset"].values()), "--no-mobgap",
             f"--uncertainty-out {args.uncertainty_out}"])
        write_table(args.uncertainty_out, table_from_evaluation(
            res["lopo_held_out"], res["dataset_of"], command=command))
    ours, theirs = res["ours"], res["mobgap"]
    if args.json:
        out = _json_figures(ours, theirs, res["lopo"])
        out["window_s"] = res["window_s"]
        out["lopo_chosen"] = {p: c for p, c in res["lopo_chosen"]} if res["lopo"] else None
        out["mobgap_available"] = theirs is not None
        out["mobgap_note"] = res["mobgap_note"]
        out["n_trials"] = res["n_trials"]
        out["skipped"] = res["skipped"]
        out["by_dataset"] = {
            label: {"data": d["data"], "n_trials": d["n_trials"],
                    "participants": d["participants"],
                    **_json_figures(d["ours"], d["mobgap"], d["lopo"])}
            for label, d in res["by_dataset"].items()}
        print(json.dumps(out, indent=2))
        return 0
    if theirs is None:
        print(f"NOTE: mobgap not run: {res['mobgap_note']}\n")
    for reason in res["skipped"]:
        print(f"SKIPPED {reason}")
    if res["skipped"]:
        print()
    for name, o, t in res["trials"]:
        print(_table(name, o, t))
        print()
    if len(res["by_dataset"]) > 1:
        for label, d in res["by_dataset"].items():
            print(_table(f"DATASET {label} ({d['n_trials']} referenced recordings, "
                         f"{len(d['participants'])} participants)", d["ours"], d["mobgap"]))
            if d["lopo"] is not None:
                print(_table(f"DATASET {label}, LEAVE-ONE-PARTICIPANT-OUT (folds over all "
                             "datasets' participants)", d["lopo"], d["mobgap"]))
            print()
    print(_table(f"OVERALL ({res['n_trials']} referenced recordings, pooled; windows of "
                 f"{res['window_s']:g} s)", ours, theirs))
    if res["lopo"] is not None:
        print()
        print(_table("LEAVE-ONE-PARTICIPANT-OUT (ours: parameters of TUNING_GRID chosen on the "
                     "other participants; mobgap untuned)", res["lopo"], theirs))
        for p, c in res["lopo_chosen"]:
            print(f"  held out {p}: " + ", ".join(f"{k}={v:g}" for k, v in c.items()))
    if args.uncertainty_out is not None:
        print(f"\nmeasurement-error table written to {args.uncertainty_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
