"""Analytic tests of the synthetic gait model: answers derived by hand, not by running it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from justwalk.simulator.gait_model import (
    GRAVITY_MPS2,
    LEFT,
    RIGHT,
    GaitProfile,
    RandomSchedule,
    synthesize,
)

FS = 100.0


def clean(**kw: object) -> GaitProfile:
    """A noise-free, untilted, perfectly regular walker (overridable)."""
    base: dict[str, object] = dict(
        cadence_spm=100.0, step_time_cv=0.0, asymmetry=0.0, walking_s=((0.0, 60.0),),
        tilt_pitch_deg=0.0, tilt_roll_deg=0.0, acc_noise_mps2=0.0, gyr_noise_radps=0.0,
    )
    base.update(kw)
    return GaitProfile(**base)  # type: ignore[arg-type]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def dominant_hz(x: np.ndarray, fs: float = FS) -> float:
    spec = np.abs(np.fft.rfft(x - x.mean()))
    return float(np.fft.rfftfreq(x.size, 1.0 / fs)[spec.argmax()])


def test_100_spm_without_variability_steps_every_0_6_s() -> None:
    rec = synthesize(clean(), 60.0, FS, rng())
    t = rec.truth.step_times_s
    assert t[0] == 0.0
    np.testing.assert_allclose(np.diff(t), 0.6, atol=1e-9)
    assert rec.truth.n_steps == 101  # 0, 0.6, ..., 60.0
    sides = rec.truth.step_sides
    assert set(sides) == {LEFT, RIGHT}
    assert all(a != b for a, b in itertools.pairwise(sides))
    assert rec.truth.walking_intervals_s == ((0.0, pytest.approx(60.0)),)
    assert rec.samples.shape == (6000, 6)
    assert rec.samples.dtype == np.float32


@pytest.mark.parametrize("cadence_spm", [80.0, 100.0, 120.0])
def test_dominant_frequencies_are_step_and_stride(cadence_spm: float) -> None:
    rec = synthesize(clean(cadence_spm=cadence_spm), 60.0, FS, rng())
    step_hz = cadence_spm / 60.0
    resolution = 1.0 / 60.0
    s = rec.samples.astype(np.float64)
    assert dominant_hz(s[:, 0]) == pytest.approx(step_hz, abs=resolution)  # vertical
    assert dominant_hz(s[:, 2]) == pytest.approx(step_hz, abs=resolution)  # AP
    assert dominant_hz(s[:, 1]) == pytest.approx(step_hz / 2, abs=resolution)  # ML
    assert dominant_hz(s[:, 3]) == pytest.approx(step_hz / 2, abs=resolution)  # yaw
    assert dominant_hz(s[:, 4]) == pytest.approx(step_hz, abs=resolution)  # pitch
    assert dominant_hz(s[:, 5]) == pytest.approx(step_hz / 2, abs=resolution)  # roll


def test_mean_acceleration_is_gravity_on_x() -> None:
    s = synthesize(clean(), 60.0, FS, rng()).samples.astype(np.float64)
    mean = s[:, :3].mean(axis=0)
    assert mean[0] == pytest.approx(GRAVITY_MPS2, abs=0.1)
    assert abs(mean[1]) < 0.1 and abs(mean[2]) < 0.1
    assert np.abs(s[:, 3:].mean(axis=0)).max() < 0.01  # no net rotation


def test_sensor_tilt_mixes_gravity_into_other_axes() -> None:
    s = synthesize(clean(tilt_pitch_deg=20.0, tilt_roll_deg=-5.0), 60.0, FS, rng()).samples
    mean = s[:, :3].astype(np.float64).mean(axis=0)
    g = GRAVITY_MPS2
    assert mean[2] == pytest.approx(-g * math.sin(math.radians(20.0)), abs=0.15)
    assert mean[1] == pytest.approx(g * math.sin(math.radians(5.0)), abs=0.15)
    assert np.linalg.norm(mean) == pytest.approx(g, abs=0.1)


def test_amplitudes_are_those_of_normal_walking() -> None:
    rec = synthesize(clean(vertical_acc_pp_mps2=3.0), 60.0, FS, rng())
    mid = rec.samples[1000:5000].astype(np.float64)  # well inside the bout
    # vertical peak-to-peak as configured, on top of gravity
    assert np.ptp(mid[:, 0]) == pytest.approx(3.0, rel=0.1)
    assert 1.0 < np.ptp(mid[:, 1]) < 4.5
    assert 1.0 < np.ptp(mid[:, 2]) < 4.5
    gyr_amp = np.ptp(mid[:, 3:], axis=0) / 2
    assert np.all((gyr_amp > 0.2) & (gyr_amp < 0.8)), gyr_amp


def test_vertical_peak_follows_each_initial_contact() -> None:
    """The step waveform is stretched to each step: the sharp peak stays 20-80 ms after IC."""
    rec = synthesize(clean(step_time_cv=0.08, asymmetry=0.1), 60.0, FS, rng(3))
    x = rec.samples[:, 0]
    t = rec.truth.step_times_s
    lags = []
    for ic, nxt in itertools.pairwise(t[3:-2]):
        i0 = round(ic * FS)
        i1 = round((ic + 0.4 * (nxt - ic)) * FS)
        lags.append((int(np.argmax(x[i0:i1]))) / FS)
    assert 0.02 <= np.median(lags) <= 0.08
    assert max(lags) <= 0.1


def test_asymmetry_alternates_left_and_right_step_times() -> None:
    rec = synthesize(clean(asymmetry=0.1), 60.0, FS, rng())
    t, sides = rec.truth.step_times_s, rec.truth.step_sides
    steps = np.diff(t)
    ends_left = np.array([s == LEFT for s in sides[1:]])
    # left step = right IC -> left IC: 0.6 * (1 + 0.05); right step 0.6 * (1 - 0.05)
    np.testing.assert_allclose(steps[ends_left], 0.63, atol=1e-9)
    np.testing.assert_allclose(steps[~ends_left], 0.57, atol=1e-9)
    assert steps.mean() == pytest.approx(0.6, abs=0.002)  # cadence unchanged


def test_step_time_variability_matches_cv() -> None:
    rec = synthesize(clean(step_time_cv=0.05, walking_s=((0.0, 600.0),)), 600.0, FS, rng(5))
    steps = np.diff(rec.truth.step_times_s)
    assert steps.std() / steps.mean() == pytest.approx(0.05, abs=0.006)
    assert 60.0 / steps.mean() == pytest.approx(100.0, abs=1.0)


def test_deterministic_for_a_seed() -> None:
    profile = GaitProfile()  # random schedule, noise, variability
    a = synthesize(profile, 90.0, FS, rng(42))
    b = synthesize(profile, 90.0, FS, rng(42))
    c = synthesize(profile, 90.0, FS, rng(43))
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.truth.step_times_s, b.truth.step_times_s)
    assert a.truth.step_sides == b.truth.step_sides
    assert not np.array_equal(a.samples, c.samples)


def test_standing_shows_only_noise_and_sway() -> None:
    profile = clean(walking_s=((10.0, 20.0),), acc_noise_mps2=0.05, gyr_noise_radps=0.01)
    rec = synthesize(profile, 30.0, FS, rng(1))
    s = rec.samples.astype(np.float64)
    standing = s[: 9 * 100]  # the gait initiation starts one step (0.6 s) before 10 s
    walking = s[1200:1800]
    assert standing[:, :3].std(axis=0).max() < 0.15
    assert standing[:, 3:].std(axis=0).max() < 0.05
    assert walking[:, 0].std() > 5 * standing[:, 0].std()
    assert rec.truth.step_times_s.min() == 10.0
    assert rec.truth.step_times_s.max() <= 20.0
    assert np.all(rec.truth.step_times_s <= 20.0)


def test_gait_initiation_and_termination_ramp_the_amplitude() -> None:
    rec = synthesize(clean(walking_s=((10.0, 40.0),)), 50.0, FS, rng())
    x = rec.samples[:, 0].astype(np.float64)
    t = rec.truth.step_times_s

    def step_pp(k: int) -> float:
        return float(np.ptp(x[round(t[k] * FS) : round(t[k + 1] * FS)]))

    mid = step_pp(len(t) // 2)
    assert step_pp(0) < 0.8 * mid
    assert step_pp(0) < step_pp(1) < step_pp(3) * 1.01
    assert step_pp(len(t) - 2) <= mid * 1.01
    # movement already before the first IC (initiation) and still after the last one
    assert np.ptp(x[round((t[0] - 0.4) * FS) : round(t[0] * FS)]) > 0.3
    assert np.ptp(x[round(t[-1] * FS) : round((t[-1] + 0.4) * FS)]) > 0.3


def test_random_schedule_alternates_bouts_and_pauses() -> None:
    sched = RandomSchedule(bout_s=(10.0, 30.0), pause_s=(5.0, 10.0), first_start_s=(1.0, 2.0))
    intervals = sched.generate(300.0, rng(7))
    assert len(intervals) >= 6
    assert 1.0 <= intervals[0][0] <= 2.0
    for (a, b), (c, _) in itertools.pairwise(intervals):
        assert 10.0 - 1e-9 <= b - a <= 30.0 + 1e-9
        assert 5.0 - 1e-9 <= c - b <= 10.0 + 1e-9
    assert intervals[-1][1] <= 300.0
    rec = synthesize(GaitProfile(walking_s=sched), 300.0, FS, rng(7))
    assert len(rec.truth.walking_intervals_s) == len(intervals)


def test_profile_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="cadence"):
        GaitProfile(cadence_spm=0.0)
    with pytest.raises(ValueError, match="apart"):
        GaitProfile(walking_s=((0.0, 10.0), (10.5, 20.0)))
    with pytest.raises(ValueError, match="start < end"):
        GaitProfile(walking_s=((5.0, 5.0),))
    with pytest.raises(ValueError, match="asymmetry"):
        GaitProfile(asymmetry=0.7)


def test_long_double_support_pushes_only_while_both_feet_are_down() -> None:
    """At 45 steps/min with double support 0.4 of the step the vertical acceleration is
    flat over single support (the hump is zero there and the heel-strike peak, 40 ms wide,
    has died out; what is left is the trunk's rotation and sway): its range over phases
    0.5-0.95 is under 5 % of the walk's, where the default pendulum waveform's is over 30 %."""
    def single_support_range(**kw: object) -> float:
        rec = synthesize(clean(cadence_spm=45.0, **kw), 60.0, FS, rng())
        v = rec.samples[:, 0].astype(np.float64)
        t = rec.truth.step_times_s
        walk_pp = float(np.ptp(v[int(t[2] * FS):int(t[-2] * FS)]))
        return max(float(np.ptp(v[math.ceil((a + 0.5 * (b - a)) * FS):
                                  int((a + 0.95 * (b - a)) * FS)]))
                   for a, b in itertools.pairwise(t[2:-2])) / walk_pp

    assert single_support_range(double_support=0.4) < 0.05
    assert single_support_range() > 0.3


def test_walking_aid_strikes_once_per_stride_mid_step_and_are_in_the_truth() -> None:
    p = clean(cadence_spm=50.0, aid_impact_mps2=2.0, aid_phase=0.5, walking_s=((1.0, 40.0),))
    rec = synthesize(p, 45.0, FS, rng())
    t, sides = rec.truth.step_times_s, rec.truth.step_sides
    expected = [a + 0.5 * (b - a) for a, b, s in zip(t[:-1], t[1:], sides[:-1], strict=True)
                if s == RIGHT]
    np.testing.assert_allclose(rec.truth.aid_times_s, expected)
    # the strike is in the signal: 2 m/s^2 above the same phase of the walk without the aid
    plain = synthesize(clean(cadence_spm=50.0, walking_s=((1.0, 40.0),)), 45.0, FS, rng())
    k = round(expected[5] * FS)
    diff = rec.samples[k, 0] - plain.samples[k, 0]
    assert diff == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("kw", [{"double_support": 0.9}, {"impact_ratio": -0.1},
                                {"aid_impact_mps2": 11.0}, {"aid_phase": 0.1}])
def test_impaired_gait_options_are_checked(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kw))):
        clean(**kw)
