"""The fall monitor's compiled per-chunk step (``justwalk.falls._advance``) against the
Python loop it replaced, on chunks with candidates in every position; the wire's float32
samples against their float64 copies; refused chunks leave the state as it was."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from justwalk.falls import FallEvent, FallMonitor, FallMonitorState
from justwalk.gait.pipeline import GaitPipeline
from tests.test_falls_detectors import (
    FS,
    T0_US,
    _both,
    _double_peak_stumble,
    steps_of,
    walking,
)


def python_process(mon: FallMonitor, state: FallMonitorState, x: np.ndarray, t0_us: int,
                   fs: float, steps_us: list[int]) -> list[FallEvent]:
    """``FallMonitor.process`` as a Python loop over the front end's methods (the code the
    kernel replaced): reduce a piece, drop and add steps, scan, until the chunk is used."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    rate = mon._rate(fs)
    front = state.front
    n = x.shape[0]
    new_segment = mon.front.starts_segment(front, n, t0_us, fs)
    steps = np.asarray(steps_us, dtype=np.int64).reshape(-1)
    if steps.size:
        mon._check_steps(state, steps, new_segment, rate)
    if new_segment:
        if not np.isfinite(x).all():
            raise ValueError("samples must be finite")
        mon.front.reset(front, t0_us, fs)
        state.near_fall.next_candidate = state.fall.next_candidate = 0
    elif front.rows.shape[0] != rate.capacity:
        mon.front.fit(front)
    steps = steps[steps >= front.segment_t0_us]
    events: list[FallEvent] = []
    b_us = rate.block_samples * 1e6 / fs
    pos = i_step = 0
    while True:
        pos = mon.front.reduce(front, x, pos, rate.piece_blocks, rate.block_samples)
        front.drop_steps_before(front.segment_t0_us + round(
            (front.n_blocks - rate.capacity) * b_us))
        j = int(np.searchsorted(steps, front.segment_t0_us + round(front.n_blocks * b_us)))
        front.add_steps(steps[i_step:max(j, i_step)])
        i_step = max(j, i_step)
        mon._scan(state, rate, events)
        if pos >= n:
            break
    front.add_steps(steps[i_step:])
    return sorted(events, key=lambda e: (e.detected_us, e.peak_us))


def _recording() -> np.ndarray:
    """A near-fall, a fall and a double-peak stumble, between walks, as float32 values."""
    x = np.concatenate([walking(4.0, seed=3), _both(), _double_peak_stumble(),
                        walking(5.0, seed=4)])
    return x.astype(np.float32).astype(np.float64)


def _chunks(n: int, sizes: list[int]) -> list[tuple[int, int]]:
    out, i, k = [], 0, 0
    while i < n:
        out.append((i, min(n, i + sizes[k % len(sizes)])))
        i = out[-1][1]
        k += 1
    return out


@pytest.mark.parametrize("sizes", [[50], [1], [7, 300], [250], [1024, 3], [333, 0, 90]])
def test_the_kernel_gives_the_python_loop_s_events_and_states(sizes):
    """Chunk by chunk: the same events and the same packed state (long chunks are reduced
    in several pieces, and a candidate may complete in any of them)."""
    x = _recording()
    pipeline = GaitPipeline(sensor_height_m=1.0)
    gait = pipeline.initial_state(t0_us=T0_US, sample_rate_hz=FS)
    mon, ref = FallMonitor(), FallMonitor()
    state, ref_state = mon.initial_state(), ref.initial_state()
    n_events = 0
    for a, b in _chunks(x.shape[0], sizes):
        c = x[a:b]
        steps = [s.t_us for s in pipeline.process(gait, c[:, :3], c[:, 3:]).steps]
        t0 = T0_US + round(a * 1e6 / FS)
        events = mon.process(state, c, t0, FS, steps)
        assert events == python_process(ref, ref_state, c, t0, FS, steps)
        assert msgpack.packb(state.pack()) == msgpack.packb(ref_state.pack())
        n_events += len(events)
    assert n_events == 3


def test_the_wire_s_float32_samples_give_what_their_float64_copies_give():
    """``decode_chunk`` gives read-only float32 samples, which the kernel widens itself."""
    x = _recording()
    wire = np.frombuffer(x.astype("<f4").tobytes(), dtype="<f4").reshape(x.shape)
    assert not wire.flags.writeable
    steps = steps_of(x)
    mon = FallMonitor()
    s32, s64 = mon.initial_state(), mon.initial_state()
    events = []
    for a, b in _chunks(x.shape[0], [50]):
        t0 = T0_US + round(a * 1e6 / FS)
        due = [t for t in steps if t0 <= t < t0 + 500_000]
        e32 = mon.process(s32, wire[a:b], t0, FS, due)
        assert e32 == mon.process(s64, x[a:b], t0, FS, due)
        assert msgpack.packb(s32.pack()) == msgpack.packb(s64.pack())
        events += e32
    assert len(events) == 3


def test_a_refused_chunk_changes_nothing():
    """Steps out of order, a step after the verdicts that could read it, a sample that is
    not finite: ``ValueError``, and the state is as it was."""
    mon = FallMonitor()
    state = mon.initial_state()
    x = walking(10.0)
    steps = steps_of(x)
    first = [t for t in steps if t < T0_US + 700_000]
    assert first
    mon.process(state, x[:500], T0_US, FS, first)
    # judged up to block 14 (5 s of data, 3.5 s look-ahead): walking windows end at 0.9 s
    closed = T0_US + state.near_fall.next_candidate * 100_000 - 500_000
    assert closed == T0_US + 1_000_000 and first[-1] < closed - 1
    before = msgpack.packb(state.pack())
    t0 = T0_US + 5_000_000
    nan = x[500:550].copy()
    nan[20, 4] = np.nan
    later = [t for t in steps if t >= T0_US + 3_000_000][:2]
    for chunk, chunk_steps, match in (
            (x[500:550], later[::-1], "strictly increasing"),
            (x[500:550], [closed - 1, *later], "came after the near-fall verdicts"),
            (x[500:550], [first[-1], *later], "not after the last step"),
            (x[500:550], [later[0], later[0]], "strictly increasing"),
            (nan, later, "finite"),
            (nan.astype(np.float32), [], "finite")):
        with pytest.raises(ValueError, match=match):
            mon.process(state, chunk, t0, FS, chunk_steps)
        assert msgpack.packb(state.pack()) == before
    assert mon.process(state, x[500:550], t0, FS, later) == []
