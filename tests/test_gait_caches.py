"""The gait pipeline's per-chunk shortcuts change no output (issue #13's throughput work).

The bout assembler caches its interval median and its next deadline, and is skipped when a
chunk brings no IC and no decision falls due; the pipeline calls its kernel's compiled
specialisation without numba's per-call dispatch. Each shortcut is compared here with the
path it replaces, on inputs that exercise bouts, held and trimmed ICs, stopping steps,
gaps bridged across turns and postural transitions.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from justwalk.gait.gsd import AssemblyOutput, BoutAssembler, BoutState, _median_of
from justwalk.gait.pipeline import GaitPipeline, PipelineOutput

FS = 100.0


def _ic_stream(seed: int) -> list[tuple[int, str, bool, float]]:
    """ICs (sample, side, after a transfer?, heading deg): walks at varied step times with
    jitter, extra and missed ICs, pauses of every length around the break limits, turns."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, str, bool, float]] = []
    t, heading, k = 100, 0.0, 0
    while t < 30_000:
        step = int(rng.integers(35, 160))  # 37-171 steps/min
        for _ in range(int(rng.integers(1, 30))):
            t += max(5, int(step * (1 + 0.08 * rng.normal())))
            if rng.random() < 0.05:
                t += int(rng.integers(10, 40))  # an off-rhythm IC
            heading += float(rng.normal(0, 3))
            out.append((t, "left" if k % 2 else "right", bool(rng.random() < 0.03), heading))
            k += 1
        t += int(rng.choice([50, 150, 215, 235, 260, 290, 310, 600]))  # pause
        if rng.random() < 0.5:
            heading += float(rng.choice([-180, -60, 30, 90, 180]))
    return out


def _assemble(asm: BoutAssembler, ics: list[tuple[int, str, bool, float]], seed: int,
              cached: bool, headings: bool) -> tuple[list[AssemblyOutput], BoutState]:
    """Feed ``ics`` in random chunks; ``cached=False`` forgets the caches before each call."""
    rng = np.random.default_rng(seed + 1000)
    state = asm.initial_state()
    outs = []
    i, now = 0, 0
    while i < len(ics):
        now += int(rng.integers(1, 120) if rng.random() < 0.8 else rng.integers(120, 900))
        j = i
        while j < len(ics) and ics[j][0] < now - 30:
            j += 1
        part = ics[i:j]
        if not cached:
            state.due = None
            state.median = state.keys = None
        outs.append(asm.process(state, [(c[0], c[1]) for c in part], now - 30, FS,
                                {c[0] for c in part if c[2]},
                                [c[3] for c in part] if headings else None))
        i = j
    outs.append(asm.flush(state))
    return outs, state


@pytest.mark.parametrize("headings", [True, False])
@pytest.mark.parametrize("seed", range(12))
def test_bout_assembler_caches_change_nothing(seed: int, headings: bool) -> None:
    asm = BoutAssembler()
    ics = _ic_stream(seed)
    with_caches, s1 = _assemble(asm, ics, seed, cached=True, headings=headings)
    without, s2 = _assemble(asm, ics, seed, cached=False, headings=headings)
    assert with_caches == without
    assert s1 == s2
    steps = sum(len(o.steps) for o in with_caches)
    bouts = sum(len(o.closed) for o in with_caches)
    assert steps > 100 and bouts > 3, (steps, bouts)  # the stream exercises the assembler


def test_median_of_a_few_intervals_is_numpys() -> None:
    rng = np.random.default_rng(3)
    for _ in range(2000):
        v = rng.integers(1, 400, size=int(rng.integers(1, 9))).tolist()
        assert _median_of(v) == float(np.median(v))


def test_cached_histogram_median_follows_every_count() -> None:
    rng = np.random.default_rng(4)
    state = BoutState(confirmed=True)
    values: list[int] = []
    for _ in range(3000):
        if values and rng.random() < 0.4:
            d = values.pop(int(rng.integers(len(values))))
            state._count(0, d, -1)
        else:
            d = int(rng.integers(30, 90))
            values.append(d)
            state._count(0, d, 1)
        expected = float(np.median(values)) if values else float("nan")
        got = state.median_interval()
        assert got == expected or (np.isnan(got) and np.isnan(expected))
        assert state.keys == sorted(state.intervals)


def _walk(seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standing, then steps (a vertical and a medio-lateral bump each) with pauses."""
    n = round(seconds * FS)
    t = np.arange(n) / FS
    rng = np.random.default_rng(seed)
    acc = np.zeros((n, 3))
    acc[:, 0] = 9.81
    tic, k = 3.0, 0
    while tic < seconds - 1:
        if tic % 20.0 < 0.55:
            tic += 4.0
        acc[:, 0] += 3.0 * np.exp(-0.5 * ((t - tic - 0.06) / 0.05) ** 2)
        acc[:, 1] += (-1.0) ** k * np.exp(-0.5 * ((t - tic - 0.2) / 0.08) ** 2)
        tic += 0.55 * (1 + 0.03 * rng.normal())
        k += 1
    gyr = np.zeros((n, 3))
    gyr[:, 0] = 0.3 * np.sin(2 * np.pi * t / 20.0)
    return (acc + rng.normal(scale=0.2, size=acc.shape),
            gyr + rng.normal(scale=0.02, size=gyr.shape))


def _outputs(outs: list[PipelineOutput]) -> str:
    return repr([[dataclasses.astuple(x) for x in getattr(o, k)]
                 for o in outs for k in ("steps", "windows", "bouts", "turns")])


def test_kernel_called_without_the_dispatcher_gives_the_same_output() -> None:
    pipe = GaitPipeline(sensor_height_m=1.0, window_s=5.0)
    acc, gyr = _walk(60.0, 1)

    def run(mode: str) -> tuple[str, object, int]:
        state = pipe.initial_state(t0_us=1_750_000_000_000_000, sample_rate_hz=FS)
        if mode == "dispatcher":
            state.kernel_entry = False
        outs = []
        for i in range(0, len(acc), 50):
            a, g = acc[i:i + 50].copy(), gyr[i:i + 50].copy()
            if mode == "read-only":  # another numba type: the dispatcher must take it
                a.flags.writeable = g.flags.writeable = False
            outs.append(pipe.process(state, a, g))
        outs.append(pipe.flush(state))
        return _outputs(outs), state.kernel_entry, sum(len(o.steps) for o in outs)

    direct, entry, n_steps = run("direct")
    assert callable(entry)  # the compiled specialisation was found and used
    via_dispatcher, _, _ = run("dispatcher")
    read_only, entry_ro, _ = run("read-only")
    assert entry_ro is None
    assert direct == via_dispatcher == read_only
    assert n_steps > 60
