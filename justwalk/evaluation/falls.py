"""``justwalk evaluate falls``: near-fall and fall detection against real recordings.

Usage::

    justwalk evaluate falls [--json] [--data DIR] [--loso | --sensitivity]

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
rate) and go through the stream processor's path: in 0.5 s chunks, ``GaitPipeline.process``
first, then ``FallMonitor.process`` with the same chunk and the steps the pipeline released
for it. The figures come from the candidates' features (so that ``--loso`` can re-decide
every grid setting); for the shipped detectors the command checks that these decisions are
exactly the events the monitor reported chunk by chunk, and fails if not.

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

Leave-one-subject-out (``--loso``)
----------------------------------
The detector thresholds that have no published or physical value and the window constants
(``NEAR_FALL_GRID``, ``FALL_GRID``; origins and ranges in ``justwalk/falls/README.md``) are
tuned on a grid. There is one
fold per group (each SisFall subject, each Mobilise-D participant, the simulated walkers):
the setting is chosen on the other groups' recordings only and applied to the group's, and
the figures reported are those of the held-out predictions. Choice: highest sensitivity +
specificity - ``FA_WEIGHT_H`` x the detector's false alarms per hour of walking, falls
first, then near-falls given the fall setting; ties go to the setting deepest inside the
best plateau.
The shipped defaults are the settings most folds chose (printed with the per-fold choices).
Candidates are scanned once per setting of the window constants that change features and
decided for all settings at once (``peak_half_window_s`` only selects candidates and is
re-decided from each candidate's dominance), so the whole run takes about half a minute.

Sensitivity (``--sensitivity``)
-------------------------------
Leave-one-subject-out figures with each window constant fixed at each value of its grid,
and each fixed physical or literature constant at a few values around it
(``SENSITIVITY_NEAR_FALL``, ``SENSITIVITY_FALL``): which constants the held-out figures
rest on.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from justwalk.evaluation import sisfall
from justwalk.falls import (
    GRAVITY_MPS2,
    BlockFrontEnd,
    Blocks,
    Candidate,
    CandidateDetector,
    DetectorState,
    FallDetector,
    FallEvent,
    FallFeatures,
    FallMonitor,
    NearFallDetector,
    NearFallFeatures,
)
from justwalk.gait.pipeline import GaitPipeline

F = TypeVar("F")
D = TypeVar("D", bound=CandidateDetector[Any])

SAMPLE_RATE_HZ = 100.0
CHUNK_S = 0.5
"""Chunk length of the processor's path (a device chunk)."""
SENSOR_HEIGHT_M = 1.0
"""Sensor height given to ``GaitPipeline``: it scales step lengths only, not step times."""
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
# LOSO grids (see justwalk/falls/README.md): the thresholds without a published or physical
# value, over physically plausible ranges, and the window constants over the ranges their
# physical arguments allow (written down before any of them was evaluated).
_G = GRAVITY_MPS2
NEAR_FALL_GRID: dict[str, tuple[Any, ...]] = {
    "gate_acc_mps2": (1.4 * _G, 1.6 * _G, 1.8 * _G, 2.0 * _G),
    "max_step_interval_cv": (0.3, 0.35, 0.4, 0.45, 0.5),
    "min_acc_ratio": (2.0, 2.5, 3.0, 3.5, 4.0, 4.5),
    "min_gyr_ratio": (1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 2.8),
    "peak_half_window_s": (0.3, 0.5, 0.7, 1.0),
    "perturbation_half_s": (0.5, 0.75, 1.0),
    "before_s": (3.0, 3.5, 4.0, 4.5, 5.0),
}
FALL_GRID: dict[str, tuple[Any, ...]] = {
    "min_impact_acc_mps2": (1.5 * _G, 1.6 * _G, 1.7 * _G, 1.8 * _G, 2.0 * _G, 2.2 * _G,
                            2.5 * _G),
    "min_tilt_change_deg": (10.0, 15.0, 20.0, 25.0, 30.0),
    "max_gyr_after_radps": (0.5, 0.75, 1.0, 1.5, 2.0),
    "tilt_before_window_s": tuple((end - length, end) for end in (-1.0, -1.5, -2.0)
                                  for length in (1.0, 2.0, 3.0)),
}
FA_WEIGHT_H = 0.1
"""Tuning objective: sensitivity + specificity - this x false alarms per hour of walking."""
SIMULATED_WALKING_MIN = 30.0


