"""The gait core's per-sample arithmetic, compiled with numba (no I/O, no Python per sample).

Each stage of ``justwalk.gait`` (its module docstring gives the method and its sources) has
its per-sample arithmetic here, as small functions that LLVM inlines, and a *block* function
that runs them over up to ``MAX_BLOCK`` samples with the filter states carried over (the
stage classes call it on their own, for analytic tests). ``pipeline_block`` runs every stage
on one block in one call from Python: one loop over the samples computes all recursive
filters (independent filter chains then overlap in the processor instead of each waiting
for its own), the FIR filters then run vectorised over the block, and a last loop judges
the step peaks.

Rules that keep results exact:

- every filter runs sample by sample from carried float64 state (IIR sections as scipy's
  ``sosfilt``/``lfilter`` compute them, expression for expression, so the outputs equal
  scipy's bit for bit; tests/test_filters.py checks it), and FIR filters sum their taps in
  one fixed order, so the output does not depend on how a stream is cut into blocks;
- no ``fastmath``: no reassociation, no contraction to fused multiply-adds;
- signals kept for later reads are rings addressed by absolute sample index
  (``index & (len - 1)``, lengths are powers of two).

All numba code of the package lives in this one file on purpose: numba's on-disk cache
(``cache=True``) is invalidated when the file of a cached function changes, not when a
function it calls in another file does (numba documentation, "Notes on caching").
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

MAX_BLOCK = 256
"""Most samples one block function call takes; callers split longer input."""

# ----------------------------------------------------------------------------- primitives


@njit(cache=True, inline="always")
def sos_step(sos, z, x):
    """One sample through second-order sections ``sos`` (n, 6) with state ``z`` (n, 2).

    The expressions are those of scipy's ``sosfilt`` kernel (transposed direct form II).
    """
    for s in range(sos.shape[0]):
        y = sos[s, 0] * x + z[s, 0]
        z[s, 0] = sos[s, 1] * x - sos[s, 4] * y + z[s, 1]
        z[s, 1] = sos[s, 2] * x - sos[s, 5] * y
        x = y
    return x


@njit(cache=True, inline="always")
def pole_step(b0, a1, z, i, x):
    """One sample of ``lfilter([b0], [1, a1])`` with its state in ``z[i]`` (as scipy)."""
    y = z[i] + b0 * x
    z[i] = x * 0.0 - y * a1
    return y


@njit(cache=True)
def fir(taps, buf, out):
    """FIR filter of a block: ``out[j] = sum_k taps[k] * buf[N + j - k]``.

    ``N = len(taps) - 1``; ``buf`` holds the ``N`` samples before the block, then the
    block. Taps are summed newest first; the inner loop runs over the block on contiguous
    slices, which LLVM vectorises.
    """
    n = out.shape[0]
    big_n = taps.shape[0] - 1
    b0 = taps[0]
    for j in range(n):
        out[j] = b0 * buf[big_n + j]
    for k in range(1, big_n + 1):
        b = taps[k]
        src = buf[big_n - k:big_n - k + n]
        for j in range(n):
            out[j] += b * src[j]


@njit(cache=True)
def history(ring, n0, buf, count):
    """``buf[:count]`` = the ring's ``count`` samples before absolute index ``n0``."""
    mask = ring.shape[0] - 1
    for j in range(count):
        buf[j] = ring[(n0 - count + j) & mask]


@njit(cache=True)
def ring_put(ring, n0, x):
    """Write ``x`` at absolute indices ``n0, n0 + 1, ...``."""
    mask = ring.shape[0] - 1
    for j in range(x.shape[0]):
        ring[(n0 + j) & mask] = x[j]


# ----------------------------------------------------------------------------- orientation


@njit(cache=True)
def project_start(z, a, acc):
    """Start the gravity low-pass at the first sample's value (no start-up transient)."""
    if z[3] == 0.0 and acc.shape[0]:
        for k in range(3):
            z[k] = (1.0 - a) * acc[0, k]
        z[3] = 1.0


