"""Load (or compile) the gait and fall cores' compiled kernels before any data arrives.

numba compiles a kernel at its first call and keeps the machine code in its cache
(``NUMBA_CACHE_DIR``, else ``__pycache__`` beside the source, else the user's cache
directory). A cold cache costs seconds per kernel, and some kernels are first called only
when something happens (a step's length, a sit-to-stand, a turn, a fall candidate). A
process that owns partitions must not spend those seconds on a live chunk, so the processor
calls ``warm_up`` before it joins its group, and the container image calls it at build time
so its cache ships with the image.
"""

from __future__ import annotations

import gc
import time

import numpy as np

from justwalk.falls import FallMonitor, FallMonitorState
from justwalk.falls.base import EventType
from justwalk.gait.pipeline import GaitPipeline, PipelineState
from justwalk.simulator.events import InjectedEvent
from justwalk.simulator.gait_model import GaitProfile, synthesize


def warm_up(sample_rate_hz: float = 100.0) -> float:
    """Run both cores as the processor does; the seconds it took.

    The input is a simulated walk with a near-fall and a fall; the states are saved and
    restored once on the way.
    """
    t = time.perf_counter()
    profile = GaitProfile(walking_s=((2.0, 20.0), (24.0, 40.0)), events=(
        InjectedEvent(EventType.NEAR_FALL, at_s=12.0),
        InjectedEvent(EventType.FALL, at_s=34.0)))
    x = synthesize(profile, 45.0, sample_rate_hz, np.random.default_rng(1)).samples
    x = np.asarray(x, dtype=np.float64)
    gait, falls = GaitPipeline(sensor_height_m=1.0), FallMonitor()
    g, f = gait.initial_state(t0_us=0, sample_rate_hz=sample_rate_hz), falls.initial_state()
    n = round(0.5 * sample_rate_hz)
    for i in range(0, x.shape[0], n):
        c = x[i:i + n]
        steps = [s.t_us for s in gait.process(g, c[:, :3], c[:, 3:]).steps]
        falls.process(f, c, round(i * 1e6 / sample_rate_hz), sample_rate_hz, steps)
        if i == 20 * n:
            g, f = PipelineState.unpack(g.pack()), FallMonitorState.unpack(f.pack())
    gait.flush(g)
    falls.flush(f)
    return time.perf_counter() - t


def freeze_heap() -> int:
    """Take every object alive now out of the garbage collector's full collections.

    Imports and compiled kernels leave a few hundred thousand objects that live as long as
    the process; a full (generation 2) collection would walk them all each time, and that
    pause holds up every patient's chunks. Called once after ``warm_up``; the objects
    frozen (``gc.freeze``) are still freed normally by reference counting.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


if __name__ == "__main__":
    print(f"compiled kernels ready in {warm_up():.1f} s")
