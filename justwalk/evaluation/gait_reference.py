"""Reading Mobilise-D lab recordings with their INDIP reference, and scoring detections.

Data layout (``shared/data/mobilised/README.md``): ``data/lab/<cohort>/<id>/data.mat`` with
``data.TimeMeasure1.<test>.<trial>``; the lower-back IMU is read with the replay loader
(``justwalk.simulator.replay.recording_from_struct``, the same conversion the gateway replay
uses), the reference walking bouts (``Standards.INDIP.MicroWB``) are read here; each file is
loaded once.

Reference times are converted to 0-based samples as mobgap does, ``round(t * fs) - 1``
(the Matlab pipeline used ``t * fs`` as a 1-based index).

Scoring follows issue #3 and Mobilise-D (Kirk et al., Sci Rep 14:1754, 2024):

- initial contacts: reference ICs are those inside reference bouts, detected ICs count
  anywhere in the recording; one-to-one matching within +-``tolerance_s`` (pairs taken in
  order of increasing time difference);
- walking bouts: a detected and a reference bout match when their overlap covers at least
  80 % of both (and, as a second figure, when their intersection over union is >= 0.5);
- bout parameters: per reference bout against the detected bout that overlaps it most; a
  reference bout without any overlapping detection is counted as missed.

A second IC figure isolates step detection from bout detection, as Mobilise-D evaluates its
IC detectors on the reference walking bouts (Micó-Amigo et al. 2023): the same matching,
with only the detected ICs that lie inside a reference bout (widened by the tolerance).

Window cadence: the stream processor publishes the cadence of each tumbling window of
``window_s`` (aligned to multiples of the window since the epoch) straight from the
pipeline's ``WindowResult``. ``window_cadence_errors`` gives, for each of our walking
windows, the reference cadence defined exactly as the pipeline defines its own (``_windows``
and ``_params`` in ``justwalk.gait.pipeline``): the reference ICs inside the window plus the
two before it in the same reference bout as the first inside, cadence = mean of 120 / stride
time over their strides (ICs two apart, at most ``max_stride_time_s``). The summary scores
the walking windows where both are defined ("window cadence MAE").

A diagnostic, not a score: ``same_foot_gaps`` finds where the reference lists two
consecutive contacts of the same foot inside a bout (a contact the reference missed), and
the summary counts the false detected ICs that lie inside such gaps. They are scored as
false like any other; the count says how much of the false-positive figure may be real
steps missing from the reference.

This module does file I/O; it is part of the evaluation layer, not of the gait core.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.io

from justwalk.gait.pipeline import WindowResult, first_sample_at
from justwalk.simulator.replay import participant_info, recording_from_struct

REFERENCE_SYSTEM = "INDIP"


@dataclass(frozen=True)
class Bout:
    """A walking bout in samples [start, end] (inclusive) with its parameters (NaN = none)."""

    start: int
    end: int
    cadence_spm: float = math.nan
    walking_speed_mps: float = math.nan
    stride_length_m: float = math.nan
    stride_time_cv_pct: float = math.nan

    @property
    def n_samples(self) -> int:
        """Length in samples."""
        return self.end - self.start + 1


@dataclass(frozen=True)
class Trial:
    """One referenced recording: IMU in the wire convention plus the reference gait."""

    participant: str
    test: str
    trial: str
    sample_rate_hz: float
    t0_us: int
    samples: npt.NDArray[np.float32]
    """(n, 6): acc x/y/z in m/s^2, gyr x/y/z in rad/s (x up, y right, z forward)."""
    sensor_height_m: float
    ref_bouts: tuple[Bout, ...]
    ref_ics: npt.NDArray[np.int64]
    """Reference initial contacts (samples), NaNs dropped, sorted."""
    ref_ic_sides: tuple[str, ...]

    @property
    def name(self) -> str:
        """Short label, e.g. ``MS/001 Test11 Trial1``."""
        return f"{self.participant} {self.test} {self.trial}"

    @property
    def n_samples(self) -> int:
        """Number of IMU samples."""
        return int(self.samples.shape[0])


@dataclass
class Detection:
    """What a pipeline found in one trial (all times in samples)."""

    ics: npt.NDArray[np.int64]
    bouts: list[Bout]
    seconds: float = 0.0
    """Processing time (s), excluding data loading."""
    ic_sides: list[str] = field(default_factory=list)
    windows: list[WindowResult] = field(default_factory=list)
    """The pipeline's windows (none for other pipelines)."""


