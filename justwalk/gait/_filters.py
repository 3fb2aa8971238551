"""``sosfilt`` for one short 1-D signal without scipy's per-call overhead.

The stream processors filter 0.25-1 s chunks, for which ``scipy.signal.sosfilt`` spends
most of its ~0.1 ms per call validating and reshaping arguments (array-API dispatch, axis
moves) rather than filtering. ``sosfilt_1d`` does the same computation with scipy's own
compiled kernel on float64 arrays, exactly as ``scipy.signal.sosfilt`` does for float64
input (tests/test_filters.py checks bit-for-bit equality), and falls back to the public
function if a scipy release moves the kernel.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import signal

try:
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_kernel
except ImportError:  # pragma: no cover - depends on the scipy release
    _sosfilt_kernel = None

FloatArray = npt.NDArray[np.float64]


def sosfilt_1d(sos: npt.ArrayLike, x: npt.ArrayLike, zi: npt.ArrayLike
               ) -> tuple[FloatArray, FloatArray]:
    """Filter 1-D ``x`` with second-order sections from state ``zi`` (n_sections, 2).

    Returns the output and the final state, as ``scipy.signal.sosfilt(sos, x, zi=zi)``.
    """
    if _sosfilt_kernel is None:
        y, zf = signal.sosfilt(sos, x, zi=zi)
        return np.asarray(y, dtype=np.float64), np.asarray(zf, dtype=np.float64)
    sos_c = np.ascontiguousarray(sos, dtype=np.float64)
    y = np.array(x, dtype=np.float64, order="C").reshape(1, -1)  # a copy: filtered in place
    z = np.array(zi, dtype=np.float64, order="C").reshape(1, sos_c.shape[0], 2)
    _sosfilt_kernel(sos_c, y, z)
    return y[0], z[0]
