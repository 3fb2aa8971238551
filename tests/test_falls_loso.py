"""Leave-one-subject-out tuning of the fall detectors: each fold's settings come from its
training subjects only, and the fast grid scoring decides exactly like the detectors.

Synthetic recordings (no data files): three "subjects", each with a stumble, a fall, walking
and lying down on purpose."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from justwalk.evaluation import falls as ev
from justwalk.falls import FallDetector, NearFallDetector
from tests.test_falls_detectors import (
    FS,
    fall_recording,
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


def test_folds_hold_out_exactly_one_subject(recordings):
    folds = ev.folds(recordings)
    assert [f.group for f in folds] == sorted(SUBJECTS)
    for f in folds:
        assert {recordings[i].group for i in f.test} == {f.group}
        assert f.group not in {recordings[i].group for i in f.train}
        assert sorted(f.train + f.test) == list(range(len(recordings)))


def test_a_fold_chooses_what_its_training_subjects_alone_choose(recordings):
    near, fall = NearFallDetector(), FallDetector()
    tuner = ev.Tuner(recordings, near, fall)
    for f in ev.folds(recordings):
        train_only = [recordings[i] for i in f.train]
        assert tuner.choose(f.train) == ev.tune(train_only, near, fall)


def test_held_out_labels_do_not_change_the_fold_choice(recordings):
    near, fall = NearFallDetector(), FallDetector()
    held_out = SUBJECTS[0]
    # relabel the held-out subject's stumble and fall as harmless activities
    poisoned = [dataclasses.replace(r, label=ev.OTHER)
                if r.group == held_out and r.label in (ev.NEAR_FALL, ev.FALL) else r
                for r in recordings]
    fold = next(f for f in ev.folds(recordings) if f.group == held_out)
    assert (ev.Tuner(poisoned, near, fall).choose(fold.train)
            == ev.Tuner(recordings, near, fall).choose(fold.train))


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
def test_grid_tables_decide_like_the_detectors(recordings, which):
    """The vectorised scoring of every grid setting equals ``decide_all`` with it."""
    near, fall = NearFallDetector(), FallDetector()
    tuner = ev.Tuner(recordings, near, fall)
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


def test_most_chosen_is_the_mode_of_the_folds():
    a, b = {"x": 1.0}, {"x": 2.0}
    chosen = [ev.Choice("g1", a, b), ev.Choice("g2", b, b), ev.Choice("g3", a, a)]
    assert ev.most_chosen(chosen) == (a, b)
