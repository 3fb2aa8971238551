"""Block summaries of a lower-back IMU stream: the shared front end of the fall detectors.

The stream is cut into consecutive blocks of ``block_s`` (0.1 s by default) counted from the
first sample of a segment, so block boundaries do not depend on how the data were chunked.
Each complete block is reduced to the numbers the detectors read (``COLUMNS``): the maximum
of the acceleration magnitude and where in the block it is, the maximum of the angular-rate
magnitude, the mean acceleration vector (the trunk's orientation relative to gravity) and
the integral of ``|a| - g`` (a velocity proxy, Bourke et al. 2010).

Why the fall core reduces raw samples itself rather than reusing the gait pass: the gait
pipeline (``justwalk.gait.pipeline``) works on the vertical projection of the acceleration,
high-passed and Gaussian-smoothed to find heel strikes, and its gravity estimate is a
1 s low-pass. Impacts and stumbles are the raw magnitude's peaks at full rate (2-16 g for
a few samples, which smoothing flattens), the fall's lying posture is the mean specific
force over fixed windows (Kangas et al. 2008), and angular-rate peaks are not computed by the
gait pass at all. Steps, on the other hand, are not detected here: they are the device times
of the steps the gait pipeline released for the same chunk, kept in a bounded history.

Streaming state is fixed-size: the rows of the most recent blocks in a ring of
``capacity`` rows (float32: the sensors resolve a few mg and mdeg/s, float32 keeps 7
significant digits), the running reduction of the incomplete block (float64, so a block's
sums are the same sequential additions however the chunks cut it), and up to
``STEPS_CAPACITY`` recent step times. The reduction runs in a compiled kernel
(``_reduce``); every row is computed from one block's samples only, in sample order, and
rounded to float32 when stored, so the results are identical whether a recording is fed
whole or in chunks of any size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from justwalk.falls.base import GRAVITY_MPS2

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

COLUMNS = (
    "acc_max_mps2",
    "acc_max_offset",  # sample offset of the maximum inside the block
    "gyr_max_radps",
    "acc_mean_x_mps2",
    "acc_mean_y_mps2",
    "acc_mean_z_mps2",
    "dv_mps",  # integral of (|a| - g) over the block
)
AMAX, AMAX_OFF, GMAX, AX, AY, AZ, DV = range(len(COLUMNS))
N_COLUMNS = len(COLUMNS)
ROW_DTYPE = np.float32
"""Stored block rows: float32 (features are computed in float64 from them)."""
N_PARTIAL = N_COLUMNS + 1
"""Running reduction of the incomplete block: the ``COLUMNS`` accumulators (maxima, offset,
sums) and the number of samples in it."""
STEPS_CAPACITY = 64
"""Step times kept. The history spans at most ``capacity`` blocks (8.6 s by default); the
gait pipeline's steps are at least 0.25 s apart (``IcDetector.min_step_time_s``), so 35
at most; when full, the oldest step is dropped."""


@njit(cache=True)
def _reduce(x: FloatArray, start: int, partial: FloatArray, ring: Float32Array,
            n_blocks: int, b: int, dt: float, max_new: int, check: bool) -> tuple[int, int]:
    """Reduce samples ``x[start:]`` into block rows, at most ``max_new`` blocks.

    ``partial`` holds the running reduction of the incomplete block and is updated; the row
    of segment block ``k`` goes to ``ring[k % len(ring)]``. Returns the index of the first
    sample not consumed and the number of blocks completed. With ``check``, returns (-1, 0)
    without touching anything if a sample of ``x[start:]`` is not finite.
    """
    if check and not _all_finite(x, start):
        return -1, 0
    return _reduce_rows(x, start, partial, ring, n_blocks, b, dt, max_new)


@njit(cache=True)
def _all_finite(x: FloatArray | Float32Array, start: int) -> bool:
    for i in range(start, x.shape[0]):
        for j in range(6):
            if not np.isfinite(x[i, j]):
                return False
    return True


@njit(cache=True)
def _reduce_rows(x: FloatArray | Float32Array, start: int, partial: FloatArray,
                 ring: Float32Array, n_blocks: int, b: int, dt: float, max_new: int,
                 ) -> tuple[int, int]:
    """``_reduce`` without the check (the body both kernels share)."""
    n = x.shape[0]
    cap = ring.shape[0]
    n_new = 0
    c = int(partial[N_COLUMNS])
    i = start
    while i < n and n_new < max_new:
        # float64 arithmetic whatever the samples' type (the wire's float32 widens exactly)
        ax, ay, az = np.float64(x[i, 0]), np.float64(x[i, 1]), np.float64(x[i, 2])
        gx, gy, gz = np.float64(x[i, 3]), np.float64(x[i, 4]), np.float64(x[i, 5])
        a = np.sqrt(ax * ax + ay * ay + az * az)
        w = np.sqrt(gx * gx + gy * gy + gz * gz)
        if c == 0 or a > partial[AMAX]:  # the first maximum, as argmax
            partial[AMAX] = a
            partial[AMAX_OFF] = c
        if c == 0 or w > partial[GMAX]:
            partial[GMAX] = w
        # sums in sample order: the same additions however the chunks cut the block
        partial[AX] += ax
        partial[AY] += ay
        partial[AZ] += az
        partial[DV] += a - GRAVITY_MPS2
        c += 1
        i += 1
        if c == b:
            row = ring[(n_blocks + n_new) % cap]
            row[AMAX] = partial[AMAX]
            row[AMAX_OFF] = partial[AMAX_OFF]
            row[GMAX] = partial[GMAX]
            row[AX] = partial[AX] / b
            row[AY] = partial[AY] / b
            row[AZ] = partial[AZ] / b
            row[DV] = partial[DV] * dt
            partial[:] = 0.0
            c = 0
            n_new += 1
    partial[N_COLUMNS] = c
    return i, n_new


@njit(cache=True)
def _next_candidate(ring: Float32Array, n_blocks: int, n_rows: int, k0: int, k1: int,
                    gate: float, half: int) -> int:
    """First candidate block in ``[k0, k1]``, or -1.

    A candidate's acceleration peak is at least ``gate`` and the largest within +-``half``
    known blocks (ties: the earliest): the test of ``_features.is_local_max``, on the ring
    of the newest ``n_rows`` rows.
    """
    cap = ring.shape[0]
    first = n_blocks - n_rows
    for k in range(k0, k1 + 1):
        v = ring[k % cap, AMAX]
        if v < gate:
            continue
        ok = True
        for j in range(max(k - half, first), k):
            if ring[j % cap, AMAX] >= v:
                ok = False
                break
        if ok:
            for j in range(k + 1, min(k + half, n_blocks - 1) + 1):
                if ring[j % cap, AMAX] > v:
                    ok = False
                    break
        if ok:
            return k
    return -1


def _empty_rows() -> Float32Array:
    return np.zeros((0, N_COLUMNS), dtype=ROW_DTYPE)


def _empty_steps() -> IntArray:
    return np.zeros(STEPS_CAPACITY, dtype=np.int64)


def _empty_partial() -> FloatArray:
    return np.zeros(N_PARTIAL)


@dataclass(slots=True)
class FrontEndState:
    """Per-stream state of the block front end: fixed-size arrays and a few counters."""

    sample_rate_hz: float = 0.0
    segment: int = 0
    """Counts segments: a gap, an overlap or a new rate starts the next one."""
    segment_t0_us: int = 0
    n_samples: int = 0
    """Samples received in the current segment (including those of the incomplete block)."""
    n_blocks: int = 0
    """Complete blocks in the current segment."""
    partial: FloatArray = field(default_factory=_empty_partial)
    """Running reduction of the incomplete block (``N_PARTIAL``)."""
    rows: Float32Array = field(default_factory=_empty_rows)
    """Ring of block rows (``COLUMNS``): block ``k`` of the segment is row ``k % capacity``."""
    steps_us: IntArray = field(default_factory=_empty_steps)
    """Recent step times, oldest first, in ``steps_us[:n_steps]``."""
    n_steps: int = 0

    @property
    def n_rows(self) -> int:
        """Rows of the ring that hold blocks (the newest ones)."""
        return min(self.n_blocks, self.rows.shape[0])

    def ordered_rows(self, dtype: npt.DTypeLike = np.float64) -> npt.NDArray[Any]:
        """The known block rows in time order (float64 by default, for the features)."""
        k = np.arange(self.n_blocks - self.n_rows, self.n_blocks)
        return self.rows[k % max(self.rows.shape[0], 1)].astype(dtype)

    def add_steps(self, steps_us: IntArray) -> None:
        """Append step times (increasing, after the stored ones); the oldest go if full."""
        n_new = steps_us.size
        if n_new == 0:
            return
        buf = self.steps_us
        cap = buf.shape[0]
        if n_new >= cap:
            buf[:] = steps_us[-cap:]
            self.n_steps = cap
            return
        drop = max(0, self.n_steps + n_new - cap)
        if drop:
            buf[: self.n_steps - drop] = buf[drop : self.n_steps]
            self.n_steps -= drop
        buf[self.n_steps : self.n_steps + n_new] = steps_us
        self.n_steps += n_new

    def drop_steps_before(self, t_us: int) -> None:
        """Forget the steps before ``t_us``."""
        n = self.n_steps
        if n == 0 or self.steps_us[0] >= t_us:
            return
        d = 1  # usually one step at a time
        while d < n and self.steps_us[d] < t_us:
            d += 1
        self.steps_us[: n - d] = self.steps_us[d:n]
        self.n_steps = n - d


@dataclass(frozen=True, slots=True)
class Blocks:
    """The block rows a detector may look at.

    ``rows[i]`` is block ``first_index + i`` of the segment (float64, time order);
    ``steps_us`` are the known step times (increasing).
    """

    rows: FloatArray
    first_index: int
    sample_rate_hz: float
    block_samples: int
    segment_t0_us: int
    steps_us: IntArray

    @property
    def block_s(self) -> float:
        """Block duration in seconds."""
        return self.block_samples / self.sample_rate_hz

    def time_us(self, block_index: float) -> int:
        """Device time of the start of a (fractional) segment block index."""
        return self.segment_t0_us + round(
            block_index * self.block_samples * 1e6 / self.sample_rate_hz
        )

    def sample_time_us(self, block_index: int, offset: float) -> int:
        """Device time of sample ``offset`` inside block ``block_index``."""
        return self.segment_t0_us + round(
            (block_index * self.block_samples + offset) * 1e6 / self.sample_rate_hz
        )


class BlockFrontEnd:
    """Reduces samples to block rows; see the module docstring.

    ``history_s`` is the data a detector reads around a candidate (before and after it);
    ``piece_s`` the most new data reduced before the detectors look again (a longer chunk
    is reduced in pieces). The ring holds ``history_s + piece_s`` of blocks, so every row
    a judgement reads is still there when the candidate's look-ahead completes.
    """

    def __init__(
        self,
        *,
        block_s: float = 0.1,
        history_s: float = 7.5,
        piece_s: float = 1.0,
        max_gap_s: float = 0.05,
    ) -> None:
        self.block_s = block_s
        self.history_s = history_s
        self.piece_s = piece_s
        self.max_gap_s = max_gap_s

    def initial_state(self) -> FrontEndState:
        """State before any data."""
        return FrontEndState()

    def block_samples(self, sample_rate_hz: float) -> int:
        """Samples per block at this rate."""
        return max(1, round(self.block_s * sample_rate_hz))

    def piece_blocks(self, sample_rate_hz: float) -> int:
        """Blocks reduced at most between two looks of the detectors."""
        return max(1, round(self.piece_s / (self.block_samples(sample_rate_hz)
                                            / sample_rate_hz)))

    def capacity(self, sample_rate_hz: float) -> int:
        """Rows of the ring at this rate."""
        block_s = self.block_samples(sample_rate_hz) / sample_rate_hz
        return round(self.history_s / block_s) + 1 + self.piece_blocks(sample_rate_hz)

    def starts_segment(self, state: FrontEndState, n_samples: int, t0_us: int,
                       sample_rate_hz: float) -> bool:
        """Whether a chunk of ``n_samples`` at ``t0_us`` starts a new segment.

        A gap longer than ``max_gap_s``, an overlap or a new sample rate does (history and
        pending candidates are dropped rather than guessed across the gap).
        """
        if state.sample_rate_hz != sample_rate_hz:
            return True
        expected = state.segment_t0_us + round(state.n_samples * 1e6 / sample_rate_hz)
        return n_samples > 0 and abs(t0_us - expected) > self.max_gap_s * 1e6

    def reset(self, state: FrontEndState, t0_us: int, sample_rate_hz: float) -> None:
        """Start a new segment at ``t0_us``."""
        if sample_rate_hz <= 0:
            raise ValueError(f"sample rate {sample_rate_hz} Hz is not positive")
        cap = self.capacity(sample_rate_hz)
        state.sample_rate_hz = sample_rate_hz
        state.segment += 1
        state.segment_t0_us = t0_us
        state.n_samples = 0
        state.n_blocks = 0
        state.partial[:] = 0.0
        if state.rows.shape[0] != cap:
            state.rows = np.zeros((cap, N_COLUMNS), dtype=ROW_DTYPE)
        state.n_steps = 0

    def fit(self, state: FrontEndState) -> None:
        """Give the ring this front end's capacity (a state saved with another one)."""
        cap = self.capacity(state.sample_rate_hz)
        if state.rows.shape[0] == cap or state.sample_rate_hz <= 0:
            return
        rows = state.ordered_rows()[-cap:].astype(ROW_DTYPE)
        ring = np.zeros((cap, N_COLUMNS), dtype=ROW_DTYPE)
        ring[np.arange(state.n_blocks - rows.shape[0], state.n_blocks) % cap] = rows
        state.rows = ring

    def reduce(self, state: FrontEndState, x: FloatArray, start: int, max_new: int,
               block_samples: int = 0) -> int:
        """Reduce ``x[start:]`` (at most ``max_new`` blocks); returns the next sample.

        Raises ``ValueError`` (state untouched) if a sample of ``x[start:]`` is not finite
        (checked when ``start`` is 0). ``block_samples`` may be given (the monitor knows it).
        """
        b = block_samples or self.block_samples(state.sample_rate_hz)
        end, n_new = _reduce(x, start, state.partial, state.rows, state.n_blocks, b,
                             1.0 / state.sample_rate_hz, max_new, start == 0)
        if end < 0:
            raise ValueError("samples must be finite")
        state.n_samples += end - start
        state.n_blocks += n_new
        return int(end)

    def view(self, state: FrontEndState) -> Blocks:
        """The known rows and steps, for judging a candidate."""
        return Blocks(
            rows=state.ordered_rows(),
            first_index=state.n_blocks - state.n_rows,
            sample_rate_hz=state.sample_rate_hz,
            block_samples=self.block_samples(state.sample_rate_hz),
            segment_t0_us=state.segment_t0_us,
            steps_us=state.steps_us[: state.n_steps].copy(),
        )

    def blocks(self, samples: npt.ArrayLike, t0_us: int, sample_rate_hz: float,
               steps_us: npt.ArrayLike) -> Blocks:
        """All block rows of a whole recording (one segment) and its steps, at once.

        The rows are those the streaming front end computes (same kernel, same rounding);
        the evaluation decides every parameter setting on them.
        """
        x = _samples(samples)
        state = FrontEndState()
        self.reset(state, t0_us, sample_rate_hz)
        b = self.block_samples(sample_rate_hz)
        n_full = x.shape[0] // b
        state.rows = np.zeros((max(n_full, 1), N_COLUMNS), dtype=ROW_DTYPE)
        self.reduce(state, x, 0, n_full)
        steps = np.asarray(steps_us, dtype=np.int64).reshape(-1)
        return Blocks(
            rows=state.rows[:n_full].astype(np.float64),
            first_index=0,
            sample_rate_hz=sample_rate_hz,
            block_samples=b,
            segment_t0_us=t0_us,
            steps_us=steps[steps >= t0_us],
        )


def _samples(samples: npt.ArrayLike) -> FloatArray:
    """A chunk as a C-contiguous (n, 6) float64 array (acc m/s^2, gyr rad/s)."""
    x = np.ascontiguousarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 6:
        raise ValueError(f"samples must have shape (n, 6), got {x.shape}")
    return x


def tilt_deg(acc_mean: FloatArray) -> float:
    """Angle between the sensor's up axis (x) and the vertical, from a mean specific force."""
    norm = float(np.sqrt(np.dot(acc_mean, acc_mean)))
    if norm <= 1e-9:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(acc_mean[0] / norm, -1.0, 1.0))))
