"""Analytic tests of the gait core: hand-derived answers, chunking and state round trips."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from justwalk.gait import (
    GaitStream,
    GaitStreamState,
    StreamingStepDetector,
    cadence_windows,
    window_cadence,
)

FS = 100.0
T0_US = 1_700_000_000_000_000  # a window boundary (multiple of 5 s)


def sine_walk(cadence_spm: float, duration_s: float, *, noise: float = 0.05, seed: int = 0):
    """Trunk acceleration with one vertical oscillation per step, plus gravity on x."""
    t = np.arange(0, duration_s, 1 / FS)
    acc = np.zeros((t.size, 3))
    acc[:, 0] = 9.81 + 1.5 * np.sin(2 * np.pi * cadence_spm / 60 * t)
    acc += np.random.default_rng(seed).normal(0, noise, acc.shape)
    return acc


def run(acc, chunk: int | None = None, stream: GaitStream | None = None):
    g = stream or GaitStream()
    state = g.initial_state()
    steps, windows = [], []
    step = chunk or len(acc)
    for k in range(0, len(acc), step):
        out = g.process(state, acc[k : k + step], T0_US + round(k * 1e6 / FS), FS)
        steps += out.steps
        windows += out.windows
    return steps, windows, state


@pytest.mark.parametrize("cadence", [60.0, 100.0, 120.0, 150.0])
def test_constant_cadence_is_recovered(cadence):
    steps, windows, _ = run(sine_walk(cadence, 60))
    # every full window walks at the exact cadence (+-0.5 steps/min from sampling at 100 Hz)
    assert len(windows) >= 10
    for w in windows[1:]:
        assert w.walking
        assert w.cadence_spm == pytest.approx(cadence, abs=0.5)
    # one step per period, none missed, none doubled
    assert len(steps) == pytest.approx(60 * cadence / 60, abs=2)
    dts = np.diff([s.t_us for s in steps]) / 1e6
    # after the band-pass filter has settled (first step), every interval is one period
    assert np.allclose(dts[1:], 60 / cadence, atol=0.011)


def test_standing_gives_no_steps_and_not_walking_windows():
    rng = np.random.default_rng(1)
    acc = np.column_stack([9.81 + rng.normal(0, 0.05, 3000), rng.normal(0, 0.05, (3000, 2))])
    steps, windows, _ = run(acc)
    assert steps == []
    assert windows and not any(w.walking for w in windows)
    assert all(w.cadence_spm is None for w in windows)


@pytest.mark.parametrize("chunk", [1, 7, 25, 50, 100, 333])
def test_chunking_does_not_change_results(chunk):
    acc = sine_walk(105, 40, noise=0.3, seed=3)
    whole = run(acc)
    chunked = run(acc, chunk)
    assert chunked[0] == whole[0]
    assert chunked[1] == whole[1]


def test_state_round_trip_resumes_exactly():
    acc = sine_walk(95, 40, noise=0.3, seed=4)
    g = GaitStream()
    reference_steps, reference_windows, _ = run(acc, 50)
    state = g.initial_state()
    steps, windows = [], []
    for k in range(0, len(acc), 50):
        # serialise and restore before every chunk, as a restarted worker would
        state = GaitStreamState.from_dict(json.loads(json.dumps(state.to_dict())))
        out = g.process(state, acc[k : k + 50], T0_US + k * 10_000, FS)
        steps += out.steps
        windows += out.windows
    assert steps == reference_steps
    assert windows == reference_windows


def test_gap_skips_empty_windows_and_restarts_detection():
    acc = sine_walk(100, 26)
    g = GaitStream()
    state = g.initial_state()
    out1 = g.process(state, acc[:2000], T0_US, FS)
    # the same walk again, one hour later, then its continuation
    out2 = g.process(state, acc[:2000], T0_US + 3600 * 1_000_000, FS)
    out3 = g.process(state, acc[2000:], T0_US + 3620 * 1_000_000, FS)
    windows = out1.windows + out2.windows + out3.windows
    starts = [w.window_start_us for w in windows]
    assert len(windows) < 20  # not 720 empty windows for the hour without data
    assert starts == sorted(starts)
    assert all(w.cadence_spm == pytest.approx(100, abs=0.5) for w in windows if w.walking)


def test_window_cadence_definition_by_hand():
    # steps every 0.5 s from t=0 to 10 s -> 120 steps/min in each 5 s window
    steps = np.arange(0, 10.01, 0.5) * 1e6
    w = window_cadence(steps, 5_000_000, 5_000_000)
    assert w.walking and w.cadence_spm == pytest.approx(120)
    assert w.n_steps == 10
    # a 3 s pause inside the window is left out of the cadence
    steps = np.array([0, 0.5, 1.0, 1.5, 4.5, 5.0, 5.5]) * 1e6
    w = window_cadence(steps, 0, 10_000_000)
    assert w.cadence_spm == pytest.approx(120)
    # too few intervals -> not walking
    assert not window_cadence(np.array([0, 0.5e6]), 0, 5_000_000).walking
    ws = cadence_windows(np.round(np.arange(0, 20, 0.6) * 1e6), 0, 19_999_999, 5_000_000)
    assert [round(w.cadence_spm, 6) for w in ws] == [100.0] * 4


def test_detector_rejects_wrong_shape():
    det = StreamingStepDetector()
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        det.process(det.initial_state(), np.zeros((10, 2)), 0, FS)


def test_gait_package_imports_no_io_library():
    code = (
        "import sys, justwalk.gait;"
        "bad = [m for m in ('aiokafka', 'faust', 'aiohttp', 'sinks', 'ingest',"
        " 'asyncio', 'http.client', 'urllib3', 'requests') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