@dataclass
class Recording:
    """One evaluated recording: its labels and its front-end blocks.

    The blocks are the signal chain's output before any detector parameter is applied.
    """

    name: str
    group: str
    """Subject (or walking-data group) for leave-one-subject-out."""
    label: str
    duration_s: float
    reference_us: int
    """Time of the largest acceleration (reference event time for latency)."""
    blocks: Blocks
    walking_only: bool = False
    """Counts towards false alarms per hour of walking."""
    source: str = "sisfall"
    streamed: list[FallEvent] = field(default_factory=list)
    """Events ``FallMonitor`` reported chunk by chunk (the detectors given to ``_analyse``)."""
    _scans: dict[tuple[Any, ...], tuple[tuple[float, ...], list[Candidate[Any]]]] = field(
        default_factory=dict, repr=False)

    def candidates(self, det: CandidateDetector[F]) -> list[Candidate[F]]:
        """The detector's candidates (features, not yet decided).

        Scanned once per setting of the parameters that change features; a scan with
        smaller ``candidate_params`` (a lower gate, a shorter peak half-window) is reused:
        it holds every candidate of ``det``, and ``accepts`` re-checks the rest.
        """
        key = _scan_key(det)
        want = tuple(getattr(det, p) for p in det.candidate_params)
        hit = self._scans.get(key)
        if hit is None or any(h > w for h, w in zip(hit[0], want, strict=True)):
            hit = (want, det.scan_blocks(DetectorState(), self.blocks))
            self._scans[key] = hit
        return [c for c in hit[1] if c.peak.acc_mps2 >= det.gate_acc_mps2]


def _scan_key(det: CandidateDetector[Any]) -> tuple[Any, ...]:
    params = _params(det)
    return (type(det).__name__, *sorted((k, v) for k, v in params.items()
                                        if k not in det.decision_params))


def _params(det: CandidateDetector[Any]) -> dict[str, Any]:
    """Constructor parameters of a detector (stored unchanged as attributes)."""
    return {k: v for k, v in vars(det).items() if not k.startswith("_")}


def _with(det: D, cfg: dict[str, Any]) -> D:
    """A detector like ``det`` with the parameters in ``cfg`` replaced."""
    return type(det)(**{**_params(det), **cfg})


def _default_data_dir() -> Path:
    here = Path.cwd() / ".." / "shared" / "data" / "sisfall"
    if here.is_dir():
        return here.resolve()
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "sisfall"


def stream(samples: npt.NDArray[np.float64], monitor: FallMonitor
           ) -> tuple[npt.NDArray[np.int64], list[FallEvent]]:
    """The stream processor's path over one recording (device time 0 at its first sample).

    Chunk by chunk (``CHUNK_S``): ``GaitPipeline.process``, then ``FallMonitor.process`` with
    the same chunk and the steps the pipeline released for it. Returns every released step
    time and the monitor's events.
    """
    pipeline = GaitPipeline(sensor_height_m=SENSOR_HEIGHT_M)
    gait = pipeline.initial_state(t0_us=0, sample_rate_hz=SAMPLE_RATE_HZ)
    state = monitor.initial_state()
    n = round(CHUNK_S * SAMPLE_RATE_HZ)
    steps: list[int] = []
    events: list[FallEvent] = []
    for i in range(0, samples.shape[0], n):
        chunk = samples[i : i + n]
        released = [s.t_us for s in pipeline.process(gait, chunk[:, 0:3], chunk[:, 3:6]).steps]
        steps += released
        events += monitor.process(state, chunk, round(i * 1e6 / SAMPLE_RATE_HZ),
                                  SAMPLE_RATE_HZ, released)
    return np.asarray(steps, dtype=np.int64), events


