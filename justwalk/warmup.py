"""Load (or compile) the gait and fall cores' compiled kernels before any data arrives.

numba compiles a kernel at its first call and keeps the machine code in its cache
(``NUMBA_CACHE_DIR``, else ``__pycache__`` beside the source, else the user's cache
directory). A cold cache costs seconds; a process that owns partitions must not spend them
on its first chunk, so the processor calls ``warm_up`` before it joins its group, and the
container image calls it at build time so its cache ships with the image.
"""

from __future__ import annotations

import time

import numpy as np

from justwalk.falls import FallMonitor
from justwalk.gait.pipeline import GaitPipeline

GRAVITY_MPS2 = 9.80665


def warm_up(sample_rate_hz: float = 100.0) -> float:
    """Run both cores on 2 s of a still sensor; the seconds it took."""
    t = time.perf_counter()
    n = round(2 * sample_rate_hz)
    x = np.zeros((n, 6))
    x[:, 0] = GRAVITY_MPS2  # upright: gravity on the vertical (x) axis
    gait = GaitPipeline(sensor_height_m=1.0)
    state = gait.initial_state(t0_us=0, sample_rate_hz=sample_rate_hz)
    gait.process(state, x[:, :3], x[:, 3:])
    gait.flush(state)
    falls = FallMonitor()
    fstate = falls.initial_state()
    falls.process(fstate, x, 0, sample_rate_hz, [])
    falls.flush(fstate)
    return time.perf_counter() - t


if __name__ == "__main__":
    print(f"compiled kernels ready in {warm_up():.1f} s")