def _to_samples(t_s: Any, fs: float) -> npt.NDArray[np.float64]:
    t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
    return np.round(t * fs) - 1


def _cv_pct(durations: Any) -> float:
    d = np.atleast_1d(np.asarray(durations, dtype=np.float64))
    d = d[np.isfinite(d)]
    if d.size < 2:
        return math.nan
    return float(np.std(d, ddof=1) / np.mean(d) * 100.0)


def _num(wb: Any, name: str) -> float:
    try:
        v = float(getattr(wb, name))
    except (AttributeError, TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def _reference(trial_struct: Any, fs: float) -> tuple[list[Bout], list[float], list[str]] | None:
    standards = getattr(trial_struct, "Standards", None)
    ref = getattr(standards, REFERENCE_SYSTEM, None) if standards is not None else None
    raw = getattr(ref, "MicroWB", None) if ref is not None else None
    if raw is None or (isinstance(raw, np.ndarray) and raw.size == 0):
        return None
    bouts: list[Bout] = []
    ics: list[float] = []
    sides: list[str] = []
    for wb in np.atleast_1d(raw):
        start, end = _to_samples([_num(wb, "Start"), _num(wb, "End")], fs)
        if not (np.isfinite(start) and np.isfinite(end)) or end < start:
            raise ValueError(f"reference bout without a valid start and end "
                             f"({getattr(wb, 'Start', None)!r}, {getattr(wb, 'End', None)!r})")
        bouts.append(Bout(
            start=int(start), end=int(end),
            cadence_spm=_num(wb, "Cadence"),
            walking_speed_mps=_num(wb, "WalkingSpeed"),
            stride_length_m=_num(wb, "AverageStrideLength"),
            stride_time_cv_pct=_cv_pct(getattr(wb, "Stride_Duration", [])),
        ))
        ic = _to_samples(getattr(wb, "InitialContact_Event", []), fs)
        lr = np.atleast_1d(np.asarray(getattr(wb, "InitialContact_LeftRight", []),
                                      dtype=object))
        if lr.size != ic.size:  # sides are not scored; keep the contacts
            lr = np.full(ic.size, "unknown", dtype=object)
        for t, s in zip(ic, lr, strict=True):
            if np.isfinite(t):
                ics.append(float(t))
                sides.append(str(s).lower())
    return bouts, ics, sides


def load_trials(data_dir: Path, skipped: list[str] | None = None) -> list[Trial]:
    """Every trial under ``data_dir/data/lab/<cohort>/<id>/data.mat`` with an INDIP reference.

    Trials without reference walking bouts are left out (nothing to score against). A file,
    participant or trial that cannot be read (no sensor height, no lower-back sensor,
    signals not in the expected form) is left out too, with the reason appended to
    ``skipped``, so one bad recording does not stop the evaluation of the others.
    """
    data_dir = Path(data_dir)
    files = sorted(data_dir.glob("data/lab/*/*/data.mat"))
    if not files:
        files = sorted(data_dir.rglob("data.mat"))
    reasons = skipped if skipped is not None else []
    trials: list[Trial] = []
    for path in files:
        try:
            mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False,
                                   mat_dtype=True)
            tm = mat["data"].TimeMeasure1
        except (OSError, ValueError, KeyError, AttributeError, NotImplementedError,
                scipy.io.matlab.MatReadError) as exc:
            reasons.append(f"{path}: not a Mobilise-D data.mat ({type(exc).__name__}: {exc})")
            continue
        try:
            height = participant_info(path).sensor_height_m
        except (OSError, KeyError, ValueError, AttributeError) as exc:
            reasons.append(f"{path}: no participant info ({type(exc).__name__}: {exc})")
            continue
        if height is None:
            reasons.append(f"{path}: no sensor height in the participant info")
            continue
        for test in tm._fieldnames:
            for trial in getattr(getattr(tm, test), "_fieldnames", []):
                tr = getattr(getattr(tm, test), trial)
                try:
                    rec = recording_from_struct(tr, path, test, trial)
                    parsed = _reference(tr, rec.sample_rate_hz)
                except (KeyError, ValueError, AttributeError, TypeError, IndexError) as exc:
                    reasons.append(f"{path} {test}/{trial}: {type(exc).__name__}: {exc}")
                    continue
                if parsed is None:
                    continue
                bouts, ics, sides = parsed
                order = np.argsort(ics, kind="stable")
                trials.append(Trial(
                    participant=rec.participant, test=test, trial=trial,
                    sample_rate_hz=rec.sample_rate_hz, t0_us=rec.t0_us, samples=rec.samples,
                    sensor_height_m=height, ref_bouts=tuple(bouts),
                    ref_ics=np.asarray(ics, dtype=np.int64)[order],
                    ref_ic_sides=tuple(sides[i] for i in order),
                ))
    return trials


