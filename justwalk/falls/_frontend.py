"""Block summaries of a lower-back IMU stream: the shared front end of the fall detectors.

The stream is cut into consecutive blocks of ``block_s`` (0.1 s by default) counted from the
first sample of a segment, so block boundaries do not depend on how the data were chunked.
Each complete block is reduced to a handful of numbers (``COLUMNS``): acceleration-magnitude
maximum and minimum, angular-rate maximum, mean acceleration vector (for the trunk's
orientation relative to gravity), integrated angular rate, the integral of ``|a| - g``
(a velocity proxy, Bourke et al. 2010) and the largest jerk. Samples of an incomplete block
wait in the state. Steps (initial contacts) are not detected here: they are the device times
of the steps ``justwalk.gait.pipeline.GaitPipeline`` released for the same chunk (one step
path for the product), kept in a bounded history.

Detectors keep a bounded history of block rows and judge a candidate once the blocks after
it that they need have arrived (bounded look-ahead). Every row is computed from one block's
samples only, with the same code whatever the chunking, so the results are identical
whether a recording is fed whole or in chunks of any size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from justwalk.falls.base import GRAVITY_MPS2

FloatArray = npt.NDArray[np.float64]

COLUMNS = (
    "acc_max_mps2",
    "acc_max_offset",  # sample offset of the maximum inside the block
    "acc_min_mps2",
    "gyr_max_radps",
    "acc_mean_x_mps2",
    "acc_mean_y_mps2",
    "acc_mean_z_mps2",
    "rot_x_rad",  # integral of the angular rate over the block
    "rot_y_rad",
    "rot_z_rad",
    "dv_mps",  # integral of (|a| - g) over the block
    "jerk_max_mps3",
)
AMAX, AMAX_OFF, AMIN, GMAX, AX, AY, AZ, RX, RY, RZ, DV, JMAX = range(len(COLUMNS))
N_COLUMNS = len(COLUMNS)


@dataclass
class FrontEndState:
    """Per-stream state of the block front end; small and serialisable."""

    sample_rate_hz: float = 0.0
    segment: int = 0
    """Counts segments: a gap, an overlap or a new rate starts the next one."""
    segment_t0_us: int = 0
    n_samples: int = 0
    """Samples received in the current segment (including those still pending)."""
    pending: list[list[float]] = field(default_factory=list)
    """Samples (rows of 6) of the incomplete block."""
    last_acc: list[float] | None = None
    """Last acceleration sample of the previous complete block (for the jerk)."""
    n_blocks: int = 0
    """Complete blocks in the current segment."""
    history: list[list[float]] = field(default_factory=list)
    """Rows (``COLUMNS``) of the most recent complete blocks, oldest first."""
    steps_us: list[int] = field(default_factory=list)
    """Recent step times (from the gait pipeline), oldest first."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "sample_rate_hz": self.sample_rate_hz,
            "segment": self.segment,
            "segment_t0_us": self.segment_t0_us,
            "n_samples": self.n_samples,
            "pending": [list(r) for r in self.pending],
            "last_acc": None if self.last_acc is None else list(self.last_acc),
            "n_blocks": self.n_blocks,
            "history": [list(r) for r in self.history],
            "steps_us": list(self.steps_us),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrontEndState:
        """Inverse of ``to_dict``."""
        return cls(
            sample_rate_hz=float(d["sample_rate_hz"]),
            segment=int(d["segment"]),
            segment_t0_us=int(d["segment_t0_us"]),
            n_samples=int(d["n_samples"]),
            pending=[[float(v) for v in r] for r in d["pending"]],
            last_acc=None if d["last_acc"] is None else [float(v) for v in d["last_acc"]],
            n_blocks=int(d["n_blocks"]),
            history=[[float(v) for v in r] for r in d["history"]],
            steps_us=[int(v) for v in d["steps_us"]],
        )


