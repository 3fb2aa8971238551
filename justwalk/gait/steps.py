"""Streaming step (initial contact) detection from a lower-back accelerometer.

A first, deliberately simple detector (the validated Mobilise-D style algorithms replace
it in issue #3):

1. The acceleration norm ``|a|`` is used, which does not depend on how the sensor is
   tilted on the back. During walking it is dominated by the vertical trunk acceleration,
   which oscillates once per step (Zijlstra & Hof 2003, Gait Posture 18:1-10).
2. A 2nd-order Butterworth band-pass (0.5-3 Hz by default, the band of step frequencies
   from 30 to 180 steps/min) removes gravity and impact transients. It runs as a
   streaming IIR filter whose state is carried from chunk to chunk, so a recording cut
   into chunks gives exactly the output of the whole recording.
3. A step is a local maximum of the filtered signal over +-``min_step_time_s`` that rises
   above an adaptive threshold: ``max(min_peak_mps2, rel_threshold * RMS)``, with the RMS
   a causal running value over about ``rms_time_constant_s``. The look-ahead is therefore
   ``min_step_time_s``: a sample's verdict is final that long after it arrives.

The IIR filter delays the peaks by its group delay (about 0.1 s near 2 Hz); that offset is
the same for every step, so step times and cadence are unaffected.

Everything here is plain numpy/scipy: no I/O, no clock. State is explicit
(``StepDetectorState``) and round-trips through ``to_dict``/``from_dict`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage, signal

from justwalk.gait._filters import sosfilt_1d

FloatArray = npt.NDArray[np.float64]


@lru_cache(maxsize=16)
def _design(sample_rate_hz: float, low_hz: float, high_hz: float, rms_tau_s: float) -> tuple[
    FloatArray, FloatArray, FloatArray
]:
    sos = signal.butter(2, [low_hz, high_hz], btype="bandpass", fs=sample_rate_hz, output="sos")
    # Initial filter state for a signal that has sat at 1 g: no start-up transient.
    zi_unit = signal.sosfilt_zi(sos)
    alpha = 1.0 - np.exp(-1.0 / (rms_tau_s * sample_rate_hz))
    rms_coeffs = np.array([alpha, 1.0 - alpha])
    return sos, zi_unit, rms_coeffs


@dataclass
class StepDetectorState:
    """Per-stream state of ``StreamingStepDetector``; small and serialisable."""

    sample_rate_hz: float = 0.0
    n_seen: int = 0
    """Samples seen in the current segment (a gap in the data starts a new segment)."""
    segment_t0_us: int = 0
    """Device time of sample 0 of the current segment."""
    zi: list[list[float]] = field(default_factory=list)
    """Band-pass filter state, one row per second-order section."""
    ms: float = 0.0
    """Running mean square of the filtered signal."""
    tail: list[float] = field(default_factory=list)
    """Last filtered samples, enough to judge the next ones (2 * half window)."""
    tail_thr: list[float] = field(default_factory=list)
    """Thresholds belonging to ``tail``."""
    next_eval: int = 0
    """Index (in segment) of the first sample without a final verdict."""
    last_step: int = -(10**9)
    """Index (in segment) of the last detected step."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "sample_rate_hz": self.sample_rate_hz,
            "n_seen": self.n_seen,
            "segment_t0_us": self.segment_t0_us,
            "zi": self.zi,
            "ms": self.ms,
            "tail": self.tail,
            "tail_thr": self.tail_thr,
            "next_eval": self.next_eval,
            "last_step": self.last_step,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepDetectorState:
        """Inverse of ``to_dict``."""
        return cls(**d)

    def time_of(self, index: npt.NDArray[np.int64] | int) -> Any:
        """Device time (us) of a segment sample index."""
        return self.segment_t0_us + np.round(
            np.asarray(index, dtype=np.float64) * 1e6 / self.sample_rate_hz
        ).astype(np.int64)

    @property
    def final_until_us(self) -> int:
        """Device time before which every step has been reported."""
        if self.sample_rate_hz <= 0:
            return 0
        return int(self.time_of(self.next_eval))


