"""The gait pipeline's compact binary state (``PipelineState.pack``/``unpack``).

A restarted worker resumes from a packed state: the output must continue bit for bit, the
packed form must be msgpack-ready and small, must not grow with a long walk, and a state
written by another format version must be refused by name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from justwalk.gait.pipeline import STATE_VERSION, GaitPipeline, PipelineOutput, PipelineState
from justwalk.state_format import StateFormatError

FS = 100.0
T0_US = 1_700_000_000_000_000
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mobilised"


def walk(seconds: float, *, step_s: float = 0.55, seed: int = 0,
         pause_every_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Standing 3 s, then walking: a vertical and a medio-lateral bump per step, a slow
    heading drift and noise; optionally a 4 s pause every ``pause_every_s``."""
    n = round(seconds * FS)
    t = np.arange(n) / FS
    rng = np.random.default_rng(seed)
    acc = np.zeros((n, 3))
    acc[:, 0] = 9.81
    gyr = np.zeros((n, 3))
    k = 0
    tic = 3.0
    while tic < seconds - 1:
        if pause_every_s and tic % pause_every_s < step_s:
            tic += 4.0
        acc[:, 0] += 3.0 * np.exp(-0.5 * ((t - tic - 0.06) / 0.05) ** 2)
        acc[:, 1] += (-1.0) ** k * np.exp(-0.5 * ((t - tic - 0.2) / 0.08) ** 2)
        tic += step_s * (1 + 0.03 * rng.normal())
        k += 1
    gyr[:, 0] = 0.3 * np.sin(2 * np.pi * t / 20.0)  # turning back and forth
    return acc + rng.normal(scale=0.2, size=acc.shape), gyr + rng.normal(scale=0.02,
                                                                          size=gyr.shape)


def outputs(outs: list[PipelineOutput]) -> str:
    return repr([[dataclasses.astuple(x) for x in getattr(o, k)]
                 for o in outs for k in ("steps", "windows", "bouts", "turns")])


def run(pipe: GaitPipeline, acc: np.ndarray, gyr: np.ndarray, chunk: int,
        restart: bool) -> tuple[str, list[int]]:
    """Outputs, restarting from the packed state before every chunk if ``restart``."""
    state = pipe.initial_state(t0_us=T0_US, sample_rate_hz=FS)
    outs, sizes = [], []
    for i in range(0, len(acc), chunk):
        if restart:
            blob = msgpack.packb(state.pack())
            sizes.append(len(blob))
            state = PipelineState.unpack(msgpack.unpackb(blob))
        outs.append(pipe.process(state, acc[i:i + chunk], gyr[i:i + chunk]))
    if restart:
        state = PipelineState.unpack(msgpack.unpackb(msgpack.packb(state.pack())))
    outs.append(pipe.flush(state))
    return outputs(outs), sizes


@pytest.mark.parametrize("chunk", [37, 50, 100])
def test_restart_between_any_two_chunks_changes_nothing(chunk: int) -> None:
    acc, gyr = walk(90, pause_every_s=30)
    pipe = GaitPipeline(sensor_height_m=0.95, window_s=5.0)
    plain, _ = run(pipe, acc, gyr, chunk, restart=False)
    restarted, _ = run(pipe, acc, gyr, chunk, restart=True)
    assert restarted == plain
    state = pipe.initial_state(t0_us=T0_US, sample_rate_hz=FS)
    out = [pipe.process(state, acc, gyr), pipe.flush(state)]
    n = {k: sum(len(getattr(o, k)) for o in out) for k in ("steps", "windows", "bouts", "turns")}
    assert n["steps"] > 100 and n["bouts"] >= 2 and n["turns"] >= 2 and n["windows"] >= 17


def _types(obj: Any) -> set[type]:
    if isinstance(obj, list):
        return {t for v in obj for t in _types(v)} | {list}
    return {type(obj)}