# ----------------------------------------------------------------------------- matching


def match_events(detected: npt.ArrayLike, reference: npt.ArrayLike,
                 tolerance: float) -> list[tuple[int, int]]:
    """One-to-one pairs (i_detected, i_reference) with ``|d - r| <= tolerance``.

    Candidate pairs are accepted in order of increasing distance (ties: earlier first).
    """
    d = np.asarray(detected, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    pairs: list[tuple[float, int, int]] = []
    for j, rv in enumerate(r):
        lo = int(np.searchsorted(d, rv - tolerance, side="left"))
        hi = int(np.searchsorted(d, rv + tolerance, side="right"))
        pairs.extend((abs(d[i] - rv), i, j) for i in range(lo, hi))
    pairs.sort()
    used_d: set[int] = set()
    used_r: set[int] = set()
    out = []
    for _, i, j in pairs:
        if i not in used_d and j not in used_r:
            used_d.add(i)
            used_r.add(j)
            out.append((i, j))
    return sorted(out)


def same_foot_gaps(trial: Trial) -> list[tuple[int, int]]:
    """Places where the reference lists two consecutive contacts of the same foot.

    Within one reference bout, consecutive initial contacts alternate feet; two in a row of
    the same (known) foot mean the reference missed the other foot's contact between them
    (or listed one contact twice). Returns (first, second) sample pairs. A detected contact
    well inside such a pair is scored false although the foot may really have landed there,
    so the evaluation reports how many false contacts fall there.
    """
    r, sides = trial.ref_ics, trial.ref_ic_sides
    gaps: list[tuple[int, int]] = []
    for bout in trial.ref_bouts:
        idx = [k for k in range(r.size) if bout.start <= r[k] <= bout.end]
        for a, b in itertools.pairwise(idx):
            if sides[a] == sides[b] and sides[a] in ("left", "right"):
                gaps.append((int(r[a]), int(r[b])))
    return gaps


def window_cadence_errors(trial: Trial, windows: Sequence[WindowResult],
                          max_stride_time_s: float = 3.0,
                          ) -> list[tuple[int, float, float]]:
    """(window start in device us, our cadence, reference cadence) per walking window.

    ``windows`` are a pipeline's ``WindowResult`` of this trial (any window length: each
    carries its own). The reference cadence is the pipeline's definition applied to the
    reference ICs (module docstring); NaN where the reference has no stride there.
    """
    fs = trial.sample_rate_hz
    r = trial.ref_ics
    group = np.full(r.size, -1, dtype=np.int64)
    for k, bout in enumerate(trial.ref_bouts):
        group[(r >= bout.start) & (r <= bout.end) & (group < 0)] = k
    group[group < 0] = -2 - np.nonzero(group < 0)[0]  # outside every bout: on its own
    out = []
    for w in windows:
        if not w.walking:
            continue
        lo = first_sample_at(trial.t0_us, fs, w.window_start_us)
        hi = first_sample_at(trial.t0_us, fs, w.window_start_us + round(w.window_s * 1e6))
        inside = np.nonzero((r >= lo) & (r < hi))[0]
        ref = math.nan
        if inside.size:
            before = np.nonzero((r < lo) & (group == group[inside[0]]))[0][-2:]
            ics = r[np.concatenate([before, inside])].astype(np.float64)
            if ics.size >= 3:
                d = (ics[2:] - ics[:-2]) / fs
                d = d[(d > 0) & (d <= max_stride_time_s)]
                if d.size:
                    ref = float(np.mean(120.0 / d))
        out.append((w.window_start_us, float(w.params.cadence_spm), ref))
    return out


PAIRED_VALUES = ("cadence_spm", "walking_speed_mps", "stride_length_m", "stride_time_cv_pct",
                 "stride_duration_s", "duration_s")
"""Bout values whose (ours, reference) pairs ``Counts`` keeps. ``stride_duration_s`` is
120 / cadence (the mean stride duration of a bout at that cadence, as Mobilise-D derives it
from the cadence of a bout without its strides); ``duration_s`` the bout's length."""


def _paired_value(b: Bout, key: str, fs: float) -> float:
    if key == "stride_duration_s":
        return 120.0 / b.cadence_spm if b.cadence_spm > 0 else math.nan
    if key == "duration_s":
        return b.n_samples / fs
    return float(getattr(b, key))


def overlap(a: Bout, b: Bout) -> int:
    """Number of samples two bouts share."""
    return max(0, min(a.end, b.end) - max(a.start, b.start) + 1)


def match_bouts(detected: Sequence[Bout], reference: Sequence[Bout], *,
                rule: str = "80pct") -> list[tuple[int, int]]:
    """One-to-one bout matches under the 80 % rule (``"80pct"``) or IoU >= 0.5 (``"iou"``)."""
    cands: list[tuple[float, int, int]] = []
    for i, d in enumerate(detected):
        for j, r in enumerate(reference):
            ov = overlap(d, r)
            if ov == 0:
                continue
            if rule == "80pct":
                ok = ov >= 0.8 * d.n_samples and ov >= 0.8 * r.n_samples
                score = min(ov / d.n_samples, ov / r.n_samples)
            elif rule == "iou":
                score = ov / (d.n_samples + r.n_samples - ov)
                ok = score >= 0.5
            else:
                raise ValueError(f"unknown rule {rule!r}")
            if ok:
                cands.append((-score, i, j))
    cands.sort()
    used_d: set[int] = set()
    used_r: set[int] = set()
    out = []
    for _, i, j in cands:
        if i not in used_d and j not in used_r:
            used_d.add(i)
            used_r.add(j)
            out.append((i, j))
    return sorted(out)


def best_partner(ref: Bout, detected: Sequence[Bout]) -> Bout | None:
    """The detected bout overlapping ``ref`` most, or None."""
    best, best_ov = None, 0
    for d in detected:
        ov = overlap(d, ref)
        if ov > best_ov:
            best, best_ov = d, ov
    return best


@dataclass
class Counts:
    """Pooled counts and errors of one pipeline over some trials."""

    ic_tp: int = 0
    ic_fp: int = 0
    ic_fn: int = 0
    ic_errors_s: list[float] = field(default_factory=list)
    ic_in_bouts_tp: int = 0
    ic_in_bouts_fp: int = 0
    bout_tp: int = 0
    bout_fp: int = 0
    bout_fn: int = 0
    bout_iou_tp: int = 0
    n_ref_bouts: int = 0
    n_det_bouts: int = 0
    n_missed_bouts: int = 0
    ref_same_foot_gaps: int = 0
    ic_fp_in_ref_gaps: int = 0
    window_cadence_errors_spm: list[float] = field(default_factory=list)
    """|ours - reference| of the walking windows where both cadences are defined."""
    errors: dict[str, list[float]] = field(default_factory=lambda: {
        "cadence_spm": [], "walking_speed_mps": [], "stride_length_m": [],
        "stride_time_cv_pct": []})
    pairs: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: {
        k: [] for k in PAIRED_VALUES})
    """(ours, reference) per reference bout with a partner, for every ``PAIRED_VALUES``
    key where both are defined: what ``justwalk.evaluation.uncertainty`` bins by our value."""
    bout_rows: dict[str, list[list[float]]] = field(default_factory=lambda: {
        "ours": [], "ref": []})
    """Every detected (``ours``) and reference (``ref``) bout as a row of
    ``justwalk.mobility.QUANTITIES`` (steps and turns NaN): the daily DMOs of both."""
    samples: int = 0
    seconds: float = 0.0

    def add(self, trial: Trial, det: Detection, *, tolerance_s: float = 0.25) -> None:
        """Score one trial's detection and pool it."""
        fs = trial.sample_rate_hz
        ics = np.sort(np.asarray(det.ics, dtype=np.int64))
        pairs = match_events(ics, trial.ref_ics, tolerance_s * fs)
        self.ic_tp += len(pairs)
        self.ic_fp += len(ics) - len(pairs)
        self.ic_fn += len(trial.ref_ics) - len(pairs)
        self.ic_errors_s += [abs(float(ics[i] - trial.ref_ics[j])) / fs for i, j in pairs]
        tol = tolerance_s * fs
        gaps = same_foot_gaps(trial)
        self.ref_same_foot_gaps += len(gaps)
        matched = {i for i, _ in pairs}
        false_ics = ics[[i for i in range(ics.size) if i not in matched]]
        self.ic_fp_in_ref_gaps += sum(
            int(((false_ics > a + tol) & (false_ics < b - tol)).sum()) for a, b in gaps)
        inside = np.zeros(ics.size, dtype=bool)
        for ref in trial.ref_bouts:
            inside |= (ics >= ref.start - tol) & (ics <= ref.end + tol)
        n_in = len(match_events(ics[inside], trial.ref_ics, tol))
        self.ic_in_bouts_tp += n_in
        self.ic_in_bouts_fp += int(inside.sum()) - n_in
        m80 = match_bouts(det.bouts, trial.ref_bouts, rule="80pct")
        miou = match_bouts(det.bouts, trial.ref_bouts, rule="iou")
        self.bout_tp += len(m80)
        self.bout_fp += len(det.bouts) - len(m80)
        self.bout_fn += len(trial.ref_bouts) - len(m80)
        self.bout_iou_tp += len(miou)
        self.n_ref_bouts += len(trial.ref_bouts)
        self.n_det_bouts += len(det.bouts)
        for ref in trial.ref_bouts:
            partner = best_partner(ref, det.bouts)
            if partner is None:
                self.n_missed_bouts += 1
                continue
            for key, errs in self.errors.items():
                a, b = getattr(partner, key), getattr(ref, key)
                if math.isfinite(a) and math.isfinite(b):
                    errs.append(abs(a - b))
            for key, vals in self.pairs.items():
                a, b = _paired_value(partner, key, fs), _paired_value(ref, key, fs)
                if math.isfinite(a) and math.isfinite(b):
                    vals.append((a, b))
        for side, bouts in (("ours", det.bouts), ("ref", trial.ref_bouts)):
            self.bout_rows[side] += [
                [b.n_samples / fs, math.nan, math.nan, b.walking_speed_mps, b.stride_length_m,
                 b.cadence_spm, _paired_value(b, "stride_duration_s", fs)] for b in bouts]
        self.window_cadence_errors_spm += [
            abs(ours - ref) for _, ours, ref in window_cadence_errors(trial, det.windows)
            if math.isfinite(ours) and math.isfinite(ref)]
        self.samples += trial.n_samples
        self.seconds += det.seconds

    def merge(self, other: Counts) -> None:
        """Pool ``other``'s counts and errors into these."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, list):
                mine.extend(theirs)
            elif isinstance(mine, dict):
                for key, errs in mine.items():
                    errs.extend(theirs[key])  # type: ignore[arg-type]
            else:
                setattr(self, f.name, mine + theirs)

    @staticmethod
    def _f1(tp: int, fp: int, fn: int) -> float:
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan

    def summary(self) -> dict[str, float]:
        """Figures of merit (NaN where undefined)."""
        n_det = self.n_det_bouts

        def mae(key: str) -> float:
            e = self.errors[key]
            return float(np.mean(e)) if e else math.nan

        return {
            "ic_precision": self.ic_tp / (self.ic_tp + self.ic_fp) if self.ic_tp + self.ic_fp
            else math.nan,
            "ic_recall": self.ic_tp / (self.ic_tp + self.ic_fn) if self.ic_tp + self.ic_fn
            else math.nan,
            "ic_f1": self._f1(self.ic_tp, self.ic_fp, self.ic_fn),
            "ic_timing_error_s": float(np.median(self.ic_errors_s)) if self.ic_errors_s
            else math.nan,
            "ic_f1_in_ref_bouts": self._f1(
                self.ic_in_bouts_tp, self.ic_in_bouts_fp,
                self.ic_tp + self.ic_fn - self.ic_in_bouts_tp),
            "bout_f1": self._f1(self.bout_tp, self.bout_fp, self.bout_fn),
            "bout_f1_iou": self._f1(self.bout_iou_tp, n_det - self.bout_iou_tp,
                                    self.n_ref_bouts - self.bout_iou_tp),
            "cadence_mae_spm": mae("cadence_spm"),
            "speed_mae_mps": mae("walking_speed_mps"),
            "stride_length_mae_m": mae("stride_length_m"),
            "stride_time_cv_mae_pp": mae("stride_time_cv_pct"),
            "window_cadence_mae_spm": float(np.mean(self.window_cadence_errors_spm))
            if self.window_cadence_errors_spm else math.nan,
            "windows_scored": float(len(self.window_cadence_errors_spm)),
            "bouts_missed": float(self.n_missed_bouts),
            "ref_same_foot_gaps": float(self.ref_same_foot_gaps),
            "ic_fp_in_ref_gaps": float(self.ic_fp_in_ref_gaps),
            "samples_per_s": self.samples / self.seconds if self.seconds > 0 else math.nan,
        }