class StreamingStepDetector:
    """Detects steps chunk by chunk; see the module docstring for the method."""

    def __init__(
        self,
        *,
        band_hz: tuple[float, float] = (0.5, 3.0),
        min_step_time_s: float = 0.25,
        min_peak_mps2: float = 0.35,
        rel_threshold: float = 0.6,
        rms_time_constant_s: float = 3.0,
        max_gap_s: float = 0.05,
    ) -> None:
        self.band_hz = band_hz
        self.min_step_time_s = min_step_time_s
        self.min_peak_mps2 = min_peak_mps2
        self.rel_threshold = rel_threshold
        self.rms_time_constant_s = rms_time_constant_s
        self.max_gap_s = max_gap_s

    def initial_state(self) -> StepDetectorState:
        """State before any data."""
        return StepDetectorState()

    def _half_window(self, sample_rate_hz: float) -> int:
        return max(1, round(self.min_step_time_s * sample_rate_hz))

    def _start_segment(self, state: StepDetectorState, t0_us: int, sample_rate_hz: float,
                       first_norm: float) -> None:
        _, zi_unit, _ = _design(sample_rate_hz, *self.band_hz, self.rms_time_constant_s)
        state.sample_rate_hz = sample_rate_hz
        state.n_seen = 0
        state.segment_t0_us = t0_us
        state.zi = (zi_unit * first_norm).tolist()
        state.ms = 0.0
        state.tail = []
        state.tail_thr = []
        state.next_eval = 0
        state.last_step = -(10**9)

    def process(
        self,
        state: StepDetectorState,
        acc_mps2: npt.ArrayLike,
        t0_us: int,
        sample_rate_hz: float,
    ) -> npt.NDArray[np.int64]:
        """Feed one chunk (n, 3) starting at device time ``t0_us``; returns new step times (us).

        ``state`` is updated in place. Chunks must come in time order; a gap longer than
        ``max_gap_s``, an overlap, or a new sample rate starts a new segment (steps
        pending at the end of the old one are dropped, not guessed).
        """
        acc = np.asarray(acc_mps2, dtype=np.float64)
        if acc.ndim != 2 or acc.shape[1] != 3:
            raise ValueError(f"acc must have shape (n, 3), got {acc.shape}")
        if acc.shape[0] == 0:
            return np.empty(0, dtype=np.int64)
        norm = np.sqrt(np.einsum("ij,ij->i", acc, acc))
        if state.sample_rate_hz != sample_rate_hz:
            self._start_segment(state, t0_us, sample_rate_hz, float(norm[0]))
        else:
            expected = int(state.time_of(state.n_seen))
            gap_us = t0_us - expected
            if abs(gap_us) > self.max_gap_s * 1e6:
                self._start_segment(state, t0_us, sample_rate_hz, float(norm[0]))
        sos, _, rms_coeffs = _design(sample_rate_hz, *self.band_hz, self.rms_time_constant_s)
        y, zf = sosfilt_1d(sos, norm, state.zi)
        state.zi = zf.tolist()
        # causal running mean square: ms[i] = a*y[i]^2 + (1-a)*ms[i-1]
        a, b = rms_coeffs
        ms, _ = signal.lfilter([a], [1.0, -b], y * y, zi=[b * state.ms])
        state.ms = float(ms[-1])
        thr = np.maximum(self.min_peak_mps2, self.rel_threshold * np.sqrt(ms))

        h = self._half_window(sample_rate_hz)
        buf = np.concatenate([np.asarray(state.tail), y])
        buf_thr = np.concatenate([np.asarray(state.tail_thr), thr])
        buf_start = state.n_seen - len(state.tail)  # segment index of buf[0]
        state.n_seen += len(y)

        # samples whose +-h neighbourhood is complete and not yet judged
        first = max(state.next_eval, buf_start + h)
        last = state.n_seen - 1 - h
        steps: list[int] = []
        if last >= first:
            local_max = ndimage.maximum_filter1d(buf, size=2 * h + 1, mode="nearest")
            idx = np.arange(first, last + 1)
            rel = idx - buf_start
            is_peak = (buf[rel] >= local_max[rel]) & (buf[rel] > buf_thr[rel])
            for i in idx[is_peak]:
                if i - state.last_step > h:
                    steps.append(int(i))
                    state.last_step = int(i)
            state.next_eval = last + 1
        keep = 2 * h
        state.tail = buf[-keep:].tolist()
        state.tail_thr = buf_thr[-keep:].tolist()
        if not steps:
            return np.empty(0, dtype=np.int64)
        return np.asarray(state.time_of(np.asarray(steps)), dtype=np.int64)
