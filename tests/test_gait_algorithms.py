"""Analytic tests of the streaming gait algorithms (hand-derived answers, no data files)."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest

from justwalk.gait.gsd import BoutAssembler, BoutState
from justwalk.gait.icd import IcDetector
from justwalk.gait.pipeline import GaitPipeline, PipelineOutput, PipelineState
from justwalk.gait.spatial import (
    MOBILISED_MS_SCALING,
    StepLengthEstimator,
    pendulum_step_length_m,
)
from justwalk.gait.transfers import TransferGate
from justwalk.gait.turns import TurnDetector
from justwalk.gait.variability import cv_pct, regularity, step_time_asymmetry_pct

FS = 100.0
T0_US = 1_700_000_000_000_000
G = 9.81


def synthetic_walk(step_samples: int = 60, first_ic: int = 300, n_steps: int = 40,
                   total: int = 4000, turn: bool = False,
                   ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Standing, then a perfectly regular walk: a vertical bump 60 ms after every IC and a
    medio-lateral bump 0.2 s after it (negative after a right IC), then standing."""
    t = np.arange(total)
    acc = np.zeros((total, 3))
    acc[:, 0] = G
    gyr = np.zeros((total, 3))
    ics = [first_ic + k * step_samples for k in range(n_steps)]
    for k, ic in enumerate(ics):
        acc[:, 0] += 3.0 * np.exp(-0.5 * ((t - ic - 6) / 5.0) ** 2)
        side = -1.0 if k % 2 == 0 else 1.0  # even ICs are right contacts
        acc[:, 1] += side * 1.0 * np.exp(-0.5 * ((t - ic - 20) / 8.0) ** 2)
        acc[:, 2] += 1.0 * np.exp(-0.5 * ((t - ic - 15) / 6.0) ** 2)
    if turn:  # 90 deg to the left in 1 s, in the middle of the walk
        mid = ics[len(ics) // 2]
        gyr[mid : mid + 100, 0] = math.radians(90.0)
    return acc, gyr, ics


def run(pipe: GaitPipeline, acc: np.ndarray, gyr: np.ndarray, chunk: int | None = None,
        ) -> list[PipelineOutput]:
    state = pipe.initial_state(t0_us=T0_US, sample_rate_hz=FS)
    step = chunk or len(acc)
    outs = [pipe.process(state, acc[i : i + step], gyr[i : i + step])
            for i in range(0, len(acc), step)]
    outs.append(pipe.flush(state))
    return outs


def flat(outs: list[PipelineOutput]) -> tuple[list, list, list, list]:
    return ([s for o in outs for s in o.steps], [w for o in outs for w in o.windows],
            [b for o in outs for b in o.bouts], [t for o in outs for t in o.turns])


def test_regular_walk_at_100_steps_per_min() -> None:
    acc, gyr, ics = synthetic_walk()
    steps, windows, bouts, _ = flat(run(GaitPipeline(sensor_height_m=1.0), acc, gyr))
    # the causal high-pass may move a peak by one sample; intervals stay exact. The last IC
    # is the stopping step: a step, but not part of the bout (BoutAssembler.drop_last_ics,
    # release_stop), so it has its step time and no stride values.
    assert np.abs(np.array([s.sample for s in steps]) - ics).max() <= 1
    assert set(np.diff([s.sample for s in steps])) == {60}
    assert [s.side for s in steps] == ["right" if k % 2 == 0 else "left" for k in range(40)]
    assert steps[-1].step_time_s == pytest.approx(0.6)
    assert math.isnan(steps[-1].stride_time_s) and not math.isnan(steps[-2].stride_time_s)
    assert len(bouts) == 1
    b = bouts[0]
    assert abs(b.start_sample - ics[0]) <= 1 and abs(b.end_sample - ics[-2]) <= 1
    assert b.params.cadence_spm == pytest.approx(100.0, abs=1e-9)
    assert b.params.step_time_s == pytest.approx(0.6, abs=1e-12)
    assert b.params.stride_time_s == pytest.approx(1.2, abs=1e-12)
    assert b.params.stride_time_cv_pct == 0.0
    assert b.params.step_time_asymmetry_pct == pytest.approx(0.0, abs=1e-9)
    assert b.params.step_regularity == pytest.approx(1.0, abs=0.1)
    assert b.params.stride_regularity == pytest.approx(1.0, abs=0.1)
    walking = [w for w in windows if w.walking]
    assert walking
    full = [w for w in walking if w.params.n_steps >= 16]  # windows wholly inside the walk
    assert full
    for w in full:
        assert w.params.cadence_spm == pytest.approx(100.0, abs=1e-9)
        assert w.params.stride_time_cv_pct == 0.0
    # every window is aligned to the window length on the device clock
    assert all(w.window_start_us % 10_000_000 == 0 for w in windows)


def test_standing_gives_no_steps() -> None:
    acc = np.tile([G, 0.0, 0.0], (3000, 1))
    steps, windows, bouts, turns = flat(run(GaitPipeline(sensor_height_m=1.0), acc,
                                            np.zeros_like(acc)))
    assert steps == [] and bouts == [] and turns == []
    assert windows and not any(w.walking for w in windows)


@pytest.mark.parametrize("chunk", [1, 7, 64, 100, 333, 1024])
def test_chunking_gives_identical_results(chunk: int) -> None:
    acc, gyr, _ = synthetic_walk(turn=True)
    rng = np.random.default_rng(3)
    acc = acc + rng.normal(scale=0.3, size=acc.shape)
    gyr = gyr + rng.normal(scale=0.05, size=gyr.shape)
    pipe = GaitPipeline(sensor_height_m=1.0)
    assert repr(flat(run(pipe, acc, gyr, chunk))) == repr(flat(run(pipe, acc, gyr)))


@pytest.mark.parametrize("chunk", [50, 250])
def test_state_round_trip_resumes_exactly(chunk: int) -> None:
    acc, gyr, _ = synthetic_walk(turn=True)
    rng = np.random.default_rng(5)
    acc = acc + rng.normal(scale=0.2, size=acc.shape)
    pipe = GaitPipeline(sensor_height_m=1.0, window_s=5.0)
    whole = flat(run(pipe, acc, gyr, chunk))
    state = pipe.initial_state(t0_us=T0_US, sample_rate_hz=FS)
    outs = []
    for i in range(0, len(acc), chunk):
        blob = msgpack.packb(state.pack())
        state = PipelineState.unpack(msgpack.unpackb(blob))
        assert msgpack.packb(state.pack()) == blob  # exact round trip
        outs.append(pipe.process(state, acc[i : i + chunk], gyr[i : i + chunk]))
    outs.append(pipe.flush(state))
    assert repr(flat(outs)) == repr(whole)
    assert whole[0] and whole[2] and whole[3]  # steps, bouts and turns went through it


def test_turn_of_90_degrees() -> None:
    yaw = np.zeros(1000)
    yaw[300:400] = math.radians(90.0)
    det = TurnDetector()
    turns = det.process(det.initial_state(), yaw, FS)
    assert len(turns) == 1
    assert turns[0].angle_deg == pytest.approx(90.0, abs=2.0)
    assert 0.9 <= turns[0].duration_s(FS) <= 1.5


def test_turns_in_pipeline_are_counted_in_the_bout() -> None:
    acc, gyr, _ = synthetic_walk(turn=True)
    _, _, bouts, turns = flat(run(GaitPipeline(sensor_height_m=1.0), acc, gyr))
    assert len(turns) == 1 and turns[0].angle_deg == pytest.approx(90.0, abs=2.0)
    assert bouts[0].n_turns == 1


def test_variability_formulas() -> None:
    assert cv_pct(np.full(10, 1.1)) == 0.0
    assert cv_pct(np.array([1.0, 2.0])) == pytest.approx(math.sqrt(0.5) / 1.5 * 100)
    # left steps 0.5 s, right steps 0.7 s -> |0.5 - 0.7| / 0.6 = 33.3 %
    ics = [0, 50, 120, 170, 240, 290]
    sides = ["left", "left", "right", "left", "right", "left"]
    assert step_time_asymmetry_pct(ics, sides, FS) == pytest.approx(0.2 / 0.6 * 100)
    t = np.arange(2000) / FS
    x = np.sin(2 * np.pi * t / 0.6) + 0.3 * np.sin(2 * np.pi * t / 1.2)
    step_reg, stride_reg = regularity(x, 0.6, FS)
    assert stride_reg == pytest.approx(1.0, abs=0.02)
    assert step_reg < stride_reg


def test_inverted_pendulum_formula() -> None:
    assert pendulum_step_length_m(0.05, 1.0, 1.0) == pytest.approx(2 * math.sqrt(0.1 - 0.0025))
    assert pendulum_step_length_m(0.05, 1.0, MOBILISED_MS_SCALING) == pytest.approx(
        4.587 / 4 * 2 * math.sqrt(0.0975))
    assert math.isnan(pendulum_step_length_m(0.0, 1.0, 1.0))


def test_bout_needs_min_ics_and_breaks_on_long_gap() -> None:
    asm = BoutAssembler(max_break_s=2.0, min_ics=4, min_bout_ics=4, drop_last_ics=0)
    st = asm.initial_state()
    ics = [(0, "left"), (60, "right"), (120, "left")]
    out = asm.process(st, ics, 130, FS)
    assert out.steps == [] and out.closed == []
    out = asm.process(st, [(180, "right")], 190, FS)
    assert [s[0] for s in out.steps] == [0, 60, 120, 180]
    out = asm.process(st, [(600, "left")], 610, FS)  # 4.2 s later: the bout ends
    assert len(out.closed) == 1
    assert out.closed[0][:5] == (0, 0, 180, 4, 180)  # index, first, last, ICs, newest IC
    assert out.closed[0].closed_after == 180 + 2.0 * FS
    assert asm.flush(st).closed == []  # the lone IC at 600 is no bout


def _turn_walk(asm: BoutAssembler, gap: int, turn_deg: float, chunked: bool,
               ) -> tuple[list[int], list[tuple[int, int, int, int, float]]]:
    """8 ICs 0.6 s apart heading 0 deg, a gap of ``gap`` samples, 4 more ICs heading
    ``turn_deg``; ICs one by one (state packed and restored in between) or all at once.
    Returns the steps and the closed bouts (first, last, ICs, newest IC, closed after)."""
    first = [(k * 60, "left") for k in range(8)]
    second = [(420 + gap + k * 60, "right") for k in range(4)]
    ics, heads = [*first, *second], [0.0] * 8 + [turn_deg] * 4
    st = asm.initial_state()
    outs = []
    if chunked:
        for (ic, side), h in zip(ics, heads, strict=True):
            outs.append(asm.process(st, [(ic, side)], ic + 1, FS, headings_deg=[h]))
            st = BoutState.unpack(msgpack.unpackb(msgpack.packb(st.pack())))
        outs.append(asm.process(st, [], 10**6, FS, headings_deg=[]))
    else:
        outs.append(asm.process(st, ics, 10**6, FS, headings_deg=heads))
    outs.append(asm.flush(st))
    return ([s[0] for o in outs for s in o.steps],
            [(c.start, c.end, c.n_ics, c.last_seen, c.closed_after) for o in outs
             for c in o.closed])


def test_a_turn_bridges_a_gap_up_to_mobilised_s_maximum_break() -> None:
    """The trunk misses turning steps: a gap of 2.6 s (longer than the 2.2 s break, at most
    Mobilise-D's 3 s) in which the heading changed by 45 deg or more does not end the bout;
    without the turn, or longer than 3 s, it does, 2.2 s after the newest IC. Chunking and
    a state round trip between ICs change nothing."""
    asm = BoutAssembler(min_ics=4, min_bout_ics=4, drop_last_ics=0)
    for chunked in (False, True):
        steps, closed = _turn_walk(asm, 260, 180.0, chunked)
        assert steps == [k * 60 for k in range(8)] + [680, 740, 800, 860]
        assert closed == [(0, 860, 12, 860, 860 + 220)]  # one bout, across the turn
        for gap, turn in ((260, 44.0), (310, 180.0)):
            steps, closed = _turn_walk(asm, gap, turn, chunked)
            assert closed == [(0, 420, 8, 420, 420 + 220),
                              (420 + gap, 600 + gap, 4, 600 + gap, 600 + gap + 220)]
    assert BoutAssembler(turn_break_s=None).break_cap_s == pytest.approx(2.2)
    assert asm.break_cap_s == pytest.approx(3.0)


def test_a_confirmed_chain_waits_for_a_turn_to_close() -> None:
    """With headings a confirmed chain is closed once no IC can bridge its gap (3 s after
    its newest IC), as of 2.2 s after it; without headings at 2.2 s, as before."""
    asm = BoutAssembler(min_ics=4, min_bout_ics=4, drop_last_ics=0)
    ics = [(k * 60, "left") for k in range(6)]
    st = asm.initial_state()
    asm.process(st, ics, 301, FS, headings_deg=[0.0] * 6)
    assert asm.process(st, [], 300 + 221, FS, headings_deg=[]).closed == []
    assert asm.process(st, [], 300 + 300, FS, headings_deg=[]).closed == []
    out = asm.process(st, [], 300 + 301, FS, headings_deg=[])
    assert [(c.end, c.closed_after) for c in out.closed] == [(300, 300 + 220)]
    st = asm.initial_state()
    asm.process(st, ics, 301, FS)
    out = asm.process(st, [], 300 + 221, FS)
    assert [(c.end, c.closed_after) for c in out.closed] == [(300, 300 + 220)]


def test_a_slow_chain_ends_as_before_when_no_turn_bridges_it() -> None:
    """At 43 steps/min (1.4 s) the stopping-step verdict waits 2 step times (2.8 s), past
    the 2.2 s break: with headings (the close waits up to 3 s for a bridging IC) the step
    is dropped all the same, as the close at the break dropped it, and the bout is the
    same; also fed IC by IC with the state packed in between."""
    asm = BoutAssembler()
    ics = [(k * 140, "left" if k % 2 else "right") for k in range(8)]
    runs = []
    for heads in (None, [0.0] * 8):
        st = asm.initial_state()
        outs = [asm.process(st, ics, 10**6, FS, headings_deg=heads), asm.flush(st)]
        runs.append(([s[0] for o in outs for s in o.steps], set().union(*(o.stops for o in outs)),
                     [tuple(c) for o in outs for c in o.closed]))
    st = asm.initial_state()
    outs = []
    for ic in ics:
        outs.append(asm.process(st, [ic], ic[0] + 1, FS, headings_deg=[0.0]))
        st = BoutState.unpack(msgpack.unpackb(msgpack.packb(st.pack())))
    outs += [asm.process(st, [], 980 + 281, FS, headings_deg=[]),
             asm.process(st, [], 980 + 301, FS, headings_deg=[]), asm.flush(st)]
    runs.append(([s[0] for o in outs for s in o.steps], set().union(*(o.stops for o in outs)),
                  [tuple(c) for o in outs for c in o.closed]))
    assert outs[-3].closed == [] and len(outs[-2].closed) == 1  # closed once 3 s passed
    assert runs[0] == runs[1] == runs[2]
    assert runs[0][0] == [k * 140 for k in range(7)] and runs[0][1] == set()
    assert runs[0][2] == [(0, 0, 840, 7, 980, 980 + 220)]


def test_bout_needs_four_strides_to_be_reported() -> None:
    """Steps are released after ``min_ics`` ICs; a bout needs 6 ICs (4 strides, MicroWB)."""
    asm = BoutAssembler(max_break_s=2.0, min_ics=4, min_bout_ics=6, drop_last_ics=0)
    st = asm.initial_state()
    out = asm.process(st, [(k * 60, "left") for k in range(5)], 250, FS)
    assert [s[0] for s in out.steps] == [0, 60, 120, 180, 240]
    assert asm.flush(st).closed == []  # 5 ICs = 3 strides: steps, but no bout
    out = asm.process(st, [(1000 + k * 60, "left") for k in range(6)], 1400, FS)
    assert {s[2] for s in out.steps} == {1}  # a new bout index, even though bout 0 was dropped
    out = asm.flush(st)
    assert len(out.closed) == 1 and out.closed[0].bout_index == 1 and out.closed[0].n_ics == 6


def test_bout_edges_off_the_step_rhythm_are_trimmed() -> None:
    """A leading and a trailing IC far off the median step time are not part of the bout."""
    asm = BoutAssembler(max_break_s=2.0, min_ics=4, min_bout_ics=4, edge_factor=1.5,
                        drop_last_ics=0)
    st = asm.initial_state()
    ics = [0] + [150 + k * 60 for k in range(8)] + [150 + 7 * 60 + 150]
    out = asm.process(st, [(i, "left") for i in ics], ics[-1] + 1, FS)
    released = [s[0] for s in out.steps]
    assert released == ics[1:-1]  # the trailing one is held back
    out = asm.flush(st)
    assert (out.closed[0].start, out.closed[0].end, out.closed[0].n_ics) == (
        ics[1], ics[-2], len(ics) - 2)
    assert out.closed[0].last_seen == ics[-1]  # the trailing IC was seen, but is no step


def test_held_back_ic_is_released_when_the_rhythm_resumes() -> None:
    asm = BoutAssembler(max_break_s=2.0, min_ics=4, min_bout_ics=4, edge_factor=1.5,
                        drop_last_ics=0)
    st = asm.initial_state()
    ics = [k * 60 for k in range(6)] + [300 + 120, 300 + 180, 300 + 240]
    out = asm.process(st, [(i, "left") for i in ics], ics[-1] + 1, FS)
    assert [s[0] for s in out.steps] == ics  # the 1.2 s step is kept once 60-sample steps follow
    assert BoutState.unpack(msgpack.unpackb(msgpack.packb(st.pack()))) == st


def test_the_stopping_step_is_not_part_of_the_bout() -> None:
    """The newest IC is held until another follows; when the walk stops it is no bout step:
    dropped, or with ``release_stop`` released as a step of no bout (marked in ``stops``)."""
    ics = [(k * 60, "left") for k in range(8)]
    for drop, expected, release in ((1, 7, False), (0, 8, False), (1, 7, True)):
        asm = BoutAssembler(max_break_s=2.0, min_ics=4, min_bout_ics=4, drop_last_ics=drop,
                            release_stop=release)
        st = asm.initial_state()
        out = asm.process(st, ics, ics[-1][0] + 1, FS)
        assert [s[0] for s in out.steps] == [c[0] for c in ics[:expected]]
        assert asm.decided_until(st, 10**6) == (ics[-1][0] if drop else 10**6)
        assert BoutState.unpack(msgpack.unpackb(msgpack.packb(st.pack()))) == st
        out = asm.process(st, [], ics[-1][0] + 300, FS)  # 3 s of nothing: the bout closes
        if release:  # 1.8 s after it, before the bout closed
            assert out.steps == [(ics[-1][0], "left", 0)] and out.stops == {ics[-1][0]}
        else:
            assert out.steps == [] and out.stops == set()
        assert (out.closed[0].start, out.closed[0].end, out.closed[0].n_ics) == (
            0, ics[expected - 1][0], expected)


def test_ics_after_a_postural_transition_cannot_start_a_bout() -> None:
    asm = BoutAssembler(max_break_s=2.0, min_ics=4, min_bout_ics=4, drop_last_ics=0)
    st = asm.initial_state()
    ics = [(k * 60, "left") for k in range(10)]
    out = asm.process(st, ics, 700, FS, transfer={0, 60})
    assert [s[0] for s in out.steps] == [c[0] for c in ics[2:]]
    out = asm.process(st, [(600, "left"), (660, "left")], 700, FS, transfer={660})
    assert [s[0] for s in out.steps] == [600, 660]  # a confirmed bout keeps them


def test_standing_up_before_walking_is_not_a_step() -> None:
    """A 0.6 s trunk pitch at 120 deg/s (sit-to-stand) ending 0.3 s before the first IC."""
    acc, gyr, ics = synthetic_walk()
    gyr_stand = gyr.copy()
    gyr_stand[ics[0] - 90 : ics[0] - 30, 1] = math.radians(120.0)
    pipe = GaitPipeline(sensor_height_m=1.0)
    plain = [s.sample for s in flat(run(pipe, acc, gyr))[0]]
    after_transfer = [s.sample for s in flat(run(pipe, acc, gyr_stand))[0]]
    assert plain[0] == pytest.approx(ics[0], abs=1)
    # the ICs within the gate's 1.5 s after the rotation (plus filter lag) start no bout
    assert ics[0] < after_transfer[0] <= ics[0] - 30 + 250
    assert after_transfer == [i for i in plain if i >= after_transfer[0]]
    gate = TransferGate()
    up = np.tile([1.0, 0.0, 0.0], (len(acc), 1))
    st = gate.initial_state(FS, history=len(acc))
    gate.process(st, np.abs(gyr_stand[:, 1]), up, FS)
    assert not gate.accept(st, ics[0], FS)
    assert gate.accept(st, ics[3], FS)  # 1.5 s later the trunk is steady again


def test_turning_steps_are_shortened() -> None:
    """Hand-derived: 45 deg over a 1.2 s stride, 0.6 s step -> 22.5 deg -> factor 1 - 2/8."""
    fs = FS
    est = StepLengthEstimator(turn_shortening=2.0)

    def signals(heading: np.ndarray):
        st = est.initial_state(fs, history=200)
        st.position[:200] = np.where(np.arange(200) % 60 < 30, 0.0, 0.02)  # h = 2 cm per step
        st.heading[:200] = heading
        st.n_seen = 200
        return st

    straight = signals(np.zeros(200))
    turning = signals(np.r_[np.linspace(0.0, math.radians(45.0), 121),
                            [math.radians(45.0)] * 79])
    base = pendulum_step_length_m(0.02, 1.0, MOBILISED_MS_SCALING)
    assert base == pytest.approx(est.step_length_m(straight, 60, 120, fs, 1.0), rel=1e-6)
    assert est.step_length_m(straight, 60, 120, fs, 1.0, 0) == est.step_length_m(
        straight, 60, 120, fs, 1.0)  # no heading change: no shortening
    assert est.step_length_m(turning, 60, 120, fs, 1.0, 0) == pytest.approx(
        base * (1 - 2.0 * math.radians(22.5) / math.pi), rel=1e-6)
    # the stride start defaults to the step's own start: 45/2 deg over the step itself
    assert est.step_length_m(turning, 60, 120, fs, 1.0) == pytest.approx(
        base * (1 - 2.0 * math.radians(22.5) / math.pi), rel=1e-6)
    assert StepLengthEstimator(turn_shortening=0.0).step_length_m(
        turning, 60, 120, fs, 1.0, 0) == est.step_length_m(straight, 60, 120, fs, 1.0)
    # beyond the data, or a step longer than max_step_time_s: no length
    assert math.isnan(est.step_length_m(turning, 60, 200, fs, 1.0))
    short = StepLengthEstimator(max_step_time_s=1.0)
    assert math.isnan(short.step_length_m(turning, 60, 170, fs, 1.0))
    assert math.isfinite(short.step_length_m(turning, 60, 150, fs, 1.0))


def test_search_back_finds_a_weak_step_on_the_rhythm() -> None:
    """One step's impact at a quarter of the others' is found only through the rhythm."""
    acc, gyr, ics = synthetic_walk()
    t = np.arange(len(acc))
    weak = ics[20]
    acc[:, 0] -= 0.75 * 3.0 * np.exp(-0.5 * ((t - weak - 6) / 5.0) ** 2)
    from justwalk.gait.orientation import VerticalProjection
    vp = VerticalProjection()
    acc_v = vp.process(vp.initial_state(), acc, gyr, FS).acc_v
    found = {}
    for ratio in (0.5, None):
        det = IcDetector(weak_ratio=ratio)
        found[ratio] = det.process(det.initial_state(FS), acc_v, FS).tolist()
    assert any(abs(i - weak) <= 2 for i in found[0.5])
    assert not any(abs(i - weak) <= 2 for i in found[None])
    assert len(found[0.5]) == len(ics)


def test_steps_while_bent_far_from_the_walking_posture_are_not_steps() -> None:
    """After 6 rhythmic ICs upright, ICs with the trunk bent 40 deg are rejected, 15 deg not."""
    gate = TransferGate()
    n = 2000
    st = gate.initial_state(FS, history=n)
    up = np.tile([1.0, 0.0, 0.0], (n, 1))
    bent, slight = math.radians(40.0), math.radians(15.0)
    up[1500:1700] = [math.cos(bent), 0.0, math.sin(bent)]
    up[1700:] = [math.cos(slight), 0.0, math.sin(slight)]
    gate.process(st, np.zeros(n), up, FS)
    verdicts = [gate.upright(st, ic) for ic in range(100, 1000, 60)]
    assert all(verdicts) and st.n_posture >= 6
    assert not gate.upright(st, 1550)
    assert gate.upright(st, 1750)
    fresh = gate.initial_state(FS, history=n)  # no walking posture learnt: nothing rejected
    gate.process(fresh, np.zeros(n), up, FS)
    assert gate.upright(fresh, 1550)


def test_scoring_counts_ics_outside_reference_bouts_only_in_the_full_figure() -> None:
    from justwalk.evaluation.gait_reference import Bout, Counts, Detection, Trial

    trial = Trial("XX/001", "Test11", "Trial1", 100.0, 0, np.zeros((1000, 6), np.float32),
                  1.0, (Bout(100, 500),), np.array([150, 250, 350, 450]), ("L", "R", "L", "R"))
    # 150 and 250 exact, 460 within 0.25 s of 450, 350 missed; 800 lies outside the bout,
    # 520 just outside it but within the tolerance (and matching nothing)
    c = Counts()
    c.add(trial, Detection(np.array([150, 250, 460, 520, 800]), [Bout(150, 460)]))
    s = c.summary()
    assert (c.ic_tp, c.ic_fp, c.ic_fn) == (3, 2, 1)
    assert s["ic_f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert (c.ic_in_bouts_tp, c.ic_in_bouts_fp) == (3, 1)
    assert s["ic_f1_in_ref_bouts"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))


def test_false_ics_inside_reference_same_foot_gaps_are_counted_but_still_false() -> None:
    from justwalk.evaluation.gait_reference import Bout, Counts, Detection, Trial, same_foot_gaps

    # bout 1: left 150, left 290 (the right contact between them is missing), right 350;
    # bout 2: right 650, left 720, but "unknown" sides are never a gap; the pair 350 -> 650
    # spans two bouts and is not a gap either
    trial = Trial("XX/001", "Test11", "Trial1", 100.0, 0, np.zeros((1000, 6), np.float32),
                  1.0, (Bout(100, 400), Bout(600, 800)),
                  np.array([150, 290, 350, 650, 720, 780]),
                  ("left", "left", "right", "right", "unknown", "unknown"))
    assert same_foot_gaps(trial) == [(150, 290)]
    c = Counts()
    # 220 fills the gap; 175 is within the tolerance of 150 (a duplicate, not a gap step);
    # 500 is false outside every gap
    c.add(trial, Detection(np.array([150, 175, 220, 290, 350, 500]), [Bout(150, 350)]))
    s = c.summary()
    assert (c.ic_tp, c.ic_fp) == (3, 3)
    assert s["ref_same_foot_gaps"] == 1 and s["ic_fp_in_ref_gaps"] == 1
