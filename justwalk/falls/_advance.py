"""The fall monitor's per-chunk work in one compiled call (``advance``).

For each piece of a chunk (at most ``BlockFrontEnd.piece_s`` of new blocks) the monitor
reduces the samples to block rows (``_frontend._reduce_rows``), forgets the steps older than
the ring, adds the chunk's steps that fall before the end of the newest block, and looks for
a candidate of either detector whose look-ahead is now complete
(``_frontend._next_candidate``). These steps ran as a Python loop with a kernel call for
each; here they run as one kernel, which returns to Python only when a candidate needs
judging (its features and decision stay in Python, ``CandidateDetector.judge``: on the
real recordings, 18 candidates in 6,000 chunks). The steps' order and the verdict-horizon
checks of ``FallMonitor._check_steps`` run here too, before anything changes; when one
fails, the monitor calls ``_check_steps`` for its error message.

Every number is computed as the Python loop computed it (the same float64 products,
rounded half to even as ``round`` does), so the rows, steps and verdicts are identical.
The samples may be float64 or the wire's float32 (read-only, as ``decode_chunk`` gives
them): widening a float32 is exact, so both give the same rows, and the processor's chunks
are not copied to float64 first. ``compile_for_wire`` compiles (or loads from numba's
cache) the float32 version before the first chunk.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from justwalk.falls._frontend import (
    Float32Array,
    FloatArray,
    IntArray,
    _all_finite,
    _next_candidate,
    _reduce_rows,
)

DONE = 0
"""The chunk is consumed and no candidate waits."""
PENDING = 1
"""A candidate's look-ahead completed in the last piece: judge (``FallMonitor._scan``)
with the returned counters, then call again if samples remain."""
NON_FINITE = -1
"""A sample is not finite; nothing changed."""
BAD_STEPS = -2
"""The steps fail ``FallMonitor._check_steps``; nothing changed."""

RATE_FIELDS = ("block_samples", "dt_s", "piece_blocks", "block_us", "gate_near_mps2",
               "gate_fall_mps2", "ahead_near", "ahead_fall", "half_near", "half_fall",
               "sample_rate_hz", "perturbation_us")
"""What ``advance`` reads of a sample rate's constants, in the order of its ``rate`` array."""
(_B, _DT, _MAX_NEW, _B_US, _GATE0, _GATE1, _AHEAD0, _AHEAD1, _HALF0, _HALF1, _FS,
 _PERT_US) = range(len(RATE_FIELDS))


def rate_array(values: dict[str, float]) -> FloatArray:
    """The ``rate`` argument of ``advance`` from its named constants (``RATE_FIELDS``)."""
    return np.array([float(values[name]) for name in RATE_FIELDS])


@njit(cache=True)
def _bad_steps(steps: IntArray, steps_buf: IntArray, n_steps: int, t0_us: int,
               rate: FloatArray, next_near: int) -> bool:
    """``FallMonitor._check_steps`` on a chunk that continues the segment: False if fine."""
    ns = steps.shape[0]
    for i in range(1, ns):
        if steps[i] <= steps[i - 1]:
            return True
    if ns == 0:
        return False
    if n_steps > 0 and steps[0] <= steps_buf[n_steps - 1]:
        return True
    closed = (t0_us + int(np.rint(next_near * int(rate[_B]) * 1e6 / rate[_FS]))
              - int(rate[_PERT_US]))
    for i in range(ns):  # noqa: SIM110 - a plain loop compiles to the simplest code
        if t0_us <= steps[i] < closed:
            return True
    return False


@njit(cache=True)
def _drop_before(buf: IntArray, n: int, t_us: int) -> int:
    """``FrontEndState.drop_steps_before``; returns the new count."""
    if n == 0 or buf[0] >= t_us:
        return n
    d = 1
    while d < n and buf[d] < t_us:
        d += 1
    for i in range(n - d):
        buf[i] = buf[i + d]
    return n - d


@njit(cache=True)
def _append(buf: IntArray, n: int, steps: IntArray, i0: int, i1: int) -> int:
    """``FrontEndState.add_steps(steps[i0:i1])``; returns the new count."""
    n_new = i1 - i0
    if n_new == 0:
        return n
    cap = buf.shape[0]
    if n_new >= cap:
        for i in range(cap):
            buf[i] = steps[i1 - cap + i]
        return cap
    drop = max(0, n + n_new - cap)
    if drop:
        for i in range(n - drop):
            buf[i] = buf[i + drop]
        n -= drop
    for i in range(n_new):
        buf[n + i] = steps[i0 + i]
    return n + n_new


