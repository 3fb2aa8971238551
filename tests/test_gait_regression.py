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

from benchmarks.gait_lopo import GRID as POOLED_GRID
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
    # reached when written (issue #15): IC F1 0.774 (inside reference bouts 0.866), bout F1
    # 0.789 / IoU 0.947, cadence 4.59 spm, speed 0.074 m/s, stride length 0.088 m,
    # stride-time CV 8.2 pp. Before it: IC F1 0.774 (inside bouts 0.842), bout F1 0.757 /
    # IoU 0.919, cadence 4.33. Detection improved: HA/002's very slow walk (17.5-35.5 s,
    # steps 0.8-2 s apart) is now found as a bout, and its cadence (62 vs 74 steps/min: the
    # walk is very irregular) is now scored, hence cadence 4.6 -> 4.8. The stopping steps
    # are now released as steps (of no bout): INDIP does not list them (18 false ICs), the
    # voisard_dev foot reference does.
    assert s["ic_f1"] >= 0.76
    assert s["ic_f1_in_ref_bouts"] >= 0.85
    assert s["bout_f1"] >= 0.77
    assert s["bout_f1_iou"] >= 0.93
    assert s["cadence_mae_spm"] <= 4.8
    assert s["stride_time_cv_mae_pp"] <= 9.0


def test_leave_one_participant_out_does_not_regress(trials) -> None:  # type: ignore[no-untyped-def]
    s, chosen = lopo(trials)
    assert len(chosen) == 3
    # the shipped defaults are the values most folds chose; those that issue #15 tunes over
    # all 12 development participants together (benchmarks/gait_lopo.py, checked in
    # tests/test_gait_regression_voisard.py) are left to that LOPO
    pipe = GaitPipeline(sensor_height_m=1.0)
    for key in TUNING_GRID:
        if key in POOLED_GRID:
            continue
        stage, name = key.split(".")
        votes = Counter(c[key] for _, c in chosen)
        top = max(votes.values())
        assert getattr(getattr(pipe, stage), name) in {v for v, n in votes.items() if n == top}, key
    assert s["speed_mae_mps"] <= 0.12
    assert s["stride_length_mae_m"] <= 0.15
    _no_worse_than_mobgap(s)
    # reached when written: IC F1 0.762, bout F1 0.684 / IoU 0.895, cadence 4.82 spm,
    # speed 0.107 m/s, stride length 0.126 m. Since gaps across a turn are bridged
    # (gsd.py, 2026-12-07): IC F1 0.768, bout F1 0.737 / IoU 0.947, cadence 5.69 spm, speed
    # 0.089 m/s, stride length 0.106 m. The bridge joins MS/001's first walk under
    # icd.weak_ratio 1, so HA/002's fold (chosen on HA/001 and MS/001 alone) takes that
    # value, with which HA/002's cadence is worse; three folds are too few for a stable
    # choice. The LOPO over all 12 development participants that issue #15 tunes by
    # (test_gait_regression_voisard.py) is unchanged on these trials. Cadence bound: mobgap's.
    assert s["ic_f1"] >= 0.75
    assert s["bout_f1"] >= 0.65
    assert s["cadence_mae_spm"] <= MOBGAP["cadence_mae_spm"]


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


def test_every_step_is_final_within_three_seconds_or_three_of_its_steps(trials) -> None:  # type: ignore[no-untyped-def]
    """Issue #3: results for a sample are final at most 3 s after it arrives (0.1 s chunks);
    issue #15: for a slow walker, whose three steps take longer, within 3 of its own steps,
    at most 3.05 s + the detector's 0.82 s (the fall monitor reads steps up to 4 s late)."""
    worst_normal, worst = 0.0, 0.0
    for tr in trials:
        pipe = GaitPipeline(sensor_height_m=tr.sensor_height_m)
        state = pipe.initial_state(t0_us=tr.t0_us, sample_rate_hz=tr.sample_rate_hz)
        acc = tr.samples[:, :3].astype(np.float64)
        gyr = tr.samples[:, 3:].astype(np.float64)
        late: dict[int, float] = {}
        cadence: dict[int, float] = {}
        for i in range(0, acc.shape[0], 10):
            out = pipe.process(state, acc[i:i + 10], gyr[i:i + 10])
            arrived = min(i + 10, acc.shape[0])
            for s in out.steps:
                lat = (arrived - s.sample) / tr.sample_rate_hz
                late[s.bout_index] = max(late.get(s.bout_index, 0.0), lat)
            cadence |= {b.bout_index: b.params.cadence_spm for b in out.bouts}
        cadence |= {b.bout_index: b.params.cadence_spm for b in pipe.flush(state).bouts}
        for bout, lat in late.items():
            worst = max(worst, lat)
            if cadence.get(bout, 0.0) >= 100.0:  # 3 steps within 1.8 s: the fixed hold
                worst_normal = max(worst_normal, lat)
    assert 1.0 < worst_normal <= 2.7
    assert worst <= 3.05 + 0.82 + 0.1