def _analyse(name: str, group: str, label: str, samples: npt.NDArray[np.float64],
             near: NearFallDetector, fall: FallDetector, *, walking_only: bool) -> Recording:
    acc_norm = np.sqrt((samples[:, 0:3] ** 2).sum(axis=1))
    ref_us = round(int(np.argmax(acc_norm)) * 1e6 / SAMPLE_RATE_HZ)
    steps, events = stream(samples, FallMonitor(near_fall=near, fall=fall))
    # the same block rows and steps, all at once, for re-deciding any grid setting
    blocks = BlockFrontEnd().blocks(samples, 0, SAMPLE_RATE_HZ, steps)
    rec = Recording(name, group, label, samples.shape[0] / SAMPLE_RATE_HZ, ref_us, blocks,
                    walking_only=walking_only, source=name.split("/")[0]
                    if name.startswith(("mobilised/", "simulated/")) else "sisfall",
                    streamed=events)
    rec.candidates(near)
    rec.candidates(fall)
    return rec


def streaming_mismatches(outcomes: Sequence[Outcome]) -> list[str]:
    """Recordings whose decided events differ from those ``FallMonitor`` streamed."""
    def key(e: FallEvent) -> tuple[int, int]:
        return (e.detected_us, e.peak_us)

    return [o.rec.name for o in outcomes
            if sorted([c.event for c in o.near + o.fall if c.event is not None], key=key)
            != sorted(o.rec.streamed, key=key)]


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


@dataclass
class Outcome:
    """Detections of one recording under one set of parameters."""

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


def _detections(rec: Recording, det: CandidateDetector[F]) -> list[Candidate[F]]:
    """Accepted candidates after the refractory period, with their streaming events."""
    out: list[Candidate[F]] = []
    quiet = -(2**62)
    for c in rec.candidates(det):
        if det.decide(c.features) and c.peak.peak_us >= quiet:
            event = det.make_event(rec.blocks, c.peak.k, c.peak, c.detected_us, c.features)
            out.append(Candidate(c.peak, c.detected_us, c.features, True, event))
            quiet = c.peak.peak_us + round(det.refractory_s * 1e6)
    return out


def decide_all(recs: Sequence[Recording], near: NearFallDetector,
               fall: FallDetector) -> list[Outcome]:
    """Apply the detectors to every recording."""
    return [Outcome(r, _detections(r, near), _detections(r, fall)) for r in recs]


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


@dataclass(frozen=True)
class Fold:
    """One leave-one-subject-out fold: recordings (indices) to tune on and to test."""

    group: str
    train: tuple[int, ...]
    test: tuple[int, ...]


def folds(recs: Sequence[Recording]) -> list[Fold]:
    """One fold per group: its recordings are the test set, all others the tuning set.

    Groups are SisFall subjects, Mobilise-D participants, and the simulated walkers.
    """
    out = []
    for g in sorted({r.group for r in recs}):
        train = tuple(i for i, r in enumerate(recs) if r.group != g)
        test = tuple(i for i, r in enumerate(recs) if r.group == g)
        out.append(Fold(g, train, test))
    return out


@dataclass
class _Table:
    """Per-recording predictions of every grid setting of one detector."""

    configs: list[dict[str, Any]]
    shape: tuple[int, ...]
    has: npt.NDArray[np.bool_]
    """(configs, recordings): at least one event."""
    alarms: npt.NDArray[np.float64]
    """(configs, recordings): events in walking recordings (refractory period applied)."""


def _grid_configs(grid: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*grid.values())]


def _table(recs: Sequence[Recording], det: CandidateDetector[Any],
           grid: dict[str, tuple[Any, ...]]) -> _Table:
    """Decide every grid setting on every recording.

    Candidates are scanned once per setting of the feature parameters (with the lowest
    gate of the grid); the decision parameters are applied to all of them at once with
    ``accepts``.
    """
    configs = _grid_configs(grid)
    n = len(recs)
    has = np.zeros((len(configs), n), dtype=bool)
    alarms = np.zeros((len(configs), n))
    walking = np.array([r.walking_only for r in recs])
    by_scan: dict[tuple[Any, ...], list[int]] = {}
    for i, cfg in enumerate(configs):
        by_scan.setdefault(_scan_key(_with(det, cfg)), []).append(i)
    for members in by_scan.values():
        dets = [_with(det, configs[i]) for i in members]
        lowest = _with(dets[0], {p: min(getattr(d, p) for d in dets)
                                 for p in det.candidate_params if p in vars(det)})
        cols = _columns(recs, lowest)
        cand_walking = walking[cols.rec]
        for i, d in zip(members, dets, strict=True):
            mask = np.asarray(d.accepts(cols.features), dtype=bool)
            has[i] = np.bincount(cols.rec[mask], minlength=n) > 0
            alarms[i] = _count_events(cols, mask & cand_walking, d.refractory_s, n)
    return _Table(configs, tuple(len(v) for v in grid.values()), has, alarms)


