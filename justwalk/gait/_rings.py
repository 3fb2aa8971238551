"""Ring buffers of the gait core's state, and their compact binary form (no I/O).

A ring holds the most recent samples of a signal addressed by absolute sample index:
sample ``i`` lives at ``ring[i & (len(ring) - 1)]`` (lengths are powers of two, so the
numba kernels index without a division). A ring is packed as the raw bytes of its last
``count`` entries before an end index, oldest first (``justwalk.state_format``); entries
before them are restored as NaN (floats) or 0 (integers), so a reader that strays outside
what was packed shows up as NaN in tests instead of reading stale data.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal

from justwalk.state_format import StateFormatError, array_bytes, array_from

FloatArray = npt.NDArray[np.float64]


def pow2_at_least(n: int) -> int:
    """The smallest power of two >= ``n`` (and >= 1)."""
    return 1 << max(0, int(n) - 1).bit_length()


def new_ring(min_len: int, dtype: npt.DTypeLike, width: int | None = None) -> npt.NDArray[Any]:
    """A ring of at least ``min_len`` entries (of ``width`` columns), NaN or 0 filled."""
    shape = (pow2_at_least(min_len),) if width is None else (pow2_at_least(min_len), width)
    dt = np.dtype(dtype)
    return np.full(shape, np.nan if dt.kind == "f" else 0, dtype=dt)


def ring_indices(ring: npt.NDArray[Any], end: int, count: int) -> npt.NDArray[np.int64]:
    """Positions of absolute indices ``[end - count, end)`` in ``ring``."""
    return np.arange(end - count, end, dtype=np.int64) & (ring.shape[0] - 1)


def pack_ring(ring: npt.NDArray[Any], end: int, count: int) -> list[Any]:
    """``[length, count, bytes]`` of the ``count`` entries before absolute index ``end``."""
    n = ring.shape[0]
    count = max(0, min(int(count), n))
    start = (end - count) & (n - 1)
    if start + count <= n:  # one stretch of the ring, else two: no index arrays either way
        data = array_bytes(ring[start:start + count], ring.dtype)
    else:
        data = (array_bytes(ring[start:], ring.dtype)
                + array_bytes(ring[:start + count - n], ring.dtype))
    return [int(n), count, data]


def unpack_ring(obj: Any, end: int, dtype: npt.DTypeLike, component: str,
                width: int | None = None) -> npt.NDArray[Any]:
    """Inverse of ``pack_ring``."""
    if not isinstance(obj, list) or len(obj) != 3:
        raise StateFormatError(f"{component}: a ring is [length, count, bytes]")
    length, count, data = obj
    if not isinstance(length, int) or length < 1 or length & (length - 1) or not (
            isinstance(count, int) and 0 <= count <= length):
        raise StateFormatError(f"{component}: bad ring length {length!r} / count {count!r}")
    ring = new_ring(length, dtype, width)
    shape = (count,) if width is None else (count, width)
    ring[ring_indices(ring, end, count)] = array_from(data, dtype, shape, component)
    return ring


def pack_array(a: npt.NDArray[Any]) -> bytes:
    """A small state array's raw bytes (its dtype and shape are fixed by the reader)."""
    return array_bytes(a, a.dtype)


# ----------------------------------------------------------------------------- filter design


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
    sos: FloatArray = np.ascontiguousarray(
        signal.butter(order, cut_hz, btype=btype, fs=sample_rate_hz, output="sos"))
    sos.setflags(write=False)
    return sos