@njit(cache=True, inline="always")
def project(z, a, ax, ay, az, wx, wy, wz):
    """``orientation.VerticalProjection`` for one sample: (acc_v, yaw, tilt rate, up).

    ``z``: [gx, gy, gz, started]; ``a``: low-pass coefficient. Any fixed summation order
    would do; these (squared norms x, z, y; projections x, y, z) are the ones numpy's
    ``einsum`` took on the recordings in the first implementation, so that the signals
    stayed the same bit for bit when the kernels replaced it.
    """
    a1 = a - 1.0
    g0 = pole_step(a, a1, z, 0, ax)
    g1 = pole_step(a, a1, z, 1, ay)
    g2 = pole_step(a, a1, z, 2, az)
    norm = math.sqrt((g0 * g0 + g2 * g2) + g1 * g1)
    u0 = g0 / norm
    u1 = g1 / norm
    u2 = g2 / norm
    acc_v = ((ax * u0 + ay * u1) + az * u2) - norm
    w = (wx * u0 + wy * u1) + wz * u2
    h0 = wx - w * u0
    h1 = wy - w * u1
    h2 = wz - w * u2
    return acc_v, w, math.sqrt((h0 * h0 + h2 * h2) + h1 * h1), u0, u1, u2


@njit(cache=True)
def project_block(z, a, acc, gyr, acc_v, yaw, tilt, up):
    """``project`` over a chunk of any length."""
    project_start(z, a, acc)
    for n in range(acc.shape[0]):
        acc_v[n], yaw[n], tilt[n], up[n, 0], up[n, 1], up[n, 2] = project(
            z, a, acc[n, 0], acc[n, 1], acc[n, 2], gyr[n, 0], gyr[n, 1], gyr[n, 2])


# ----------------------------------------------------------------------------- transfers

# TransferState.ints
TR_N_SEEN, TR_N_POSTURE, TR_N_LAST, TR_LAST0, TR_LAST1 = 0, 1, 2, 3, 4
# TransferGate parameter vector
TP_MAX_RATE, TP_HAS_RATE, TP_WINDOW, TP_COS_MAX, TP_HAS_POSTURE, TP_WEIGHT, TP_RHYTHM, \
    TP_MIN_ICS = range(8)


@njit(cache=True, inline="always")
def transfer_sample(sos, z, fast, up_ring, prm, n, tilt, u0, u1, u2
                    ):
    """``transfers.TransferGate`` for sample ``n``.

    Keeps the low-passed pitch/roll rate as a "too fast" flag (the rate is only ever
    compared with the limit), and the vertical.
    """
    r = sos_step(sos, z, tilt)
    i = n & (fast.shape[0] - 1)
    # "not <=" so that NaN counts as too fast, as max() <= limit did
    fast[i] = 1 if prm[TP_HAS_RATE] != 0.0 and not r <= prm[TP_MAX_RATE] else 0
    up_ring[i, 0] = u0
    up_ring[i, 1] = u1
    up_ring[i, 2] = u2


@njit(cache=True)
def transfer_block(sos, z, fast, up_ring, ints, prm, tilt, up):
    """``transfer_sample`` over a block."""
    n0 = ints[TR_N_SEEN]
    for j in range(tilt.shape[0]):
        transfer_sample(sos, z, fast, up_ring, prm, n0 + j, tilt[j], up[j, 0], up[j, 1],
                        up[j, 2])
    ints[TR_N_SEEN] = n0 + tilt.shape[0]


@njit(cache=True)
def transfer_upright(posture, ints, up_ring, prm, ic):
    """Posture gate for one IC (call in IC order); learns the walking posture."""
    n_end = ints[TR_N_SEEN]
    cap = up_ring.shape[0]
    if not (n_end - cap <= ic < n_end) or ic < 0:
        return True  # not held: no verdict
    i = ic & (cap - 1)
    v0 = np.float64(up_ring[i, 0])
    v1 = np.float64(up_ring[i, 1])
    v2 = np.float64(up_ring[i, 2])
    if not (math.isfinite(v0) and math.isfinite(v1) and math.isfinite(v2)):
        return True
    ok = True
    n_post = ints[TR_N_POSTURE]
    if prm[TP_HAS_POSTURE] != 0.0 and n_post >= prm[TP_MIN_ICS]:
        r0, r1, r2 = posture[0], posture[1], posture[2]
        cos = ((v0 * r0 + v1 * r1) + v2 * r2) / math.sqrt((r0 * r0 + r1 * r1) + r2 * r2)
        ok = cos >= prm[TP_COS_MAX]
    n_last = ints[TR_N_LAST]
    if ok and n_last == 2:
        d0 = ints[TR_LAST1] - ints[TR_LAST0]
        d1 = ic - ints[TR_LAST1]
        if d0 > 0 and abs(d1 / d0 - 1.0) <= prm[TP_RHYTHM]:
            w = prm[TP_WEIGHT] if n_post else 1.0
            posture[0] = (1.0 - w) * posture[0] + w * v0
            posture[1] = (1.0 - w) * posture[1] + w * v1
            posture[2] = (1.0 - w) * posture[2] + w * v2
            ints[TR_N_POSTURE] = n_post + 1
    if ok:
        if n_last == 2:
            ints[TR_LAST0] = ints[TR_LAST1]
            ints[TR_LAST1] = ic
        elif n_last == 1:
            ints[TR_LAST1] = ic
            ints[TR_N_LAST] = 2
        else:
            ints[TR_LAST0] = ic
            ints[TR_N_LAST] = 1
    return ok


