"""Leave-one-subject-out tuning of the fall detectors: each fold's settings come from its
training subjects only, and the fast grid scoring decides exactly like the detectors.

Synthetic recordings (no data files): three "subjects", each with a stumble, a fall, walking
and lying down on purpose."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from justwalk.evaluation import falls as ev
from justwalk.falls import EventType, FallDetector, FallMonitor, NearFallDetector
from tests.test_falls_detectors import (
    FS,
    T0_US,
    _both,
    _double_peak_stumble,
    fall_recording,
    feed,
    still,
    stumble_recording,
    walking,
)

SUBJECTS = ("SA90", "SA91", "SE90")


@pytest.fixture(scope="module")
def recordings() -> list[ev.Recording]:
    assert FS == ev.SAMPLE_RATE_HZ
    near, fall = NearFallDetector(), FallDetector()
    out = []
    for s, subject in enumerate(SUBJECTS):
        stumble, _ = stumble_recording()
        falling, _ = fall_recording()
        lying_down = np.concatenate([still(4.0, seed=s), still(6.0, tilt_deg=90.0, seed=s)])
        for code, label, x in (("D18", ev.NEAR_FALL, stumble), ("F01", ev.FALL, falling),
                               ("D01", ev.WALKING, walking(60.0, seed=10 + s)),
                               ("D14", ev.OTHER, lying_down)):
            out.append(ev._analyse(f"{subject}/{code}_{subject}_R01.txt", subject, label,
                                   x, near, fall, walking_only=label == ev.WALKING))
    return out


@pytest.fixture(scope="module")
def tuner(recordings) -> ev.Tuner:
    """Every grid setting's predictions on every recording, with the shipped detectors
    (read only: ``choose`` and the tables do not change it), computed once."""
    return ev.Tuner(recordings, NearFallDetector(), FallDetector())


def test_folds_hold_out_exactly_one_subject(recordings):
    folds = ev.folds(recordings)
    assert [f.group for f in folds] == sorted(SUBJECTS)
    for f in folds:
        assert {recordings[i].group for i in f.test} == {f.group}
        assert f.group not in {recordings[i].group for i in f.train}
        assert sorted(f.train + f.test) == list(range(len(recordings)))


def test_a_fold_chooses_what_its_training_subjects_alone_choose(recordings, tuner):
    near, fall = NearFallDetector(), FallDetector()
    for f in ev.folds(recordings):
        train_only = [recordings[i] for i in f.train]
        assert tuner.choose(f.train) == ev.tune(train_only, near, fall)


def test_held_out_labels_do_not_change_the_fold_choice(recordings, tuner):
    near, fall = NearFallDetector(), FallDetector()
    held_out = SUBJECTS[0]
    # relabel the held-out subject's stumble and fall as harmless activities
    poisoned = [dataclasses.replace(r, label=ev.OTHER)
                if r.group == held_out and r.label in (ev.NEAR_FALL, ev.FALL) else r
                for r in recordings]
    fold = next(f for f in ev.folds(recordings) if f.group == held_out)
    assert ev.Tuner(poisoned, near, fall).choose(fold.train) == tuner.choose(fold.train)


def test_loso_applies_each_fold_choice_to_its_held_out_subject(recordings):
    near, fall = NearFallDetector(), FallDetector()
    outcomes, chosen = ev.loso(recordings, near, fall)
    assert [c.group for c in chosen] == sorted(SUBJECTS)
    by_name = {o.rec.name: o for o in outcomes}
    assert sorted(by_name) == sorted(r.name for r in recordings)
    for c in chosen:
        test = [r for r in recordings if r.group == c.group]
        expected = ev.decide_all(test, ev._with(near, c.near), ev._with(fall, c.fall))
        for o in expected:
            assert by_name[o.rec.name].predicted == o.predicted
    assert ev.metrics(outcomes)["near_fall_sensitivity"] == 1.0
    assert ev.metrics(outcomes)["fall_sensitivity"] == 1.0


@pytest.mark.parametrize("which", ["near", "fall"])
def test_grid_tables_decide_like_the_detectors(recordings, tuner, which):
    """The vectorised scoring of every grid setting equals ``decide_all`` with it."""
    near, fall = NearFallDetector(), FallDetector()
    table = tuner.near_table if which == "near" else tuner.fall_table
    rng = np.random.default_rng(0)
    for i in rng.choice(len(table.configs), size=25, replace=False):
        cfg = table.configs[i]
        n = ev._with(near, cfg) if which == "near" else near
        f = ev._with(fall, cfg) if which == "fall" else fall
        outcomes = ev.decide_all(recordings, n, f)
        dets = [o.near if which == "near" else o.fall for o in outcomes]
        assert list(table.has[i]) == [bool(d) for d in dets]
        assert list(table.alarms[i]) == [len(d) if o.rec.walking_only else 0
                                         for d, o in zip(dets, outcomes, strict=True)]


@pytest.mark.parametrize("cfg", [
    {"peak_half_window_s": 0.3}, {"peak_half_window_s": 1.0},
    {"peak_half_window_s": 0.7, "gate_acc_mps2": 1.4 * 9.80665},
    {"perturbation_half_s": 1.0, "before_s": 5.0},
])
def test_evaluation_decisions_from_a_shared_scan_are_the_streaming_events(cfg):
    """A recording scanned once (shortest half-window, lowest gate) and re-decided for
    another setting gives exactly the events of that setting's streaming detector."""
    x = np.concatenate([_both(), _double_peak_stumble()])
    near, fall = NearFallDetector(), FallDetector()
    rec = ev._analyse("SA90/D18_SA90_R09.txt", "SA90", ev.NEAR_FALL, x, near, fall,
                      walking_only=False)
    rec.candidates(ev._with(near, {"peak_half_window_s": 0.3, "gate_acc_mps2": 1.1 * 9.8}))
    det = ev._with(near, cfg)
    (outcome,) = ev.decide_all([rec], det, fall)
    streamed, _ = feed(FallMonitor(near_fall=det), x, [50], only=EventType.NEAR_FALL)
    assert [c.event for c in outcome.near] == [
        dataclasses.replace(e, start_us=e.start_us - T0_US, end_us=e.end_us - T0_US,
                            peak_us=e.peak_us - T0_US, detected_us=e.detected_us - T0_US)
        for e in streamed]
    assert outcome.near


