"""Ground truth: per-window cadence from the shared window definition, JSON round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from justwalk.gait.cadence import cadence_windows
from justwalk.simulator.gait_model import GaitProfile, RandomSchedule, synthesize
from justwalk.simulator.truth import (
    patient_truth,
    read_truth,
    true_mean_cadence_spm,
    write_truth,
)

FS = 100.0
START_US = 1_700_000_000_000_000  # a multiple of 5 s: windows start with the recording


def regular(**kw: object) -> GaitProfile:
    base: dict[str, object] = dict(
        cadence_spm=100.0, step_time_cv=0.0, asymmetry=0.0, walking_s=((0.0, 60.0),),
        acc_noise_mps2=0.0, gyr_noise_radps=0.0,
    )
    base.update(kw)
    return GaitProfile(**base)  # type: ignore[arg-type]


def test_every_window_of_a_100_spm_walk_is_100_spm() -> None:
    profile = regular()
    rec = synthesize(profile, 60.0, FS, np.random.default_rng(0))
    truth = patient_truth("p1", "d1", profile, rec, start_us=START_US, window_s=5.0)
    assert len(truth.windows) == 12
    assert [w.window_start_us for w in truth.windows] == [
        START_US + k * 5_000_000 for k in range(12)
    ]
    assert all(w.walking for w in truth.windows)
    for w in truth.windows:
        assert w.cadence_spm == pytest.approx(100.0, abs=1e-6)
    assert truth.mean_cadence_spm == pytest.approx(100.0, abs=1e-9)
    assert truth.step_times_us[:3] == (START_US, START_US + 600_000, START_US + 1_200_000)


def test_windows_are_aligned_to_the_epoch_not_to_the_start() -> None:
    start = START_US + 1_234_567
    profile = regular()
    rec = synthesize(profile, 60.0, FS, np.random.default_rng(0))
    truth = patient_truth("p1", "d1", profile, rec, start_us=start, window_s=5.0)
    assert truth.windows[0].window_start_us == START_US
    assert all(w.window_start_us % 5_000_000 == 0 for w in truth.windows)
    expected = cadence_windows(truth.step_times_us, start, start + 5_999 * 10_000, 5_000_000)
    assert list(truth.windows) == expected
    assert all(w.cadence_spm == pytest.approx(100.0) for w in truth.walking_windows)


def test_mean_cadence_ignores_pauses_between_bouts() -> None:
    # bout 1: 4 steps of 0.5 s; bout 2: 2 steps of 1.0 s -> 6 intervals, 4 s
    t = [0.0, 0.5, 1.0, 1.5, 2.0, 10.0, 11.0, 12.0]
    assert true_mean_cadence_spm(t, ((0.0, 2.0), (10.0, 12.0))) == pytest.approx(90.0)
    assert true_mean_cadence_spm([], ()) is None


def test_truth_round_trips_through_json(tmp_path: Path) -> None:
    profiles = [regular(cadence_spm=110.0, asymmetry=0.08, step_time_cv=0.05),
                GaitProfile(walking_s=RandomSchedule(bout_s=(10.0, 20.0)))]
    truths = []
    for i, p in enumerate(profiles):
        rec = synthesize(p, 60.0, FS, np.random.default_rng(i))
        truths.append(patient_truth(f"p{i}", f"d{i}", p, rec, start_us=START_US, window_s=5.0))
    path = tmp_path / "truth.json"
    write_truth(path, truths, seed=3)
    back = read_truth(path)
    assert back == truths
    assert back[0].walking_intervals_us[0][0] == START_US
