"""Slow, impaired gait (40-60 steps/min): what the step and bout detectors do, with truth.

The walks come from the simulator (``justwalk.simulator.gait_model``: long double support,
shuffling, a cane), whose ground truth gives the answers; the rules under test are those
of ``justwalk.gait.gsd`` (hold and break relative to the chain's own step time). Real slow
gait is scored by ``justwalk evaluate gait`` and ``benchmarks/gait_lopo.py``; these tests
cover what the development recordings do not hold (nobody there walks below 60 steps/min
for more than a few steps).
"""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest

from justwalk.gait.gsd import BoutAssembler, BoutState
from justwalk.gait.pipeline import BoutResult, GaitPipeline, PipelineState, StepResult
from justwalk.simulator.gait_model import GaitProfile, synthesize

FS = 100.0
T0_US = 1_700_000_000_000_000
WALK = (5.0, 65.0)


def profile(cadence_spm: float, **kw: object) -> GaitProfile:
    """A slow walker: 60 s of walking, step-time CV 5 %, long double support."""
    base: dict[str, object] = dict(cadence_spm=cadence_spm, step_time_cv=0.05,
                                   walking_s=(WALK,), double_support=0.4)
    base.update(kw)
    return GaitProfile(**base)  # type: ignore[arg-type]


def walk(p: GaitProfile, seed: int = 3, chunk: int | None = None,
         pipe: GaitPipeline | None = None,
         ) -> tuple[np.ndarray, list[tuple[StepResult, int]], list[BoutResult], GaitPipeline]:
    """Truth ICs (s), steps with the sample count at which each was released, bouts."""
    rec = synthesize(p, 75.0, FS, np.random.default_rng(seed))
    pipe = pipe or GaitPipeline(sensor_height_m=1.0)
    st = pipe.initial_state(t0_us=T0_US, sample_rate_hz=FS)
    s = rec.samples.astype(np.float64)
    step = chunk or len(s)
    steps, bouts = [], []
    for i in range(0, len(s), step):
        o = pipe.process(st, s[i:i + step, :3], s[i:i + step, 3:])
        steps += [(x, st.n_seen) for x in o.steps]
        bouts += o.bouts
    bouts += pipe.flush(st).bouts
    return rec.truth.step_times_s, steps, bouts, pipe


def truth_cadence(truth_s: np.ndarray, start_s: float, end_s: float) -> float:
    """Mean of 120 / stride time over the truth strides inside [start, end] that last at
    most 3 s (the pipeline's bout cadence; Mobilise-D's longest stride, mobgap
    ``StrideSelection``). At 40 steps/min about half the strides are longer, so the bout
    cadence reads about 1.5 steps/min high there: 40 steps/min is the floor."""
    t = truth_s[(truth_s >= start_s - 0.25) & (truth_s <= end_s + 0.25)]
    d = t[2:] - t[:-2]
    return float(np.mean(120.0 / d[d <= 3.0]))


def matched(truth_s: np.ndarray, steps_s: np.ndarray, tol_s: float = 0.25) -> int:
    return sum(1 for x in steps_s if np.min(np.abs(truth_s - x)) <= tol_s)


@pytest.mark.parametrize("cadence_spm", [40.0, 45.0, 50.0, 60.0])
def test_slow_walk_gives_one_bout_with_its_cadence(cadence_spm: float) -> None:
    """40-60 steps/min with long double support: one bout, every step but the stopping
    one found within 0.25 s, none false, and the bout cadence within 1 step/min of the
    truth over the same strides."""
    truth, steps, bouts, _ = walk(profile(cadence_spm))
    found = np.asarray([s.sample for s, _ in steps]) / FS
    assert len(bouts) == 1
    b = bouts[0]
    assert abs(b.start_sample / FS - truth[0]) <= 0.25
    assert len(found) >= len(truth) - 2  # the stopping step is not part of the bout
    assert matched(truth, found) == len(found)
    ref = truth_cadence(truth, b.start_sample / FS, b.end_sample / FS)
    assert b.params.cadence_spm == pytest.approx(ref, abs=1.0)
    assert b.params.cadence_spm == pytest.approx(cadence_spm, abs=2.0)


def test_fixed_hold_of_the_earlier_rule_finds_no_bout_at_45_steps_per_min() -> None:
    """Why the hold is relative: with the earlier fixed 1.8 s (3 ICs in 1.8 s = 67
    steps/min) a walker at 45 steps/min never forms a bout."""
    fixed = BoutAssembler(hold_slack_steps=None, break_steps=None)
    _, steps, bouts, _ = walk(profile(45.0), pipe=GaitPipeline(sensor_height_m=1.0,
                                                               bouts=fixed))
    assert steps == [] and bouts == []


def test_verdict_latency_is_bounded_by_the_step_time() -> None:
    """Each step is released at most 3 step times (capped at 3.05 s) plus the detector's
    look-ahead (0.82 s) after its contact: within the 4.0 s the fall monitor allows at 40
    steps/min, and within the earlier fixed 2.7 s at normal cadence."""
    pipe = GaitPipeline(sensor_height_m=1.0)
    assert pipe.bouts.hold_cap_s == pytest.approx(3.05)
    assert pipe.icd.ic_lag_samples(FS) == 82
    for cadence, bound_s in ((40.0, 3.05 + 0.82), (45.0, 3.05 + 0.82), (100.0, 1.8 + 0.82)):
        _, steps, _, _ = walk(profile(cadence, double_support=None), chunk=10)
        lat = [(n - s.sample) / FS for s, n in steps]
        assert len(lat) > 30 and max(lat) <= bound_s + 0.1, (cadence, max(lat))  # + a chunk