@dataclass
class _Columns:
    rec: npt.NDArray[np.int64]
    peak_us: npt.NDArray[np.int64]
    features: Any
    """The detector's features dataclass with one array per field."""


_FEATURES: dict[type, type] = {NearFallDetector: NearFallFeatures, FallDetector: FallFeatures}


def _columns(recs: Sequence[Recording], det: CandidateDetector[Any]) -> _Columns:
    rec_idx: list[int] = []
    peaks: list[int] = []
    rows: list[Any] = []
    for i, r in enumerate(recs):
        for c in r.candidates(det):
            rec_idx.append(i)
            peaks.append(c.peak.peak_us)
            rows.append(c.features)
    cls = _FEATURES[type(det)]
    feats = cls(**{f.name: np.array([getattr(x, f.name) for x in rows], dtype=np.float64)
                   for f in dataclasses.fields(cls)})
    return _Columns(np.array(rec_idx, dtype=np.int64), np.array(peaks, dtype=np.int64), feats)


def _count_events(cols: _Columns, mask: npt.NDArray[np.bool_], refractory_s: float,
                  n: int) -> npt.NDArray[np.float64]:
    """Events per recording among the masked candidates, with the refractory period."""
    out = np.zeros(n)
    last_rec, quiet = -1, 0
    for j in np.flatnonzero(mask):  # candidates are in recording, then time order
        r, t = int(cols.rec[j]), int(cols.peak_us[j])
        if r != last_rec:
            last_rec, quiet = r, -(2**62)
        if t >= quiet:
            out[r] += 1
            quiet = t + round(refractory_s * 1e6)
    return out


@dataclass
class _Labels:
    """Per-recording class masks and walking time, as in ``metrics``."""

    near_pos: npt.NDArray[np.float64]
    near_neg: npt.NDArray[np.float64]
    fall_pos: npt.NDArray[np.float64]
    fall_neg: npt.NDArray[np.float64]
    walking_h: npt.NDArray[np.float64]

    @classmethod
    def of(cls, recs: Sequence[Recording]) -> _Labels:
        sis = np.array([r.source == "sisfall" for r in recs])
        lab = np.array([r.label for r in recs])
        walk = np.array([r.walking_only for r in recs])
        dur = np.array([r.duration_s for r in recs])
        f = np.float64
        return cls((sis & (lab == NEAR_FALL)).astype(f),
                   (sis & ((lab == WALKING) | (lab == OTHER))).astype(f),
                   (sis & (lab == FALL)).astype(f), (sis & (lab != FALL)).astype(f),
                   np.where(walk, dur / 3600.0, 0.0))