def test_packed_state_is_versioned_msgpack_ready_and_small() -> None:
    acc, gyr = walk(60)
    pipe = GaitPipeline(sensor_height_m=0.95, window_s=5.0)
    state = pipe.initial_state(t0_us=T0_US, sample_rate_hz=FS)
    pipe.process(state, acc[:4000], gyr[:4000])  # mid-walk
    assert state.bouts.confirmed
    packed = state.pack()
    assert packed[0] == STATE_VERSION
    assert _types(packed) <= {list, int, float, bytes, bool, type(None)}
    assert len(msgpack.packb(packed)) <= 14_000


def test_state_does_not_grow_with_a_long_walk() -> None:
    """20 minutes of walking in one bout: the state in its last minute is no bigger than in
    its 12th (sample numbers there already take 5 bytes in msgpack) nor, but for those
    bytes, than in its second."""
    acc, gyr = walk(20 * 60, seed=3)
    pipe = GaitPipeline(sensor_height_m=0.95, window_s=5.0)
    state = pipe.initial_state(t0_us=T0_US, sample_rate_hz=FS)
    minute: dict[int, list[int]] = {1: [], 11: [], 19: []}
    bouts = []
    for i in range(0, len(acc), 50):
        bouts += pipe.process(state, acc[i:i + 50], gyr[i:i + 50]).bouts
        if i // 6000 in minute:
            minute[i // 6000].append(len(msgpack.packb(state.pack())))
    bouts += pipe.flush(state).bouts
    sizes = {k: max(v) for k, v in minute.items()}
    assert sizes[19] <= sizes[11] + 30 and sizes[19] <= sizes[1] + 200, sizes
    assert len(bouts) == 1 and bouts[0].params.n_steps > 2000
    assert bouts[0].params.cadence_spm == pytest.approx(60 / 0.55, rel=0.02)


def test_an_unknown_version_is_refused_by_name() -> None:
    pipe = GaitPipeline(sensor_height_m=1.0)
    packed = pipe.initial_state(t0_us=T0_US, sample_rate_hz=FS).pack()
    with pytest.raises(StateFormatError, match=r"version 99.*reads 1"):
        PipelineState.unpack([99, *packed[1:]])
    with pytest.raises(StateFormatError):
        PipelineState.unpack({"not": "a list"})
    with pytest.raises(StateFormatError):
        PipelineState.unpack(packed[:-3])
    broken = list(packed)
    broken[11] = [4096, 10, b"\x00" * 7]  # the acc_v ring: 7 bytes are not 10 float32
    with pytest.raises(StateFormatError):
        PipelineState.unpack(broken)


@pytest.mark.realdata
@pytest.mark.skipif(not (DATA / "data" / "lab").exists(), reason=f"{DATA} not present")
def test_real_recording_restarted_before_every_chunk() -> None:
    from justwalk.evaluation.gait_reference import load_trials

    tr = next(t for t in load_trials(DATA) if t.name == "MS/001 Test11 Trial1")
    acc = tr.samples[:, :3].astype(np.float64)
    gyr = tr.samples[:, 3:].astype(np.float64)
    pipe = GaitPipeline(sensor_height_m=tr.sensor_height_m, window_s=5.0)

    def go(restart: bool) -> tuple[str, list[int]]:
        state = pipe.initial_state(t0_us=tr.t0_us, sample_rate_hz=tr.sample_rate_hz)
        outs, sizes = [], []
        for i in range(0, len(acc), 50):
            if restart:
                blob = msgpack.packb(state.pack())
                sizes.append(len(blob))
                state = PipelineState.unpack(msgpack.unpackb(blob))
            outs.append(pipe.process(state, acc[i:i + 50], gyr[i:i + 50]))
        outs.append(pipe.flush(state))
        return outputs(outs), sizes

    plain, _ = go(False)
    restarted, sizes = go(True)
    assert restarted == plain
    assert max(sizes) <= 14_000
