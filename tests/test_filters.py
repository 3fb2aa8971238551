"""The gait core's compiled filters (``justwalk.gait._kernels``) against scipy and numpy.

The recursive filters are scipy's arithmetic, so they must equal it bit for bit; the FIR
filters sum their taps in a fixed order of their own, so they equal ``numpy.convolve`` to
rounding and, exactly, themselves however a signal is cut into blocks.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from scipy import signal

from justwalk.gait import _kernels
from justwalk.gait._rings import butter_sos, gaussian_kernel, new_ring, pow2_at_least


@njit(cache=True)
def _sosfilt(sos, x, z):
    y = np.empty_like(x)
    for n in range(x.size):
        y[n] = _kernels.sos_step(sos, z, x[n])
    return y


@njit(cache=True)
def _lfilter1(b0, a1, x, z):
    y = np.empty_like(x)
    for n in range(x.size):
        y[n] = _kernels.pole_step(b0, a1, z, 0, x[n])
    return y


@pytest.mark.parametrize(("order", "cut", "btype"), [
    (2, 0.3, "highpass"), (2, 1.0, "lowpass"), (4, 0.1, "highpass"), (4, 1.0, "highpass"),
    (4, 1.5, "lowpass"), (2, [0.5, 3.0], "bandpass")])
def test_sections_equal_scipy_sosfilt(order: int, cut: float, btype: str) -> None:
    rng = np.random.default_rng(order)
    sos = np.asarray(signal.butter(order, cut, btype=btype, fs=100.0, output="sos"))
    x = rng.normal(0, 3, 5000)
    zi = rng.normal(0, 1, (sos.shape[0], 2))
    y_ref, z_ref = signal.sosfilt(sos, x, zi=zi)
    z = zi.copy()
    y = _sosfilt(sos, x, z)
    assert np.array_equal(y, y_ref) and np.array_equal(z, z_ref)


@pytest.mark.parametrize(("b0", "a1"), [(0.01, -1.0), (0.00995, 0.00995 - 1.0),
                                         (1 - np.exp(-1 / 200.0), -np.exp(-1 / 200.0))])
def test_first_order_equals_scipy_lfilter(b0: float, a1: float) -> None:
    x = np.random.default_rng(1).normal(size=5000)
    y_ref, z_ref = signal.lfilter([b0], [1.0, a1], x, zi=[0.3])
    z = np.array([0.3])
    y = _lfilter1(b0, a1, x, z)
    assert np.array_equal(y, y_ref) and np.array_equal(z, z_ref)


@pytest.mark.parametrize("sigma_s", [0.03, 0.1])
def test_fir_equals_convolution_and_does_not_depend_on_blocks(sigma_s: float) -> None:
    taps, _ = gaussian_kernel(sigma_s, 100.0)
    x = np.random.default_rng(2).normal(size=3000)
    ref = np.convolve(taps, x)[: x.size]  # zero history before the signal
    ring = np.zeros(pow2_at_least(taps.size - 1))

    def blocks(size: int) -> np.ndarray:
        ring[:] = 0.0
        out = []
        for i in range(0, x.size, size):
            blk = x[i:i + size]
            buf = np.empty(ring.size + blk.size)
            buf[ring.size:] = blk
            _kernels.history(ring, i, buf, ring.size)
            y = np.empty(blk.size)
            _kernels.fir(taps, buf[ring.size - (taps.size - 1):], y)
            _kernels.ring_put(ring, i, blk)
            out.append(y)
        return np.concatenate(out)

    whole = blocks(x.size)
    assert np.allclose(whole, ref, rtol=0, atol=1e-14)
    for size in (1, 7, 50, 256):
        assert np.array_equal(blocks(size), whole)


def test_projection_of_a_tilted_sensor() -> None:
    """A sensor tilted by 30 degrees about z at rest: acc_v 0, the vertical along gravity;
    a rotation about the vertical is all yaw, one about a horizontal axis all tilt rate."""
    tilt = np.radians(30.0)
    up = np.array([np.cos(tilt), np.sin(tilt), 0.0])
    n = 500
    acc = np.tile(9.81 * up, (n, 1))
    gyr = np.tile(0.5 * up + 0.2 * np.array([0.0, 0.0, 1.0]), (n, 1))
    z = np.zeros(4)
    acc_v, yaw, tilt_rate, ups = (np.empty(n), np.empty(n), np.empty(n), np.empty((n, 3)))
    _kernels.project_block(z, 0.01, acc, gyr, acc_v, yaw, tilt_rate, ups)
    assert np.allclose(acc_v, 0.0, atol=1e-12)
    assert np.allclose(ups, up, atol=1e-12)
    assert np.allclose(yaw, 0.5) and np.allclose(tilt_rate, 0.2)


def test_rings_address_by_absolute_index() -> None:
    ring = new_ring(5, np.float64)
    assert ring.size == 8 and np.isnan(ring).all()
    _kernels.ring_put(ring, 6, np.arange(10.0))  # indices 6..15
    buf = np.empty(8)
    _kernels.history(ring, 16, buf, 8)
    assert buf.tolist() == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert butter_sos(2, 1.0, "lowpass", 100.0) is butter_sos(2, 1.0, "lowpass", 100.0)


def test_window_values_equal_the_numpy_definitions_bit_for_bit() -> None:
    """``_kernels.window_values`` (the gait windows' values) against ``variability``'s NumPy
    formulas, on irregular steps with pauses and missing lengths, short and long (NumPy
    sums more than 128 values pairwise)."""
    from justwalk.gait import variability as v
    from justwalk.gait._kernels import window_values

    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 3, 5, 9, 17, 40, 129, 300, 1031):
        ics = np.cumsum(rng.integers(30, 90, n) + (rng.random(n) < 0.05) * 200).astype(np.int64)
        right = rng.random(n) < 0.5
        lens = np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0.3, 0.8, n))
        got = window_values(ics, right, lens, 100.0, 1.5, 3.0, np.empty(8 * max(n, 1)))
        st = v.step_times_s(ics.tolist(), 100.0, 1.5)
        sr = v.stride_times_s(ics.tolist(), 100.0, 3.0)
        pairs = [(lens[k] + lens[k - 1], (ics[k] - ics[k - 2]) / 100.0) for k in range(2, n)
                 if (ics[k] - ics[k - 2]) / 100.0 <= 3.0]
        lengths = [a for a, _ in pairs if np.isfinite(a)]
        speeds = [a / d for a, d in pairs if np.isfinite(a / d)]
        want = (float(st.mean()) if st.size else np.nan, float(sr.mean()) if sr.size else np.nan,
                v.cadence_spm(sr), v.cv_pct(sr),
                v.step_time_asymmetry_pct(ics.tolist(), ["right" if r else "left" for r in right],
                                          100.0, 1.5),
                float(np.mean(lengths)) if lengths else np.nan,
                float(np.mean(speeds)) if speeds else np.nan)
        for g, w in zip(got, want, strict=True):
            assert (np.isnan(g) and np.isnan(w)) or g == w, (n, got, want)
