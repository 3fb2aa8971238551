"""The fall core's steps come from the gait pass: every step a near-fall verdict reads must
have arrived before the verdict, so that the verdict does not depend on the chunking.

The near-fall walking window ends ``perturbation_half_s`` (0.5 s) before a peak judged
``lookahead_s`` (3.5 s) after it; ``GaitPipeline`` releases a step at most 3.87 s after the
contact (2.7 s for walkers at 100 steps/min and faster; ``justwalk.gait.gsd``). These tests
check both halves of that argument and that the monitor refuses a step that comes too late."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from justwalk.falls import EventType, FallMonitor, NearFallDetector
from justwalk.gait.pipeline import GaitPipeline
from tests.test_falls_detectors import (
    FS,
    T0_US,
    _both,
    _double_peak_stumble,
    feed,
    steps_of,
    walking,
)

SISFALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "sisfall"
GAIT_RELEASE_BOUND_S = 3.88
"""``justwalk.gait.gsd``: every step verdict is final at most 3.87 s after the contact (the
hold, relative to the walker's step time, is capped at 3.05 s; the step detector's
look-ahead is 0.82 s)."""


def release_delays_s(x: np.ndarray, chunk: int) -> list[float]:
    """For each released step: device time of the last sample of the chunk that released
    it, minus the step's time (s)."""
    pipeline = GaitPipeline(sensor_height_m=1.0)
    state = pipeline.initial_state(t0_us=T0_US, sample_rate_hz=FS)
    out = []
    for i in range(0, x.shape[0], chunk):
        c = x[i : i + chunk]
        last_us = T0_US + round((i + c.shape[0] - 1) * 1e6 / FS)
        out += [(last_us - s.t_us) / 1e6
                for s in pipeline.process(state, c[:, :3], c[:, 3:]).steps]
    return out


def test_the_walking_window_ends_before_the_release_bound_allows():
    """The monitor's margin: a step may come up to ``max_step_delay_s`` after its contact;
    the gait pipeline's bound is well inside it (one block of slack for block rounding)."""
    mon = FallMonitor()
    near = mon.near_fall
    assert mon.max_step_delay_s == near.lookahead_s + near.perturbation_half_s
    assert mon.max_step_delay_s > GAIT_RELEASE_BOUND_S + 0.1
    # every grid value of the windows keeps the margin
    for p in (0.5, 0.75, 1.0):
        other = FallMonitor(near_fall=NearFallDetector(perturbation_half_s=p))
        assert other.max_step_delay_s > GAIT_RELEASE_BOUND_S + 0.1


@pytest.mark.realdata
@pytest.mark.skipif(not (SISFALL / "manifest.csv").is_file(), reason="no SisFall data")
def test_the_gait_pipeline_releases_steps_within_its_bound_on_real_recordings():
    """Sample by sample (the finest chunking) on the SisFall stumbles and walks: no step is
    released later than the bound the near-fall verdicts rely on."""
    from justwalk.evaluation import sisfall

    delays: list[float] = []
    for e in sisfall.read_manifest(SISFALL):
        if e.code in ("D18", "D01", "D02"):  # stumbles while walking, walking, jogging
            delays += release_delays_s(sisfall.load(SISFALL, e, FS).samples, 1)
    assert len(delays) > 300
    assert max(delays) <= GAIT_RELEASE_BOUND_S
    assert min(delays) >= 0.0


def _delayed(x: np.ndarray, steps: list[int], chunk: int, delay_s: float) -> list:  # type: ignore[type-arg]
    """Monitor events when each step arrives with the first chunk ending ``delay_s`` or more
    after it (a gait pass that releases steps that late)."""
    mon = FallMonitor()
    state = mon.initial_state()
    events = []
    j = 0
    for i in range(0, x.shape[0], chunk):
        c = x[i : i + chunk]
        end_us = T0_US + round((i + c.shape[0]) * 1e6 / FS)
        due = j
        while due < len(steps) and steps[due] + delay_s * 1e6 <= end_us:
            due += 1
        events += mon.process(state, c, T0_US + round(i * 1e6 / FS), FS, steps[j:due])
        j = due
    return events


@pytest.mark.parametrize("chunk", [1, 50, 137])
@pytest.mark.parametrize("delay_s", [0.0, 1.0, GAIT_RELEASE_BOUND_S, 3.8])
def test_steps_that_arrive_late_but_within_the_bound_change_nothing(chunk, delay_s):
    x = np.concatenate([_both(), _double_peak_stumble()])
    steps = steps_of(x)
    whole, _ = feed(FallMonitor(), x)
    assert sorted(e.type for e in whole).count(EventType.NEAR_FALL) == 2
    assert _delayed(x, steps, chunk, delay_s) == whole


def test_a_step_that_arrives_after_a_verdict_that_could_read_it_is_refused():
    x = np.concatenate([_both(), _double_peak_stumble()])
    with pytest.raises(ValueError, match="came after the near-fall verdicts"):
        _delayed(x, steps_of(x), 50, 4.6)


def test_late_step_check_is_exact_at_the_closed_bound():
    mon = FallMonitor()
    state = mon.initial_state()
    x = walking(10.0)
    steps = [t for t in steps_of(x) if t < T0_US + 5_000_000]  # the walk's first 5 s
    mon.process(state, x, T0_US, FS, steps)
    # blocks before next_candidate are judged; their walking windows end before this
    closed = T0_US + state.near_fall.next_candidate * 100_000 - 500_000
    assert closed == T0_US + 6_000_000  # 10 s of data, 3.5 s look-ahead, 0.5 s window end
    with pytest.raises(ValueError, match="after the near-fall verdicts"):
        mon.process(state, np.empty((0, 6)), T0_US + 10_000_000, FS, [closed - 1])
    assert mon.process(state, np.empty((0, 6)), T0_US + 10_000_000, FS, [closed]) == []
    with pytest.raises(ValueError, match="not after the last step"):
        mon.process(state, np.empty((0, 6)), T0_US + 10_000_000, FS, [closed])


def test_steps_of_an_earlier_segment_are_ignored():
    """After a gap the gait pipeline starts a new segment too; a step of the old one that
    comes with the new segment's first chunk is dropped, not an error."""
    mon = FallMonitor()
    state = mon.initial_state()
    x = walking(10.0)
    mon.process(state, x, T0_US, FS, steps_of(x))
    later = T0_US + 60_000_000
    assert mon.process(state, x[:50], later, FS, [T0_US + 9_000_000, later + 100_000]) == []
    assert list(state.front.steps_us[: state.front.n_steps]) == [later + 100_000]
