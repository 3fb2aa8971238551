"""Loading real Mobilise-D recordings (regression values from shared/data/mobilised/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from justwalk.simulator.replay import list_trials, load_recording, participant_info

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mobilised"
MS001 = DATA / "data" / "lab" / "MS" / "001" / "data.mat"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not MS001.exists(), reason=f"{MS001} not present"),
]


def test_ms001_test11_loads_in_wire_units() -> None:
    rec = load_recording(MS001, "Test11", "Trial1")
    assert rec.samples.shape == (22728, 6)
    assert rec.samples.dtype == np.float32
    assert rec.sample_rate_hz == 100.0
    assert rec.duration_s == pytest.approx(227.3, abs=0.05)
    assert rec.t0_us == 1_604_062_403_022_000  # 2020-10-30T12:53:23.022Z
    assert (rec.participant, rec.cohort, rec.test, rec.trial) == ("MS/001", "MS", "Test11",
                                                                  "Trial1")
    mean_acc = rec.samples[:, :3].astype(np.float64).mean(axis=0)
    # gravity on +x (x up), in m/s^2 (README: mean x 0.82-0.98 g)
    assert 0.82 * 9.8 < mean_acc[0] < 0.99 * 9.81
    assert np.linalg.norm(mean_acc) == pytest.approx(9.6, abs=0.3)
    # angular rate in rad/s: a few tenths, not tens (deg/s)
    gyr_sd = rec.samples[:, 3:].astype(np.float64).std(axis=0)
    assert np.all(gyr_sd > 0.05) and np.all(gyr_sd < 1.5)


def test_ms001_test11_reference_has_six_bouts() -> None:
    ref = load_recording(MS001, "Test11", "Trial1").reference
    assert ref is not None and ref.system == "INDIP"
    assert len(ref.bouts) == 6
    cadences = [b.cadence_spm for b in ref.bouts]
    assert min(cadences) == pytest.approx(76.0, abs=0.5)
    assert max(cadences) == pytest.approx(107.8, abs=0.5)
    assert ref.bouts[0].start_s == pytest.approx(10.2)
    assert ref.bouts[0].end_s == pytest.approx(17.68)
    ics = ref.initial_contacts_s
    assert ics.size == 93  # 98 ICs, 5 of them NaN
    assert np.all(np.isfinite(ics))
    assert np.all(np.diff(ics) >= 0)  # sorted; INDIP has one left and one right IC at 16.58 s
    assert set(ref.ic_sides) == {"left", "right"}
    assert len(ref.ic_sides) == ics.size


def test_short_trial_and_missing_reference() -> None:
    rec = load_recording(MS001, "Test5", "Trial1")
    assert rec.reference is not None and len(rec.reference.bouts) == 1
    assert rec.reference.bouts[0].cadence_spm == pytest.approx(108.5, abs=0.05)
    ha002 = DATA / "data" / "lab" / "HA" / "002" / "data.mat"
    assert load_recording(ha002, "Test5", "Trial1").reference.bouts == ()  # type: ignore[union-attr]


def test_reference_times_map_to_device_time_like_mobgap() -> None:
    rec = load_recording(MS001, "Test5", "Trial1")
    # t = 1.00 s is the 0-based sample round(100) - 1 = 99 -> t0 + 0.99 s
    assert rec.reference_time_to_us([1.0])[0] == rec.t0_us + 990_000
    moved = rec.restamped(1_000_000)
    assert moved.t0_us == 1_000_000 and moved.reference == rec.reference


def test_missing_test_is_reported_with_what_exists() -> None:
    with pytest.raises(KeyError, match="Test5"):
        load_recording(MS001, "Test99", "Trial1")
    assert ("Test11", "Trial1") in list_trials(MS001)


def test_participant_info() -> None:
    info = participant_info(MS001)
    assert info.sensor_height_m == pytest.approx(0.975)
    assert info.height_m == pytest.approx(1.68)
    assert info.weight_kg == pytest.approx(74.0)
    assert info.handedness == "left"
    assert info.walking_aid is False
    assert info.sensor_type == "MM+"


def test_participant_info_falls_back_to_the_metadata_json(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "lab" / "HA" / "007"
    folder.mkdir(parents=True)
    (tmp_path / "data_csv").mkdir()
    (tmp_path / "data_csv" / "participant_metadata.json").write_text(
        '{"HA": {"007": {"sensor_height_m": 1.01, "height_m": 1.7, "weight_kg": 70.0,'
        ' "handedness": "right", "foot_length_cm": 25.0, "walking_aid_used": false,'
        ' "sensor_type_su": "MM+"}}}'
    )
    info = participant_info(folder / "data.mat")
    assert info.participant == "HA/007"
    assert info.sensor_height_m == 1.01
    assert info.foot_length_m == pytest.approx(0.25)