@njit(cache=True)
def transfer_fast_before(fast, ints, prm, ic):
    """Whether the trunk turned faster than the limit within the window before ``ic``."""
    n_end = ints[TR_N_SEEN]
    cap = fast.shape[0]
    lo = max(ic - int(prm[TP_WINDOW]), n_end - cap, 0)
    for i in range(lo, min(ic + 1, n_end)):  # noqa: SIM110 (a loop compiles simplest)
        if fast[i & (cap - 1)]:
            return True
    return False


# ----------------------------------------------------------------------------- icd

# IcState.ints
IC_N_SEEN, IC_NEXT_EVAL, IC_LAST_PEAK, IC_LAST_IC, IC_N_RECENT = 0, 1, 2, 3, 4
IC_RECENT = 5
"""ints[IC_RECENT:IC_RECENT + 5]: the last accepted coarse peaks, oldest first."""
N_RECENT = 5
# IcDetector parameter vector
(IP_H, IP_BACK, IP_FWD, IP_OFF, IP_DC, IP_DF, IP_ABS, IP_REL, IP_WEAK, IP_TOL, IP_MAX_STEP,
 IP_A_MS) = range(12)


@njit(cache=True)
def _expected_step(ints, max_step):
    """Median of the recent step intervals (samples, truncated); 0 without a rhythm."""
    n = ints[IC_N_RECENT]
    d = np.empty(N_RECENT, dtype=np.int64)
    k = 0
    for i in range(1, n):
        v = ints[IC_RECENT + i] - ints[IC_RECENT + i - 1]
        if v <= max_step:
            d[k] = v
            k += 1
    if k < 3:
        return 0
    s = np.sort(d[:k])
    if k % 2:
        return int(s[k // 2])
    return int((s[k // 2 - 1] + s[k // 2]) / 2.0)


@njit(cache=True)
def icd_judge(c_blk, f_blk, coarse, thr, fine, z, ints, prm, ics_out
              ):
    """``icd.IcDetector`` after its filters; returns how many ICs it wrote to ``ics_out``.

    Running mean square, threshold, and each coarse sample judged as soon as its
    look-ahead has arrived (local maximum over +-h above the threshold, or above the weak
    threshold where the step rhythm expects one); the IC is the fine signal's maximum near
    the peak, minus the offset.
    """
    n0 = ints[IC_N_SEEN]
    h = int(prm[IP_H])
    back = int(prm[IP_BACK])
    fwd = int(prm[IP_FWD])
    off = int(prm[IP_OFF])
    dc = int(prm[IP_DC])
    df = int(prm[IP_DF])
    a_ms = prm[IP_A_MS]
    a1_ms = a_ms - 1.0
    cmask = coarse.shape[0] - 1
    tmask = thr.shape[0] - 1
    fmask = fine.shape[0] - 1
    n_ics = 0
    for j in range(c_blk.shape[0]):
        n = n0 + j
        c = c_blk[j]
        ms = pole_step(a_ms, a1_ms, z, 2, c * c)
        r = prm[IP_REL] * math.sqrt(ms)
        t = r if (r > prm[IP_ABS] or r != r) else prm[IP_ABS]
        ci = n - dc
        coarse[ci & cmask] = c
        thr[ci & tmask] = t
        fine[(n - df) & fmask] = f_blk[j]
        p = ci - h
        if p < h or p < ints[IC_NEXT_EVAL]:
            continue
        ints[IC_NEXT_EVAL] = p + 1
        cp = coarse[p & cmask]
        tp = thr[p & tmask]
        if not cp > tp * prm[IP_WEAK]:
            continue
        peak = True
        for q in range(p - h, p + h + 1):
            if coarse[q & cmask] > cp:
                peak = False
                break
        if not peak or p - ints[IC_LAST_PEAK] <= h:
            continue
        if not cp > tp:  # a weak peak: a step only where the rhythm expects one
            step = _expected_step(ints, prm[IP_MAX_STEP])
            if step == 0 or abs(p - ints[IC_LAST_PEAK] - step) > prm[IP_TOL] * step:
                continue
        lo = max(p - back, -df)
        hi = min(p + fwd, n - df)
        ic = -1
        if hi >= lo:
            best = lo
            for q in range(lo + 1, hi + 1):
                if fine[q & fmask] > fine[best & fmask]:
                    best = q
            ic = best - off
        ints[IC_LAST_PEAK] = p
        k = ints[IC_N_RECENT]
        if k == N_RECENT:
            for i in range(N_RECENT - 1):
                ints[IC_RECENT + i] = ints[IC_RECENT + i + 1]
            k -= 1
        ints[IC_RECENT + k] = p
        ints[IC_N_RECENT] = k + 1
        if ic > ints[IC_LAST_IC] and ic >= 0:
            ics_out[n_ics] = ic
            n_ics += 1
            ints[IC_LAST_IC] = ic
    ints[IC_N_SEEN] = n0 + c_blk.shape[0]
    return n_ics


@njit(cache=True)
def fine_coarse(taps_f, taps_c, hp_ring, buf, n0, c_out, f_out
                ):
    """The fine and coarse Gaussian FIRs of a block.

    The block's high-passed samples are in ``buf[len(hp_ring):]``; ``buf``'s head is
    filled here from ``hp_ring``, which then takes the block.
    """
    big_n = hp_ring.shape[0]
    m = c_out.shape[0]
    history(hp_ring, n0, buf, big_n)
    fir(taps_c, buf[big_n - (taps_c.shape[0] - 1):big_n + m], c_out)
    fir(taps_f, buf[big_n - (taps_f.shape[0] - 1):big_n + m], f_out)
    ring_put(hp_ring, n0, buf[big_n:big_n + m])


@njit(cache=True)
def icd_block(sos, z, taps_f, taps_c, hp_ring, coarse, thr, fine, ints, prm, acc_v, ics_out
              ):
    """``icd.IcDetector`` on a block of vertical acceleration; returns the ICs written.

    ``z``: [high-pass section state (2), running mean square].
    """
    m = acc_v.shape[0]
    big_n = hp_ring.shape[0]
    buf = np.empty(big_n + m)
    zs = z[0:2].reshape((1, 2))
    for j in range(m):
        buf[big_n + j] = sos_step(sos, zs, acc_v[j])
    c_blk = np.empty(m)
    f_blk = np.empty(m)
    fine_coarse(taps_f, taps_c, hp_ring, buf, ints[IC_N_SEEN], c_blk, f_blk)
    return icd_judge(c_blk, f_blk, coarse, thr, fine, z, ints, prm, ics_out)


# ----------------------------------------------------------------------------- lr

# LrState.ints
LR_N_SEEN, LR_HEAD, LR_COUNT = 0, 1, 2
# LrClassifier parameter vector
LP_D, LP_LAG = 0, 1


@njit(cache=True)
def lr_smooth(taps, hp_ring, buf, right, ints, prm, m):
    """``lr.LrClassifier`` after its high-pass (the block in ``buf[len(hp_ring):]``).

    The Gaussian-smoothed medio-lateral acceleration is kept as its sign (``right[i] = 1``
    where the smoothed value at index ``i`` is negative).
    """
    n0 = ints[LR_N_SEEN]
    big_n = hp_ring.shape[0]
    history(hp_ring, n0, buf, big_n)
    y = np.empty(m)
    fir(taps, buf[big_n - (taps.shape[0] - 1):big_n + m], y)
    ring_put(hp_ring, n0, buf[big_n:big_n + m])
    d = int(prm[LP_D])
    mask = right.shape[0] - 1
    for j in range(m):
        right[(n0 + j - d) & mask] = 1 if y[j] < 0.0 else 0
    ints[LR_N_SEEN] = n0 + m


@njit(cache=True)
def lr_block(sos, z, taps, hp_ring, right, ints, prm, acc_ml):
    """``lr.LrClassifier`` on a block of medio-lateral acceleration."""
    m = acc_ml.shape[0]
    big_n = hp_ring.shape[0]
    buf = np.empty(big_n + m)
    for j in range(m):
        buf[big_n + j] = sos_step(sos, z, acc_ml[j])
    lr_smooth(taps, hp_ring, buf, right, ints, prm, m)


@njit(cache=True)
def lr_push(pending, ints, ic, flag):
    """Queue an IC (with a flag carried along) for labelling."""
    cap = pending.shape[0]
    if ints[LR_COUNT] == cap:
        raise ValueError("too many initial contacts waiting for their side")
    k = (ints[LR_HEAD] + ints[LR_COUNT]) % cap
    pending[k, 0] = ic
    pending[k, 1] = flag
    ints[LR_COUNT] += 1


@njit(cache=True)
def lr_pop(right, pending, ints, prm, out):
    """Label the queued ICs whose smoothed value is known: rows (ic, right?, flag)."""
    end = ints[LR_N_SEEN] - int(prm[LP_D])  # one past the last smoothed index known
    lag = int(prm[LP_LAG])
    mask = right.shape[0] - 1
    cap = pending.shape[0]
    k = 0
    while ints[LR_COUNT] and pending[ints[LR_HEAD], 0] + lag < end:
        h = ints[LR_HEAD]
        ic = pending[h, 0]
        i = ic + lag
        held = end - right.shape[0] <= i
        out[k, 0] = ic
        out[k, 1] = right[i & mask] if held else 0
        out[k, 2] = pending[h, 1]
        k += 1
        ints[LR_HEAD] = (h + 1) % cap
        ints[LR_COUNT] -= 1
    return k


# ----------------------------------------------------------------------------- spatial

# SpatialState.z layout: high-pass 1 (2 sections), integrator 1, high-pass 2, integrator 2,
# heading (integrated yaw rate)
SP_HP1, SP_INT1, SP_HP2, SP_INT2, SP_HEADING = 0, 4, 5, 9, 10


@njit(cache=True, inline="always")
def spatial_sample(sos1, sos2, z, z1, z2, position, heading, n, fs, acc_v, yaw
                   ):
    """``spatial.StepLengthEstimator`` for sample ``n``.

    Vertical displacement (double integration with high-passes; float32 ring) and heading
    (the running sum of ``yaw / fs``; float64 ring). ``z1``, ``z2``: ``spatial_views(z)``.
    """
    b = 1.0 / fs
    a = sos_step(sos1, z1, acc_v)
    v = pole_step(b, -1.0, z, SP_INT1, a)
    v = sos_step(sos2, z2, v)
    p = pole_step(b, -1.0, z, SP_INT2, v)
    i = n & (position.shape[0] - 1)
    position[i] = p
    psi = z[SP_HEADING] + yaw / fs
    z[SP_HEADING] = psi
    heading[i] = psi


@njit(cache=True)
def spatial_views(z):
    """The two high-passes' section states inside ``SpatialState.z``."""
    return z[SP_HP1:SP_HP1 + 4].reshape((2, 2)), z[SP_HP2:SP_HP2 + 4].reshape((2, 2))


@njit(cache=True)
def spatial_block(sos1, sos2, z, position, heading, n0, fs, acc_v, yaw
                  ):
    """``spatial_sample`` over a block starting at sample ``n0``."""
    z1, z2 = spatial_views(z)
    for j in range(acc_v.shape[0]):
        spatial_sample(sos1, sos2, z, z1, z2, position, heading, n0 + j, fs, acc_v[j],
                       yaw[j])


@njit(cache=True)
def step_length(position, heading, n_end, ic_a, ic_b, lo, max_step, height, scaling,
                shortening, min_factor):
    """Inverted-pendulum step length between ICs ``ic_a < ic_b``; NaN if unavailable.

    Shortened by the heading change over [``lo``, ``ic_b``] (``lo`` the stride's first IC).
    The arrays are rings holding the samples before ``n_end``.
    """
    cap = position.shape[0]
    mask = cap - 1
    if ic_b <= ic_a or (ic_b - ic_a) > max_step or ic_a < max(n_end - cap, 0) or ic_b >= n_end:
        return np.nan
    hi_v = np.float64(position[ic_a & mask])
    lo_v = hi_v
    for i in range(ic_a + 1, ic_b + 1):
        v = np.float64(position[i & mask])
        if v > hi_v:
            hi_v = v
        if v < lo_v:
            lo_v = v
    hgt = hi_v - lo_v
    v = 2.0 * height * hgt - hgt * hgt
    if not math.isfinite(v) or v <= 0:
        return np.nan
    length = scaling * 2.0 * math.sqrt(v)
    turn = heading[ic_b & mask] - heading[lo & mask]
    if shortening > 0 and lo >= max(n_end - cap, 0) and math.isfinite(turn):
        turn = abs(turn) * (ic_b - ic_a) / (ic_b - lo)
        length *= max(min_factor, 1.0 - shortening * turn / math.pi)
    return length


# ----------------------------------------------------------------------------- turns

# TurnState.z layout: low-pass (2 sections), integrator, run angle before/at end, run peak
TU_LP, TU_INT, TU_ANGLE0, TU_ANGLE1, TU_PEAK = 0, 4, 5, 6, 7
# TurnState.ints
TU_N_SEEN, TU_SIGN, TU_START, TU_LAST = 0, 1, 2, 3
# TurnDetector parameter vector
UP_EDGE, UP_PEAK, UP_MIN_ANGLE, UP_MIN_DUR, UP_MAX_DUR, UP_GAP, UP_FS = range(7)


@njit(cache=True, inline="always")
def _turn_close(z, ints, prm, out, k, n):
    start = ints[TU_START]
    last = ints[TU_LAST]
    angle = z[TU_ANGLE1] - z[TU_ANGLE0]
    peak = z[TU_PEAK]
    ints[TU_SIGN] = 0
    dur = (last - start + 1) / prm[UP_FS]
    if (peak >= prm[UP_PEAK] and abs(angle) >= prm[UP_MIN_ANGLE]
            and prm[UP_MIN_DUR] <= dur <= prm[UP_MAX_DUR] and math.isfinite(angle)):
        out[k, 0] = start
        out[k, 1] = last
        out[k, 2] = angle
        out[k, 3] = peak
        out[k, 4] = n
        return k + 1
    return k


@njit(cache=True, inline="always")
def turn_sample(sos, z, zl, ints, prm, n, yaw, out, k):
    """``turns.TurnDetector`` for sample ``n``; returns the number of turns in ``out``.

    Low-passed yaw rate (deg/s), its integral, runs of one sign; a run closes ``merge_gap``
    samples after its last sample (a closed turn is written to ``out[k]``: start, end,
    angle, peak rate, and ``n``, the sample at which it was known). ``zl``: the low-pass
    sections' state inside ``z`` (``turn_view``).
    """
    w = sos_step(sos, zl, yaw * (180.0 / np.pi))
    before = z[TU_INT]
    ang = pole_step(1.0 / prm[UP_FS], -1.0, z, TU_INT, w)
    edge = prm[UP_EDGE]
    sg = 1 if w >= edge else (-1 if w <= -edge else 0)
    if sg == 0:
        if ints[TU_SIGN] != 0 and n - ints[TU_LAST] > prm[UP_GAP]:
            k = _turn_close(z, ints, prm, out, k, n)
        return k
    if not (ints[TU_SIGN] == sg and n - ints[TU_LAST] - 1 <= prm[UP_GAP]):
        if ints[TU_SIGN] != 0:
            k = _turn_close(z, ints, prm, out, k, n)
        ints[TU_SIGN] = sg
        ints[TU_START] = n
        z[TU_ANGLE0] = before
        z[TU_PEAK] = 0.0
    ints[TU_LAST] = n
    z[TU_ANGLE1] = ang
    if abs(w) > z[TU_PEAK]:
        z[TU_PEAK] = abs(w)
    return k


@njit(cache=True)
def turn_view(z):
    """The low-pass sections' state inside ``TurnState.z``."""
    return z[TU_LP:TU_LP + 4].reshape((2, 2))


@njit(cache=True)
def turns_block(sos, z, ints, prm, yaw, out):
    """``turn_sample`` over a block; returns the turns written to ``out``."""
    n0 = ints[TU_N_SEEN]
    zl = turn_view(z)
    k = 0
    for j in range(yaw.shape[0]):
        k = turn_sample(sos, z, zl, ints, prm, n0 + j, yaw[j], out, k)
    ints[TU_N_SEEN] = n0 + yaw.shape[0]
    return k


# ----------------------------------------------------------------------------- pipeline

W_ICD, W_LR, W_COARSE, W_FINE = 0, 1, 2, 3
"""Rows of ``pipeline_block``'s float workspace."""


@njit(cache=True)
def pipeline_block(acc, gyr, fs, proj_z, proj_a,
                   tr_sos, tr_z, tr_fast, tr_up, tr_posture, tr_ints, tr_prm,
                   ic_sos, ic_z, ic_taps_f, ic_taps_c, ic_hp, ic_coarse, ic_thr, ic_fine,
                   ic_ints, ic_prm,
                   lr_sos, lr_z, lr_taps, lr_hp, lr_right, lr_pending, lr_ints, lr_prm,
                   sp_sos1, sp_sos2, sp_z, sp_pos, sp_heading,
                   tu_sos, tu_z, tu_ints, tu_prm, acc_v_ring,
                   work, found, labelled, turns):
    """Every stage of ``pipeline.GaitPipeline`` on one block of at most ``MAX_BLOCK`` samples.

    ``work`` (4, >= ``MAX_BLOCK`` + FIR history) and ``found`` (``MAX_BLOCK``) are scratch;
    the results go to ``labelled`` (rows [ic, right?, after a transfer?]) and ``turns``
    (rows [start, end, angle, peak rate, sample at which it was known]). Returns how many
    rows of each, and ``final_until``: no IC reported later lies before it.
    """
    m = acc.shape[0]
    n0 = ic_ints[IC_N_SEEN]
    icd_buf = work[W_ICD]
    lr_buf = work[W_LR]
    n_icd = ic_hp.shape[0]
    n_lr = lr_hp.shape[0]
    ic_zs = ic_z[0:2].reshape((1, 2))
    acc_mask = acc_v_ring.shape[0] - 1
    n_turns = 0
    sp_z1, sp_z2 = spatial_views(sp_z)
    tu_zl = turn_view(tu_z)
    # every recursive filter, sample by sample
    project_start(proj_z, proj_a, acc)
    for j in range(m):
        n = n0 + j
        av, yaw, tilt, u0, u1, u2 = project(proj_z, proj_a, acc[j, 0], acc[j, 1], acc[j, 2],
                                            gyr[j, 0], gyr[j, 1], gyr[j, 2])
        transfer_sample(tr_sos, tr_z, tr_fast, tr_up, tr_prm, n, tilt, u0, u1, u2)
        acc_v_ring[n & acc_mask] = av
        icd_buf[n_icd + j] = sos_step(ic_sos, ic_zs, av)
        lr_buf[n_lr + j] = sos_step(lr_sos, lr_z, acc[j, 1])
        spatial_sample(sp_sos1, sp_sos2, sp_z, sp_z1, sp_z2, sp_pos, sp_heading, n, fs, av,
                       yaw)
        n_turns = turn_sample(tu_sos, tu_z, tu_zl, tu_ints, tu_prm, n, yaw, turns, n_turns)
    tr_ints[TR_N_SEEN] = n0 + m
    tu_ints[TU_N_SEEN] = n0 + m
    # FIR filters over the block, then the step peaks
    c_blk = work[W_COARSE, :m]
    f_blk = work[W_FINE, :m]
    fine_coarse(ic_taps_f, ic_taps_c, ic_hp, icd_buf, n0, c_blk, f_blk)
    n_found = icd_judge(c_blk, f_blk, ic_coarse, ic_thr, ic_fine, ic_z, ic_ints, ic_prm, found)
    lr_smooth(lr_taps, lr_hp, lr_buf, lr_right, lr_ints, lr_prm, m)
    # gates and sides of the ICs found
    for k in range(n_found):
        ic = found[k]
        if transfer_upright(tr_posture, tr_ints, tr_up, tr_prm, ic):
            lr_push(lr_pending, lr_ints, ic,
                    1 if transfer_fast_before(tr_fast, tr_ints, tr_prm, ic) else 0)
    n_lab = lr_pop(lr_right, lr_pending, lr_ints, lr_prm, labelled)
    final = ic_ints[IC_NEXT_EVAL] - int(ic_prm[IP_BACK]) - int(ic_prm[IP_OFF])
    if lr_ints[LR_COUNT]:
        final = min(final, lr_pending[lr_ints[LR_HEAD], 0])
    return n_lab, n_turns, final


# ----------------------------------------------------------------------------- window values


@njit(cache=True)
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:
    """NumPy's float64 sum of at most 128 values (8 accumulators, then the rest)."""
    if n < 8:
        res = -0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True)
def _pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """``a[lo:lo + n].sum()`` summed as NumPy sums float64 (pairwise).

    So the means below equal ``np.mean`` bit for bit. NumPy halves longer runs (at a
    multiple of 8) recursively; here an explicit stack does the same (numba's cache does
    not take recursive functions).
    """
    if n <= 128:
        return _block_sum(a, lo, n)
    seg_lo = np.empty(64, np.int64)
    seg_n = np.empty(64, np.int64)
    stage = np.zeros(64, np.int64)
    left = np.empty(64)
    seg_lo[0], seg_n[0], stage[0] = lo, n, 0
    sp = 1
    val = 0.0
    while sp:
        t = sp - 1
        m = seg_n[t]
        if m <= 128 or stage[t] == 2:
            val = _block_sum(a, seg_lo[t], m) if m <= 128 else left[t] + val
            sp -= 1
            if sp:  # hand the value to the parent
                p = sp - 1
                if stage[p] == 1:
                    left[p] = val
                    stage[p] = 2
                    h = m  # the parent's left half was this segment
                    seg_lo[sp], seg_n[sp], stage[sp] = seg_lo[p] + h, seg_n[p] - h, 0
                    sp += 1
            continue
        h = m // 2
        h -= h % 8
        stage[t] = 1
        seg_lo[sp], seg_n[sp], stage[sp] = seg_lo[t], h, 0
        sp += 1
    return val


@njit(cache=True)
def _mean(a: np.ndarray, lo: int, n: int) -> float:
    return _pairwise_sum(a, lo, n) / n if n else math.nan


@njit(cache=True)
def window_values(ics: np.ndarray, right: np.ndarray, step_len: np.ndarray, fs: float,
                  max_step_s: float, max_stride_s: float, buf: np.ndarray,
                  ) -> tuple[float, float, float, float, float, float, float]:
    """A window's temporal and spatial values from its bout-contiguous steps.

    (mean step time, mean stride time, cadence, stride-time CV %, step-time asymmetry %,
    mean stride length, mean stride speed), NaN where undefined: the definitions of
    ``justwalk.gait.variability`` (step and stride times, ``cadence_spm``, ``cv_pct``,
    ``step_time_asymmetry_pct``) and of the pipeline's stride lengths, equal to them bit for
    bit (NumPy's summation order), without NumPy's per-call overhead on a handful of values.
    ``buf`` is scratch of >= 8 * len(ics).
    """
    n = ics.shape[0]
    nan = math.nan
    # scratch regions: step times, strides, 120 / stride, left, right, lengths, speeds, CV
    o_st, o_sr, o_cad, o_l, o_r, o_len, o_v, o_cv = 0, n, 2 * n, 3 * n, 4 * n, 5 * n, 6 * n, 7 * n
    n_st = n_l = n_r = 0
    for k in range(1, n):
        d = (ics[k] - ics[k - 1]) / fs
        if d > 0 and d <= max_step_s:
            buf[o_st + n_st] = d
            n_st += 1
            if right[k]:
                buf[o_r + n_r] = d
                n_r += 1
            else:
                buf[o_l + n_l] = d
                n_l += 1
    n_sr = n_len = n_v = 0
    for k in range(2, n):
        d = (ics[k] - ics[k - 2]) / fs
        if d > 0 and d <= max_stride_s:
            buf[o_sr + n_sr] = d
            buf[o_cad + n_sr] = 120.0 / d
            n_sr += 1
        if d <= max_stride_s:
            sl = step_len[k] + step_len[k - 1]
            if math.isfinite(sl):
                buf[o_len + n_len] = sl
                n_len += 1
            v = sl / d
            if math.isfinite(v):
                buf[o_v + n_v] = v
                n_v += 1
    stride_mean = _mean(buf, o_sr, n_sr)
    cv = nan
    if n_sr >= 2:
        # np.std(x - x[0], ddof=1) / np.mean(x) * 100 (identical strides: exactly 0)
        first = buf[o_sr]
        for i in range(n_sr):
            buf[o_cv + i] = buf[o_sr + i] - first
        m = _mean(buf, o_cv, n_sr)
        for i in range(n_sr):
            e = buf[o_cv + i] - m
            buf[o_cv + i] = e * e
        cv = math.sqrt(_pairwise_sum(buf, o_cv, n_sr) / (n_sr - 1)) / stride_mean * 100.0
    asym = nan
    if n >= 3 and n_l and n_r:
        ml, mr = _mean(buf, o_l, n_l), _mean(buf, o_r, n_r)
        asym = abs(ml - mr) / (0.5 * (ml + mr)) * 100.0
    return (_mean(buf, o_st, n_st), stride_mean, _mean(buf, o_cad, n_sr), cv, asym,
            _mean(buf, o_len, n_len), _mean(buf, o_v, n_v))
