"""The fast sosfilt path equals scipy's, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from justwalk.gait._filters import sosfilt_1d


@pytest.mark.parametrize("n", [1, 7, 50, 333])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_scipy_sosfilt(n, dtype):
    rng = np.random.default_rng(n)
    sos = signal.butter(4, [0.5, 3.0], btype="bandpass", fs=100.0, output="sos")
    x = rng.normal(0, 3, n).astype(dtype)
    zi = rng.normal(0, 1, (sos.shape[0], 2))
    y_ref, z_ref = signal.sosfilt(sos, x, zi=zi)
    y, z = sosfilt_1d(sos, x, zi)
    assert np.array_equal(y, y_ref) and np.array_equal(z, z_ref)
    assert y.dtype == np.float64
    # inputs are not modified
    assert np.array_equal(zi, zi.copy())


def test_chunked_equals_whole():
    sos = signal.butter(2, 3.0, fs=100.0, output="sos")
    x = np.random.default_rng(0).normal(size=1000)
    whole, _ = sosfilt_1d(sos, x, np.zeros((1, 2)))
    z = np.zeros((1, 2))
    parts = []
    for k in range(0, 1000, 37):
        y, z = sosfilt_1d(sos, x[k:k + 37], z)
        parts.append(y)
    assert np.array_equal(np.concatenate(parts), whole)