@njit(cache=True)
def advance(x: FloatArray | Float32Array, pos: int, partial: FloatArray, ring: Float32Array,
            n_blocks: int, steps_buf: IntArray, n_steps: int, steps: IntArray, i_step: int,
            t0_us: int, rate: FloatArray, next_near: int, next_fall: int, check_steps: bool,
            ) -> tuple[int, int, int, int, int, int, int]:
    """Consume ``x[pos:]`` piece by piece until it is used up or a candidate waits.

    ``partial``, ``ring`` and ``steps_buf`` (the front end's arrays) change in place; the
    counters come back: ``(pos, n_blocks, n_steps, i_step, next_near, next_fall, status)``
    with ``status`` one of ``DONE``, ``PENDING``, ``NON_FINITE``, ``BAD_STEPS``. ``steps``
    are the chunk's step times, ``steps[i_step:]`` not yet added. ``next_near`` and
    ``next_fall`` are the detectors' ``next_candidate``; with ``PENDING`` they are those
    before the last piece's scan, which ``FallMonitor._scan`` then runs. ``check_steps``:
    check the steps first (a chunk that continues the segment; the first call only).
    """
    if check_steps and _bad_steps(steps, steps_buf, n_steps, t0_us, rate, next_near):
        return pos, n_blocks, n_steps, i_step, next_near, next_fall, BAD_STEPS
    if pos == 0 and not _all_finite(x, 0):
        return pos, n_blocks, n_steps, i_step, next_near, next_fall, NON_FINITE
    n = x.shape[0]
    ns = steps.shape[0]
    cap = ring.shape[0]
    b = int(rate[_B])
    b_us = rate[_B_US]
    ahead0, ahead1 = int(rate[_AHEAD0]), int(rate[_AHEAD1])
    while i_step < ns and steps[i_step] < t0_us:  # of an earlier segment
        i_step += 1
    while True:
        pos, n_new = _reduce_rows(x, pos, partial, ring, n_blocks, b, rate[_DT],
                                  int(rate[_MAX_NEW]))
        n_blocks += n_new
        # the ring holds blocks from here on; older steps are never read
        n_steps = _drop_before(steps_buf, n_steps,
                               t0_us + int(np.rint((n_blocks - cap) * b_us)))
        if i_step < ns:
            end_us = t0_us + int(np.rint(n_blocks * b_us))
            j = i_step
            while j < ns and steps[j] < end_us:
                j += 1
            n_steps = _append(steps_buf, n_steps, steps, i_step, j)
            i_step = j
        n_rows = min(n_blocks, cap)
        last0 = n_blocks - 1 - ahead0
        last1 = n_blocks - 1 - ahead1
        k0 = max(next_near, n_blocks - n_rows)
        k1 = max(next_fall, n_blocks - n_rows)
        if (k0 <= last0 and _next_candidate(ring, n_blocks, n_rows, k0, last0, rate[_GATE0],
                                            int(rate[_HALF0])) >= 0) or (
                k1 <= last1 and _next_candidate(ring, n_blocks, n_rows, k1, last1,
                                                rate[_GATE1], int(rate[_HALF1])) >= 0):
            return pos, n_blocks, n_steps, i_step, next_near, next_fall, PENDING
        next_near = max(next_near, last0 + 1)
        next_fall = max(next_fall, last1 + 1)
        if pos >= n:
            return pos, n_blocks, n_steps, i_step, next_near, next_fall, DONE


_compiled_for_wire = False


def compile_for_wire() -> None:
    """Compile ``advance`` for the wire's read-only float32 samples, once per process.

    ``FallMonitor`` calls it when it is built, so ``justwalk.warmup`` (which feeds float64
    samples) also leaves this version in the cache and no live chunk waits for a compile.
    """
    global _compiled_for_wire
    if _compiled_for_wire:
        return
    x = np.zeros((0, 6), dtype=np.float32)
    x.flags.writeable = False
    advance(x, 0, np.zeros(8), np.zeros((1, 7), dtype=np.float32), 0,
            np.zeros(1, dtype=np.int64), 0, np.zeros(0, dtype=np.int64), 0, 0,
            np.ones(len(RATE_FIELDS)), 0, 0, False)
    _compiled_for_wire = True