@dataclass(frozen=True, slots=True)
class Blocks:
    """The block rows a detector may look at after one chunk.

    ``rows[i]`` is block ``first_index + i`` of the segment; the rows that were already in the
    history come first, then the new ones.
    """

    rows: FloatArray
    first_index: int
    n_new: int
    sample_rate_hz: float
    block_samples: int
    segment_t0_us: int
    steps_us: npt.NDArray[np.int64]

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
    """Reduces samples to block rows; see the module docstring."""

    def __init__(
        self,
        *,
        block_s: float = 0.1,
        history_s: float = 8.0,
        steps_history_s: float = 10.0,
        max_gap_s: float = 0.05,
    ) -> None:
        self.block_s = block_s
        self.history_s = history_s
        self.steps_history_s = steps_history_s
        self.max_gap_s = max_gap_s

    def initial_state(self) -> FrontEndState:
        """State before any data."""
        return FrontEndState()

    def block_samples(self, sample_rate_hz: float) -> int:
        """Samples per block at this rate."""
        return max(1, round(self.block_s * sample_rate_hz))

    def _reset(self, state: FrontEndState, t0_us: int, sample_rate_hz: float) -> None:
        state.sample_rate_hz = sample_rate_hz
        state.segment += 1
        state.segment_t0_us = t0_us
        state.n_samples = 0
        state.pending = []
        state.last_acc = None
        state.n_blocks = 0
        state.history = []
        state.steps_us = []

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

    def process(
        self,
        state: FrontEndState,
        samples: npt.ArrayLike,
        t0_us: int,
        sample_rate_hz: float,
        steps_us: npt.ArrayLike = (),
    ) -> Blocks:
        """Consume one chunk (n, 6): acc m/s^2 then gyr rad/s; ``state`` is updated in place.

        ``steps_us`` are the device times of the steps the gait pipeline released for the
        same chunk (increasing); steps before the segment's start are ignored. See
        ``starts_segment`` for gaps.
        """
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 6:
            raise ValueError(f"samples must have shape (n, 6), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("samples must be finite")
        if sample_rate_hz <= 0:
            raise ValueError(f"sample rate {sample_rate_hz} Hz is not positive")
        if self.starts_segment(state, x.shape[0], t0_us, sample_rate_hz):
            self._reset(state, t0_us, sample_rate_hz)
        b = self.block_samples(sample_rate_hz)
        old_rows = np.asarray(state.history, dtype=np.float64).reshape(-1, N_COLUMNS)
        first_index = state.n_blocks - old_rows.shape[0]
        state.n_samples += x.shape[0]
        if state.pending:
            x = np.concatenate([np.asarray(state.pending, dtype=np.float64), x])
        n_full = x.shape[0] // b
        full, rest = x[: n_full * b], x[n_full * b :]
        state.pending = rest.tolist()
        new_rows = self._rows(state, full, b, sample_rate_hz)
        state.steps_us.extend(int(t) for t in np.asarray(steps_us, dtype=np.int64)
                              if t >= state.segment_t0_us)
        state.n_blocks += n_full
        rows = np.concatenate([old_rows, new_rows]) if n_full else old_rows
        keep = max(1, round(self.history_s / (b / sample_rate_hz)))
        state.history = rows[-keep:].tolist()
        all_steps = np.asarray(state.steps_us, dtype=np.int64)
        # The state keeps only what later chunks can need; this call's candidates see all.
        now_us = state.segment_t0_us + round(state.n_blocks * b * 1e6 / sample_rate_hz)
        horizon = now_us - round(self.steps_history_s * 1e6)
        state.steps_us = [t for t in state.steps_us if t >= horizon]
        return Blocks(
            rows=rows,
            first_index=first_index,
            n_new=n_full,
            sample_rate_hz=sample_rate_hz,
            block_samples=b,
            segment_t0_us=state.segment_t0_us,
            steps_us=all_steps,
        )

    def _rows(self, state: FrontEndState, full: FloatArray, b: int, fs: float) -> FloatArray:
        n_full = full.shape[0] // b
        if n_full == 0:
            return np.empty((0, N_COLUMNS))
        acc = full[:, 0:3]
        gyr = full[:, 3:6]
        dt = 1.0 / fs
        anorm = np.sqrt(acc[:, 0] ** 2 + acc[:, 1] ** 2 + acc[:, 2] ** 2)
        gnorm = np.sqrt(gyr[:, 0] ** 2 + gyr[:, 1] ** 2 + gyr[:, 2] ** 2)
        prev = np.empty_like(acc)
        prev[1:] = acc[:-1]
        prev[0] = acc[0] if state.last_acc is None else state.last_acc
        d = acc - prev
        jerk = np.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2 + d[:, 2] ** 2) / dt
        state.last_acc = acc[-1].tolist()
        out = np.empty((n_full, N_COLUMNS))
        a_b = anorm.reshape(n_full, b)
        out[:, AMAX] = a_b.max(axis=1)
        out[:, AMAX_OFF] = a_b.argmax(axis=1)
        out[:, AMIN] = a_b.min(axis=1)
        out[:, GMAX] = gnorm.reshape(n_full, b).max(axis=1)
        # Block sums by a running cumulative sum within each block: a sequential order of
        # additions that does not depend on how many blocks are reduced at once.
        for j, col in enumerate((AX, AY, AZ)):
            out[:, col] = _block_sum(acc[:, j], n_full, b) / b
        for j, col in enumerate((RX, RY, RZ)):
            out[:, col] = _block_sum(gyr[:, j], n_full, b) * dt
        out[:, DV] = _block_sum(anorm - GRAVITY_MPS2, n_full, b) * dt
        out[:, JMAX] = jerk.reshape(n_full, b).max(axis=1)
        return out


def _block_sum(v: FloatArray, n_blocks: int, b: int) -> FloatArray:
    """Sum of each block of ``b`` values, added in sample order."""
    return np.cumsum(v.reshape(n_blocks, b), axis=1)[:, -1]


def tilt_deg(acc_mean: FloatArray) -> float:
    """Angle between the sensor's up axis (x) and the vertical, from a mean specific force."""
    norm = float(np.sqrt(np.dot(acc_mean, acc_mean)))
    if norm <= 1e-9:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(acc_mean[0] / norm, -1.0, 1.0))))