def _scores(pred: npt.NDArray[np.bool_], alarms: npt.NDArray[np.float64],
            pos: npt.NDArray[np.float64], neg: npt.NDArray[np.float64],
            walking_h: npt.NDArray[np.float64],
            train: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Tuning objective of every setting (rows of ``pred``) on the ``train`` recordings.

    Sensitivity + specificity - ``FA_WEIGHT_H`` x the detector's false alarms (``alarms``)
    per hour of walking.
    """
    p = pred.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = (p @ (pos * train)) / (pos @ train)
        spec = 1.0 - (p @ (neg * train)) / (neg @ train)
        fa = (alarms @ train) / (walking_h @ train)
    return np.nan_to_num(sens) + np.nan_to_num(spec) - FA_WEIGHT_H * np.nan_to_num(fa)


def _best(scores: npt.NDArray[np.float64], shape: tuple[int, ...]) -> int:
    """Index of the best setting.

    Among the best-scoring settings, the one deepest inside their plateau wins (largest
    number of grid steps, in any direction, to a worse setting or to the grid's edge): the
    most robust to a shift of any threshold. Remaining ties go to the setting whose grid
    neighbours score best on average, then to the one nearest the grid centre.
    """
    grid = np.round(scores, 9).reshape(shape)
    top = np.pad(grid == grid.max(), 1, constant_values=False)
    depth = ndimage.distance_transform_cdt(top, metric="chessboard")
    depth = depth[tuple(slice(1, -1) for _ in shape)].ravel()
    ones = np.ones((3,) * len(shape))
    total = ndimage.convolve(grid, ones, mode="constant", cval=0.0)
    count = ndimage.convolve(np.ones(shape), ones, mode="constant", cval=0.0)
    neigh = np.round(total / count, 9).ravel()
    centre = (np.array(shape) - 1) / 2.0
    dist = np.abs(np.indices(shape).reshape(len(shape), -1).T - centre).sum(axis=1)
    return int(np.lexsort((-dist, neigh, depth, grid.ravel()))[-1])


@dataclass(frozen=True)
class Choice:
    """Settings tuned on one fold's training recordings."""

    group: str
    near: dict[str, Any]
    fall: dict[str, Any]


class Tuner:
    """Chooses grid settings on any subset of recordings.

    The predictions of every setting on every recording are computed once (they depend on
    the signals and the setting only); ``choose(train)`` then scores the settings on the
    ``train`` recordings alone, so a fold's choice never sees the held-out labels. Falls
    are tuned first; near-falls then with that fall setting (a recording with a fall event
    is predicted fall, not near-fall).
    """

    def __init__(self, recs: Sequence[Recording], near: NearFallDetector,
                 fall: FallDetector, *, near_grid: dict[str, tuple[Any, ...]] | None = None,
                 fall_grid: dict[str, tuple[Any, ...]] | None = None) -> None:
        self.near, self.fall = near, fall
        self.labels = _Labels.of(recs)
        self.near_table = _table(recs, near, NEAR_FALL_GRID if near_grid is None else near_grid)
        self.fall_table = _table(recs, fall, FALL_GRID if fall_grid is None else fall_grid)

    def choose(self, train: Sequence[int]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Near-fall and fall settings that score best on the recordings ``train``."""
        lab, nt, ft_ = self.labels, self.near_table, self.fall_table
        w = np.zeros(lab.walking_h.size)
        w[list(train)] = 1.0
        fi = _best(_scores(ft_.has, ft_.alarms, lab.fall_pos, lab.fall_neg, lab.walking_h, w),
                   ft_.shape)
        near_pred = nt.has & ~ft_.has[fi]
        ni = _best(_scores(near_pred, nt.alarms, lab.near_pos, lab.near_neg, lab.walking_h, w),
                   nt.shape)
        return nt.configs[ni], ft_.configs[fi]


def tune(recs: Sequence[Recording], near: NearFallDetector, fall: FallDetector
         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Grid settings chosen on all of ``recs``."""
    return Tuner(recs, near, fall).choose(range(len(recs)))


def loso(recs: Sequence[Recording], near: NearFallDetector, fall: FallDetector, *,
         near_grid: dict[str, tuple[Any, ...]] | None = None,
         fall_grid: dict[str, tuple[Any, ...]] | None = None,
         ) -> tuple[list[Outcome], list[Choice]]:
    """Held-out outcomes of every fold (settings tuned on the other groups) and the choices.

    ``near_grid``/``fall_grid`` replace ``NEAR_FALL_GRID``/``FALL_GRID``.
    """
    tuner = Tuner(recs, near, fall, near_grid=near_grid, fall_grid=fall_grid)
    outcomes: list[Outcome] = []
    chosen = []
    for fold in folds(recs):
        cn, cf = tuner.choose(fold.train)
        chosen.append(Choice(fold.group, cn, cf))
        outcomes += decide_all([recs[i] for i in fold.test], _with(near, cn), _with(fall, cf))
    return outcomes, chosen


NEAR_FALL_WINDOWS = ("peak_half_window_s", "perturbation_half_s", "before_s")
"""The window constants in ``NEAR_FALL_GRID`` (the rest are thresholds)."""
FALL_WINDOWS = ("tilt_before_window_s",)
"""The window constants in ``FALL_GRID``."""
SENSITIVITY_NEAR_FALL: dict[str, tuple[Any, ...]] = {
    "max_step_gap_s": (1.0, 1.2, 1.5, 2.0, 2.5, 3.0),
    "max_tilt_range_deg": (15.0, 20.0, 30.0, 40.0, 60.0),
    "min_steps_before": (2, 3, 4),
    "post_window_s": ((0.5, 3.0), (1.0, 3.0), (1.0, 3.5), (1.5, 3.5)),
    "min_gait_acc_mps2": (1.01 * _G, 1.03 * _G, 1.05 * _G, 1.07 * _G),
    "acc_floor_mps2": (0.05 * _G, 0.1 * _G, 0.2 * _G),
    "gyr_floor_radps": (math.radians(10.0), math.radians(20.0), math.radians(30.0)),
    "max_tilt_change_deg": (25.0, 34.0, 45.0),
    "max_tilt_after_deg": (45.0, 60.0, 75.0),
}
"""Fixed (physical or literature) near-fall constants swept by ``--sensitivity``."""
SENSITIVITY_FALL: dict[str, tuple[Any, ...]] = {
    "peak_half_window_s": (0.5, 0.75, 1.0, 1.5),
    "tilt_after_window_s": ((1.0, 2.0), (1.2, 2.0), (1.6, 2.0), (1.6, 2.2)),
    "min_tilt_after_deg": (50.0, 55.0, 60.0, 65.0),
}
"""Fixed fall constants swept by ``--sensitivity``."""


@dataclass(frozen=True)
class SensitivityRow:
    """Held-out figures with one constant fixed at one value."""

    detector: str
    """``near_fall`` or ``fall``."""
    name: str
    value: Any
    metrics: dict[str, Any]


def sensitivity(recs: Sequence[Recording], near: NearFallDetector, fall: FallDetector
                ) -> list[SensitivityRow]:
    """Leave-one-subject-out figures with each window constant fixed at each grid value.

    Each window constant of the grids (``NEAR_FALL_WINDOWS``, ``FALL_WINDOWS``) and each
    constant of ``SENSITIVITY_NEAR_FALL``/``SENSITIVITY_FALL`` in turn is fixed at each of
    its values, the other window constants at their shipped defaults, and the thresholds
    are tuned per fold as in ``loso``. A constant whose every value meets the targets does
    not rest on the value chosen.
    """
    near_grid = {k: v for k, v in NEAR_FALL_GRID.items() if k not in NEAR_FALL_WINDOWS}
    fall_grid = {k: v for k, v in FALL_GRID.items() if k not in FALL_WINDOWS}
    sweeps: list[tuple[str, str, tuple[Any, ...]]] = (
        [("near_fall", k, NEAR_FALL_GRID[k]) for k in NEAR_FALL_WINDOWS]
        + [("fall", k, FALL_GRID[k]) for k in FALL_WINDOWS]
        + [("near_fall", k, v) for k, v in SENSITIVITY_NEAR_FALL.items()]
        + [("fall", k, v) for k, v in SENSITIVITY_FALL.items()])
    out = []
    for which, name, values in sweeps:
        for v in values:
            n = _with(near, {name: v}) if which == "near_fall" else near
            f = _with(fall, {name: v}) if which == "fall" else fall
            outcomes, _ = loso(recs, n, f, near_grid=near_grid, fall_grid=fall_grid)
            out.append(SensitivityRow(which, name, v, metrics(outcomes)))
    return out


def meets_targets(m: dict[str, Any]) -> bool:
    """The issue's targets (near-fall, fall, false alarms per hour of walking)."""
    return bool(m["near_fall_sensitivity"] >= 0.90 and m["near_fall_specificity"] >= 0.95
                and m["fall_sensitivity"] >= 0.95 and m["fall_specificity"] >= 0.98
                and m["false_alarms_per_hour_walking"] <= 0.5)


def most_chosen(chosen: Sequence[Choice]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shipped-defaults rule: the near-fall and the fall setting most folds chose.

    Ties go to the first such setting in fold order.
    """
    near = Counter(tuple(c.near.items()) for c in chosen).most_common(1)[0][0]
    fall = Counter(tuple(c.fall.items()) for c in chosen).most_common(1)[0][0]
    return dict(near), dict(fall)


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
    parser.add_argument("--sensitivity", action="store_true",
                        help="leave-one-subject-out figures with each window and physical "
                             "constant fixed at each value of its range")
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
    if args.sensitivity:
        _print_sensitivity(sensitivity(recs, near, fall), near, fall, notes)
        return 0
    if args.loso:
        outcomes, chosen = loso(recs, near, fall)
        m = metrics(outcomes)
        title = "Fall detection, leave-one-subject-out (thresholds tuned without the subject)"
    else:
        outcomes = decide_all(recs, near, fall)
        differ = streaming_mismatches(outcomes)
        if differ:
            print("error: the decisions differ from the streamed events on "
                  + ", ".join(differ), file=sys.stderr)
            return 1
        m = metrics(outcomes)
        chosen = []
        title = "Fall detection with the shipped thresholds"
        notes.append("decisions equal the events FallMonitor streamed in "
                     f"{CHUNK_S:g} s chunks with the gait pipeline's steps")
    if args.json:
        print(json.dumps({k: (None if isinstance(m[k], float) and math.isnan(m[k]) else m[k])
                          for k in JSON_KEYS}))
        return 0
    _print_report(m, title, notes)
    if chosen:
        _print_choices(chosen, near, fall)
    return 0


def _show(name: str, v: Any) -> str:
    if isinstance(v, tuple):
        return "(" + ",".join(f"{x:g}" for x in v) + ")"
    if name.endswith("_mps2"):
        return f"{v / GRAVITY_MPS2:.2f}"
    return f"{math.degrees(v):g}" if name == "gyr_floor_radps" else f"{v:g}"


def _print_sensitivity(rows: Sequence[SensitivityRow], near: NearFallDetector,
                       fall: FallDetector, notes: list[str]) -> None:
    print("Leave-one-subject-out figures with one constant fixed (other windows at their "
          "defaults, thresholds tuned per fold)")
    for n in notes:
        print(f"  ({n})")
    print(f"  {'constant':34s} {'value':>11s}  near-fall sens/spec  fall sens/spec  "
          "false alarms  targets")
    for r in rows:
        m = r.metrics
        shipped = getattr(near if r.detector == "near_fall" else fall, r.name) == r.value
        mark = "*" if shipped else " "
        print(f"  {r.detector + '.' + _short(r.name):34s} {_show(r.name, r.value):>10s}{mark}  "
              f"{m['near_fall_sensitivity']:5.3f} / {m['near_fall_specificity']:5.3f}"
              f"        {m['fall_sensitivity']:5.3f} / {m['fall_specificity']:5.3f}"
              f"  {m['false_alarms_walking']:12d}  {'met' if meets_targets(m) else 'MISSED'}")
    print("  (* shipped value)")


def _short(name: str) -> str:
    if name == "gyr_floor_radps":
        return "gyr_floor_deg/s"
    return name.replace("_mps2", "_g").replace("_radps", "_rad/s")


def _print_choices(chosen: Sequence[Choice], near: NearFallDetector,
                   fall: FallDetector) -> None:
    """Per-fold settings, the most chosen ones and the shipped defaults."""
    for title, grid, pick, det in (("near-fall", NEAR_FALL_GRID, lambda c: c.near, near),
                                   ("fall", FALL_GRID, lambda c: c.fall, fall)):
        names = list(grid)
        widths = [max(len(_short(n)), 6) for n in names]
        print(f"  {title} settings chosen per held-out group (tuned on the others):")
        print("    " + f"{'group':18s}" + " ".join(f"{_short(n):>{w}s}"
                                                    for n, w in zip(names, widths, strict=True)))
        rows = [("  " + c.group, pick(c)) for c in chosen]
        most = most_chosen(chosen)[0 if title == "near-fall" else 1]
        shipped = {n: getattr(det, n) for n in names}
        rows += [("most chosen", most), ("shipped", shipped)]
        for label, cfg in rows:
            print("    " + f"{label:18s}" + " ".join(
                f"{_show(n, cfg[n]):>{w}s}" for n, w in zip(names, widths, strict=True)))
        if any(most[n] != shipped[n] and not (isinstance(most[n], float)
                                              and math.isclose(most[n], shipped[n]))
               for n in names):
            print(f"    (the shipped {title} defaults are not the most chosen setting)")


if __name__ == "__main__":
    raise SystemExit(main())