def test_sensitivity_fixes_one_constant_at_a_time(recordings, monkeypatch):
    monkeypatch.setattr(ev, "SENSITIVITY_NEAR_FALL", {"max_step_gap_s": (1.0, 2.0)})
    monkeypatch.setattr(ev, "SENSITIVITY_FALL", {})
    near, fall = NearFallDetector(), FallDetector()
    rows = ev.sensitivity(recordings, near, fall)
    assert [(r.detector, r.name, r.value) for r in rows] == (
        [("near_fall", k, v) for k in ev.NEAR_FALL_WINDOWS for v in ev.NEAR_FALL_GRID[k]]
        + [("fall", k, v) for k in ev.FALL_WINDOWS for v in ev.FALL_GRID[k]]
        + [("near_fall", "max_step_gap_s", 1.0), ("near_fall", "max_step_gap_s", 2.0)])
    thresholds_only = (
        {k: v for k, v in ev.NEAR_FALL_GRID.items() if k not in ev.NEAR_FALL_WINDOWS},
        {k: v for k, v in ev.FALL_GRID.items() if k not in ev.FALL_WINDOWS})
    outcomes, _ = ev.loso(recordings, ev._with(near, {"max_step_gap_s": 1.0}), fall,
                          near_grid=thresholds_only[0], fall_grid=thresholds_only[1])
    assert rows[-2].metrics == ev.metrics(outcomes)
    assert all(ev.meets_targets(r.metrics) == (r.metrics["near_fall_sensitivity"] >= 0.9
                                               and r.metrics["near_fall_specificity"] >= 0.95
                                               and r.metrics["fall_sensitivity"] >= 0.95
                                               and r.metrics["fall_specificity"] >= 0.98
                                               and r.metrics["false_alarms_per_hour_walking"]
                                               <= 0.5) for r in rows)


def test_most_chosen_is_the_mode_of_the_folds():
    a, b = {"x": 1.0}, {"x": 2.0}
    chosen = [ev.Choice("g1", a, b), ev.Choice("g2", b, b), ev.Choice("g3", a, a)]
    assert ev.most_chosen(chosen) == (a, b)
