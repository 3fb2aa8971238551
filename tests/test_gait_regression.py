"""Regression of the streaming gait pipeline on the real Mobilise-D recordings (INDIP reference).

Three kinds of check (issue #3):

- the issue's targets that are met hold (IC timing, walking speed, stride length);
- no figure is worse than mobgap's ``MobilisedPipelineImpaired`` on the same trials (its
  figures from the issue text and ``make evaluate-gait``; mobgap is a benchmark-only
  dependency, so its numbers are constants here, re-measured by ``make evaluate-gait``);
- regression thresholds just below what the pipeline reaches today, for the targets not
  yet met (IC F1 >= 0.85, bout F1 >= 0.75, cadence MAE <= 4 steps/min).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from justwalk.evaluation.gait import TUNING_GRID, lopo, run_ours
from justwalk.evaluation.gait_reference import Counts, load_trials, same_foot_gaps
from justwalk.gait.pipeline import GaitPipeline

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mobilised"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not (DATA / "data" / "lab").exists(), reason=f"{DATA} not present"),
]


@pytest.fixture(scope="module")
def trials():  # type: ignore[no-untyped-def]
    return load_trials(DATA)


def test_seven_referenced_trials(trials) -> None:  # type: ignore[no-untyped-def]
    assert len(trials) == 7
    assert sum(len(t.ref_bouts) for t in trials) == 19
    # the INDIP reference misses contacts: 23 places inside its bouts list two consecutive
    # contacts of the same foot (11 in HA/002 Test11, 11 in MS/001 Test11, 1 in HA/001)
    gaps = {t.name: len(same_foot_gaps(t)) for t in trials}
    assert sum(gaps.values()) == 23
    assert gaps["HA/002 Test11 Trial1"] == 11 and gaps["MS/001 Test11 Trial1"] == 11


# mobgap MobilisedPipelineImpaired on these 7 trials (`make evaluate-gait`, and issue #3)
MOBGAP = {"ic_f1": 0.702, "ic_timing_error_s": 0.07, "bout_f1": 0.486,
          "cadence_mae_spm": 5.72, "speed_mae_mps": 0.140, "stride_length_mae_m": 0.174,
          "ic_f1_in_ref_bouts": 0.801}


def _no_worse_than_mobgap(s: dict[str, float]) -> None:
    for key, theirs in MOBGAP.items():
        if "_f1" in key:
            assert s[key] >= theirs, key
        else:
            assert s[key] <= theirs, key


def test_accuracy_does_not_regress(trials) -> None:  # type: ignore[no-untyped-def]
    c = Counts()
    for tr in trials:
        c.add(tr, run_ours(tr))
    s = c.summary()
    # issue #3 targets that are met
    assert s["ic_timing_error_s"] <= 0.05
    assert s["speed_mae_mps"] <= 0.12
    assert s["stride_length_mae_m"] <= 0.15
    _no_worse_than_mobgap(s)
    # reached when written: IC F1 0.774 (inside reference bouts 0.842), bout F1 0.757 /
    # IoU 0.919, cadence 4.33 spm, speed 0.084 m/s, stride length 0.098 m, stride-time CV
    # 8.0 pp
    assert s["ic_f1"] >= 0.76
    assert s["ic_f1_in_ref_bouts"] >= 0.83
    assert s["bout_f1"] >= 0.73
    assert s["bout_f1_iou"] >= 0.89
    assert s["cadence_mae_spm"] <= 4.6
    assert s["stride_time_cv_mae_pp"] <= 9.0


def test_leave_one_participant_out_does_not_regress(trials) -> None:  # type: ignore[no-untyped-def]
    s, chosen = lopo(trials)
    assert len(chosen) == 3
    # the shipped defaults are the values most folds chose
    pipe = GaitPipeline(sensor_height_m=1.0)
    for key in TUNING_GRID:
        stage, name = key.split(".")
        votes = Counter(c[key] for _, c in chosen)
        top = max(votes.values())
        assert getattr(getattr(pipe, stage), name) in {v for v, n in votes.items() if n == top}, key
    assert s["speed_mae_mps"] <= 0.12
    assert s["stride_length_mae_m"] <= 0.15
    _no_worse_than_mobgap(s)
    # reached when written: IC F1 0.762, bout F1 0.684 / IoU 0.895, cadence 4.82 spm,
    # speed 0.107 m/s, stride length 0.126 m
    assert s["ic_f1"] >= 0.75
    assert s["bout_f1"] >= 0.65
    assert s["cadence_mae_spm"] <= 5.2


def test_short_straight_walks_are_found(trials) -> None:  # type: ignore[no-untyped-def]
    c = Counts()
    for tr in trials:
        if tr.test == "Test5":
            c.add(tr, run_ours(tr))
    s = c.summary()
    assert s["ic_recall"] == 1.0
    assert s["bout_f1"] == 1.0
    assert s["cadence_mae_spm"] <= 3.0


def test_real_recording_chunked_equals_whole(trials) -> None:  # type: ignore[no-untyped-def]
    tr = next(t for t in trials if t.participant == "MS/001" and t.test == "Test11")
    whole = run_ours(tr)
    chunked = run_ours(tr, chunk=50)  # 0.5 s chunks, as the gateway sends them
    assert np.array_equal(whole.ics, chunked.ics)
    assert whole.ic_sides == chunked.ic_sides
    assert repr(whole.bouts) == repr(chunked.bouts)


def test_every_step_is_final_within_three_seconds(trials) -> None:  # type: ignore[no-untyped-def]
    """Issue #3: results for a sample are final at most 3 s after it arrives (0.1 s chunks)."""
    worst = 0.0
    for tr in trials:
        pipe = GaitPipeline(sensor_height_m=tr.sensor_height_m)
        state = pipe.initial_state(t0_us=tr.t0_us, sample_rate_hz=tr.sample_rate_hz)
        acc = tr.samples[:, :3].astype(np.float64)
        gyr = tr.samples[:, 3:].astype(np.float64)
        for i in range(0, acc.shape[0], 10):
            out = pipe.process(state, acc[i:i + 10], gyr[i:i + 10])
            arrived = min(i + 10, acc.shape[0])
            for s in out.steps:
                worst = max(worst, (arrived - s.sample) / tr.sample_rate_hz)
    assert 1.0 < worst <= 3.0