def test_shuffling_with_weak_impacts_still_gives_the_bout() -> None:
    """Weak heel strikes (impact 0.3 of normal, 1 m/s^2 peak to peak) at 45 steps/min."""
    truth, steps, bouts, _ = walk(profile(45.0, impact_ratio=0.3, vertical_acc_pp_mps2=1.0))
    found = np.asarray([s.sample for s, _ in steps]) / FS
    assert len(bouts) == 1
    assert matched(truth, found) >= len(truth) - 3
    assert bouts[0].params.cadence_spm == pytest.approx(45.0, abs=2.0)


def test_cane_strikes_are_not_steps() -> None:
    """A cane strike mid-step (2.5 m/s^2, as large as a weak heel strike) once per stride:
    it is off the step rhythm, so it is held back and dropped, never released."""
    p = profile(45.0, impact_ratio=0.5, aid_impact_mps2=2.5)
    rec = synthesize(p, 75.0, FS, np.random.default_rng(3))
    aid = np.asarray(rec.truth.aid_times_s)
    assert aid.size >= 20
    truth, steps, bouts, _ = walk(p)
    found = np.asarray([s.sample for s, _ in steps]) / FS
    assert len(bouts) == 1
    assert min(np.min(np.abs(aid - x)) for x in found) > 0.25
    assert matched(truth, found) == len(found) >= len(truth) - 2
    assert bouts[0].params.cadence_spm == pytest.approx(45.0, abs=2.0)


@pytest.mark.parametrize("chunk", [7, 100])
def test_slow_walk_is_chunking_invariant_and_resumes_from_its_state(chunk: int) -> None:
    """The relative hold decides at times that depend on the chain, but in due order: the
    output is identical however the stream is cut, and a packed state resumes exactly."""
    p = profile(42.0, impact_ratio=0.5, aid_impact_mps2=1.5)
    rec = synthesize(p, 75.0, FS, np.random.default_rng(5))
    s = rec.samples.astype(np.float64)
    pipe = GaitPipeline(sensor_height_m=1.0)

    def run(cut: int | None, restore: bool) -> tuple[tuple[list, list, list], int]:
        st = pipe.initial_state(t0_us=T0_US, sample_rate_hz=FS)
        steps: list = []
        bouts: list = []
        windows: list = []
        size = 0
        step = cut or len(s)
        for i in range(0, len(s), step):
            o = pipe.process(st, s[i:i + step, :3], s[i:i + step, 3:])
            steps += o.steps
            bouts += o.bouts
            windows += o.windows
            if restore:
                blob = msgpack.packb(st.pack())
                size = max(size, len(blob))
                st = PipelineState.unpack(msgpack.unpackb(blob))
        f = pipe.flush(st)
        return (steps, bouts + f.bouts, windows + f.windows), size

    whole, _ = run(None, False)
    cut, _ = run(chunk, False)
    resumed, size = run(chunk, True)
    assert repr(cut) == repr(whole) and repr(resumed) == repr(whole)  # NaN != NaN
    assert len(whole[1]) == 1 and len(whole[0]) >= 35
    assert size <= 20_000, size


def test_relative_hold_and_break_of_a_slow_chain() -> None:
    """By hand: ICs 1.4 s apart (43 steps/min). After two ICs the chain's step time is
    1.4 s, so the first IC waits (2 + 1) x 1.4 s = 4.2 s, capped at 3.05 s, for its third;
    the chain then stays open 2.2 s after its newest IC, or with ``break_steps`` 2, two
    step times capped at 3 s (Mobilise-D's maximum break)."""
    for break_steps, gap in ((None, 220), (2.0, 280)):
        asm = BoutAssembler(drop_last_ics=0, break_steps=break_steps)
        st = asm.initial_state()
        out = asm.process(st, [(0, "left"), (140, "right")], 300, FS)
        assert out.steps == [] and [c[0] for c in st.chain] == [0, 140]  # fixed rule: gone
        assert asm.hold_samples(st, FS, 2) == pytest.approx(305.0)
        out = asm.process(st, [(280, "left")], 306, FS)
        assert [s[0] for s in out.steps] == [0, 140, 280]  # confirmed at 3.05 s with 3 ICs
        assert asm.closes_after(st, FS) == pytest.approx(280 + gap)
        out = asm.process(st, [(420, "right"), (560, "left"), (700, "right")], 900, FS)
        assert [s[0] for s in out.steps] == [420, 560, 700] and out.closed == []
        assert asm.process(st, [], 700 + gap, FS).closed == []
        out = asm.process(st, [], 701 + gap, FS)  # the break has passed: the bout closes
        assert [(c.start, c.end, c.n_ics) for c in out.closed] == [(0, 700, 6)]
        assert BoutState.unpack(msgpack.unpackb(msgpack.packb(st.pack()))) == st


def test_a_lone_early_ic_does_not_join_a_slow_chain() -> None:
    """A leading IC whose interval to the next is more than twice the rhythm of the ICs
    after it (here 1.3 s, then 0.6 s) is dropped before an early confirmation."""
    asm = BoutAssembler(drop_last_ics=0)
    st = asm.initial_state()
    out = asm.process(st, [(0, "left"), (130, "right"), (190, "left")], 500, FS)
    assert 0 not in [s[0] for s in out.steps]


def test_normal_cadence_keeps_the_fixed_hold() -> None:
    """At 100 steps/min (0.6 s) 3 step times are 1.8 s: the fixed hold rules, as before,
    and the break stays 2.2 s."""
    asm = BoutAssembler()
    st = asm.initial_state()
    asm.process(st, [(0, "left"), (60, "right")], 70, FS)
    assert asm.hold_samples(st, FS, 2) == pytest.approx(180.0)
    assert asm.break_samples(st, FS) == pytest.approx(220.0)
    assert math.isinf(BoutAssembler().closes_after(BoutState(), FS))
