"""Regression of the streaming gait pipeline on the real Mobilise-D recordings (INDIP reference).

Thresholds sit just below what the pipeline reaches today (``justwalk evaluate gait``);
they catch regressions, they are not the issue #3 targets (not all of which are met yet).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from justwalk.evaluation.gait import lopo, run_ours
from justwalk.evaluation.gait_reference import Counts, load_trials

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


def test_accuracy_does_not_regress(trials) -> None:  # type: ignore[no-untyped-def]
    c = Counts()
    for tr in trials:
        c.add(tr, run_ours(tr))
    s = c.summary()
    # reached when written: IC F1 0.740, timing 0.030 s, bout F1 0.513 / IoU 0.821,
    # cadence 6.6 spm, speed 0.155 m/s, stride length 0.209 m, stride-time CV 5.2 pp
    assert s["ic_f1"] >= 0.72
    assert s["ic_timing_error_s"] <= 0.04
    assert s["bout_f1"] >= 0.48
    assert s["bout_f1_iou"] >= 0.78
    assert s["cadence_mae_spm"] <= 7.2
    assert s["speed_mae_mps"] <= 0.165
    assert s["stride_length_mae_m"] <= 0.22
    assert s["stride_time_cv_mae_pp"] <= 6.0


def test_leave_one_participant_out_does_not_regress(trials) -> None:  # type: ignore[no-untyped-def]
    s, chosen = lopo(trials)
    assert len(chosen) == 3
    # reached when written: IC F1 0.741, bout F1 0.410 / IoU 0.769, cadence 7.2 spm,
    # speed 0.166 m/s, stride length 0.225 m
    assert s["ic_f1"] >= 0.72
    assert s["bout_f1"] >= 0.38
    assert s["bout_f1_iou"] >= 0.74
    assert s["cadence_mae_spm"] <= 7.8
    assert s["speed_mae_mps"] <= 0.175
    assert s["stride_length_mae_m"] <= 0.24


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
