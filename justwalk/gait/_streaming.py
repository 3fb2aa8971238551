"""Small building blocks shared by the streaming gait algorithms (no I/O).

Every block is chunk-invariant: feeding a signal whole or in chunks of any size gives
bit-identical output, because filters run sample by sample (``scipy.signal.lfilter`` /
``sosfilt`` with their state carried over) and buffers are addressed by absolute sample
index, never by chunk position.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal

from justwalk.gait._filters import sosfilt_1d

FloatArray = npt.NDArray[np.float64]


@lru_cache(maxsize=32)
def gaussian_kernel(sigma_s: float, sample_rate_hz: float) -> tuple[FloatArray, int]:
    """Unit-gain Gaussian FIR kernel (+-3 sigma) and its delay in samples (half length)."""
    s = sigma_s * sample_rate_hz
    half = max(1, int(np.ceil(3.0 * s)))
    t = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / s) ** 2)
    k /= k.sum()
    k.setflags(write=False)
    return k, half


@lru_cache(maxsize=64)
def butter_sos(order: int, cut_hz: float, btype: str, sample_rate_hz: float) -> FloatArray:
    """Butterworth filter in second-order sections (cached; the design is deterministic)."""
    sos: FloatArray = signal.butter(order, cut_hz, btype=btype, fs=sample_rate_hz, output="sos")
    return sos


class FirState:
    """State of a streaming FIR filter: the last ``len(b) - 1`` filter delays."""

    @staticmethod
    def run(b: FloatArray, x: FloatArray, zi: list[float] | None) -> tuple[FloatArray, list[float]]:
        """Filter ``x``; ``zi=None`` starts as if the signal had been 0 before."""
        z = np.zeros(len(b) - 1) if zi is None else np.asarray(zi, dtype=np.float64)
        y, zf = signal.lfilter(b, [1.0], x, zi=z)
        return y, zf.tolist()


def sos_run(sos: FloatArray, x: FloatArray, zi: list[list[float]] | None
            ) -> tuple[FloatArray, list[list[float]]]:
    """Streaming ``sosfilt``; ``zi=None`` starts from rest."""
    z = np.zeros((sos.shape[0], 2)) if zi is None else np.asarray(zi, dtype=np.float64)
    y, zf = sosfilt_1d(sos, x, z)
    return y, zf.tolist()


class History:
    """The most recent samples of a signal, addressed by absolute sample index."""

    __slots__ = ("data", "max_len", "start")

    def __init__(self, max_len: int, start: int = 0, data: FloatArray | None = None) -> None:
        self.max_len = max_len
        self.start = start
        self.data = np.zeros(0) if data is None else np.asarray(data, dtype=np.float64)

    @property
    def end(self) -> int:
        """One past the last index held."""
        return self.start + len(self.data)

    def extend(self, x: FloatArray) -> History:
        """Append samples, forgetting the oldest beyond ``max_len``.

        Returns a view holding *everything* (old tail plus all of ``x``), for the caller
        to work on before the oldest samples are forgotten.
        """
        buf = np.concatenate([self.data, x])
        full = History(len(buf), self.start, buf)
        drop = max(0, len(buf) - self.max_len)
        self.data = buf[drop:]
        self.start += drop
        return full

    def slice(self, lo: int, hi: int) -> FloatArray:
        """Samples [lo, hi) clipped to what is held."""
        lo = max(lo, self.start)
        hi = min(hi, self.end)
        if hi <= lo:
            return np.zeros(0)
        return self.data[lo - self.start : hi - self.start]

    def at(self, i: int) -> float:
        """Value at index ``i`` (NaN if not held)."""
        if self.start <= i < self.end:
            return float(self.data[i - self.start])
        return float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (exact: floats round-trip through repr)."""
        return {"max_len": self.max_len, "start": self.start, "data": self.data.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """Inverse of ``to_dict``."""
        return cls(int(d["max_len"]), int(d["start"]), np.asarray(d["data"], dtype=np.float64))
