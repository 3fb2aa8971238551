"""Postural transitions: initial contacts during them are not walking steps.

Standing up, sitting down, bending to pick something up or reaching make the trunk pitch or
roll quickly, and the heel-strike-like bumps of the vertical acceleration at their end are
detected as "steps" that are no part of a walking bout (they appear as the first ICs before
the reference bouts of the Mobilise-D daily-activity trials). Walking itself rotates the
trunk about horizontal axes only slowly: sagittal and frontal trunk angular velocities stay
within a few tens of degrees per second even at fast speeds (Thorstensson et al. 1984, Acta
Physiol Scand 121:9-22; Frames et al. 2013, Gait Posture 37:63-67), whereas the trunk flexes
at 60-150 deg/s during sit-to-stand (Janssen et al. 2002, Phys Ther 82:866-879; Zijlstra et
al. 2010, Gait Posture 31:82-87 use this rotation to detect the transfer from one lower-back
sensor).

``TransferGate`` low-passes ``tilt_rate`` (``VerticalProjection``; 2nd-order Butterworth at
``lowpass_hz``, causal) and flags an IC when the rate exceeded ``max_rate_dps`` within the
``window_s`` before the IC; such an IC cannot start a walking bout (``gsd``).

It also rejects ICs made while the trunk is bent far from the person's walking posture
(picking something up, reaching into a low cupboard): the trunk's inclination changes by
only a few degrees within and between strides of walking (sagittal trunk range of motion
2-5 degrees, Thorstensson et al. 1984; larger but still < 10 degrees in older adults and
people with MS), while bending to reach the floor tilts it by 40 degrees and more. The
walking posture is learnt per person: a running mean (weight ``posture_weight``) of the
vertical's direction at ICs that continue a regular step rhythm (consecutive intervals
within ``posture_rhythm`` of each other); once ``posture_min_ics`` such ICs are known, an IC
whose vertical lies more than ``max_posture_deg`` away from it is no step; 25 degrees,
chosen by leave-one-participant-out from 20 / 25 / 30 over the 12 development
participants of issue #15 pooled (``benchmarks/gait_lopo.py``; the earlier
Mobilise-D-only choice was 20).
The decision uses only data up to the IC and is taken in IC order, so it does not depend on
chunking.

State: the low-pass filter's delays, the last seconds of the vertical's direction (float32)
and of the "faster than ``max_rate_dps``" verdict per sample (one byte; the rate itself is
only ever compared with that limit), the posture estimate (a few floats). The per-sample
arithmetic runs in ``_kernels`` (numba).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from justwalk.gait import _kernels
from justwalk.gait._kernels import MAX_BLOCK
from justwalk.gait._rings import butter_sos, new_ring, pack_array, pack_ring, unpack_ring
from justwalk.state_format import array_from

FloatArray = npt.NDArray[np.float64]

_N_INTS = 5


@dataclass
class TransferState:
    """Per-stream state of ``TransferGate``."""

    z: FloatArray = field(default_factory=lambda: np.zeros((1, 2)))
    """Low-pass filter delays."""
    fast: npt.NDArray[np.uint8] = field(default_factory=lambda: new_ring(1, np.uint8))
    """Ring: 1 where the low-passed rate exceeded ``max_rate_dps``."""
    up: npt.NDArray[np.float32] = field(default_factory=lambda: new_ring(1, np.float32, 3))
    """Ring: the vertical's unit vector (x, y, z) per sample."""
    posture: FloatArray = field(default_factory=lambda: np.zeros(3))
    """Running mean of the vertical at rhythmic ICs (not normalised)."""
    ints: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(_N_INTS, np.int64))
    """[samples seen, posture ICs learnt, how many of the last two ICs, last ICs (2)]."""

    @property
    def n_posture(self) -> int:
        """How many rhythmic ICs the posture estimate has learnt from."""
        return int(self.ints[_kernels.TR_N_POSTURE])

    def pack(self, earliest_ic: int, window: int) -> list[Any]:
        """Msgpack-ready form.

        Keeps what ICs from ``earliest_ic`` on will read: the vertical at the IC, the
        verdicts ``window`` samples before it.
        """
        n = int(self.ints[_kernels.TR_N_SEEN])
        return [pack_array(self.z), pack_ring(self.fast, n, n - earliest_ic + window),
                pack_ring(self.up, n, n - earliest_ic), pack_array(self.posture),
                pack_array(self.ints)]

    @classmethod
    def unpack(cls, obj: list[Any]) -> TransferState:
        """Inverse of ``pack``."""
        c = "gait transfers"
        z, fast, up, posture, ints = obj
        i = array_from(ints, np.int64, _N_INTS, c)
        n = int(i[_kernels.TR_N_SEEN])
        return cls(array_from(z, np.float64, (1, 2), c), unpack_ring(fast, n, np.uint8, c),
                   unpack_ring(up, n, np.float32, c, 3), array_from(posture, np.float64, 3, c),
                   i)


class TransferGate:
    """Tells whether an IC follows a fast trunk pitch/roll; see the module docstring."""

    def __init__(self, *, max_rate_dps: float | None = 80.0, lowpass_hz: float = 1.0,
                 window_s: float = 1.5, history_s: float = 3.0,
                 max_posture_deg: float | None = 25.0, posture_weight: float = 0.05,
                 posture_rhythm: float = 0.25, posture_min_ics: int = 6) -> None:
        self.max_rate_dps = max_rate_dps
        self.lowpass_hz = lowpass_hz
        self.window_s = window_s
        self.history_s = history_s
        self.max_posture_deg = max_posture_deg
        self.posture_weight = posture_weight
        self.posture_rhythm = posture_rhythm
        self.posture_min_ics = posture_min_ics

    def window_samples(self, sample_rate_hz: float) -> int:
        """How far before an IC a fast rotation makes it a transfer IC."""
        return round(self.window_s * sample_rate_hz)

    def params(self, sample_rate_hz: float) -> FloatArray:
        """The parameter vector of the kernels."""
        p = np.zeros(8)
        p[_kernels.TP_MAX_RATE] = math.radians(self.max_rate_dps or 0.0)
        p[_kernels.TP_HAS_RATE] = self.max_rate_dps is not None
        p[_kernels.TP_WINDOW] = self.window_samples(sample_rate_hz)
        p[_kernels.TP_COS_MAX] = math.cos(math.radians(self.max_posture_deg or 0.0))
        p[_kernels.TP_HAS_POSTURE] = self.max_posture_deg is not None
        p[_kernels.TP_WEIGHT] = self.posture_weight
        p[_kernels.TP_RHYTHM] = self.posture_rhythm
        p[_kernels.TP_MIN_ICS] = self.posture_min_ics
        return p

    def sos(self, sample_rate_hz: float) -> FloatArray:
        """The low-pass filter of the rate."""
        return butter_sos(2, self.lowpass_hz, "lowpass", sample_rate_hz)

    def initial_state(self, sample_rate_hz: float = 100.0, history: int | None = None,
                      ) -> TransferState:
        """State before any data, keeping ``history`` samples (default ``history_s``)."""
        n = round(self.history_s * sample_rate_hz) if history is None else history
        ints = np.zeros(_N_INTS, np.int64)
        return TransferState(fast=new_ring(n + MAX_BLOCK, np.uint8),
                             up=new_ring(n + MAX_BLOCK, np.float32, 3), ints=ints)

    def process(self, state: TransferState, tilt_rate_radps: npt.ArrayLike, up: npt.ArrayLike,
                sample_rate_hz: float) -> None:
        """Consume a chunk of the tilt rate and of the vertical's direction."""
        x = np.ascontiguousarray(tilt_rate_radps, dtype=np.float64)
        u = np.ascontiguousarray(up, dtype=np.float64)
        sos, prm = self.sos(sample_rate_hz), self.params(sample_rate_hz)
        for i in range(0, x.size, MAX_BLOCK):
            _kernels.transfer_block(sos, state.z, state.fast, state.up, state.ints, prm,
                                    x[i:i + MAX_BLOCK], u[i:i + MAX_BLOCK])

    def upright(self, state: TransferState, ic: int, sample_rate_hz: float = 100.0) -> bool:
        """Whether the trunk is near its walking posture at ``ic``; learns from rhythmic ICs.

        Call once per IC, in order.
        """
        return bool(_kernels.transfer_upright(state.posture, state.ints, state.up,
                                              self.params(sample_rate_hz), ic))

    def accept(self, state: TransferState, ic: int, sample_rate_hz: float) -> bool:
        """False if the trunk turned faster than ``max_rate_dps`` just before ``ic``."""
        return not _kernels.transfer_fast_before(state.fast, state.ints,
                                                 self.params(sample_rate_hz), ic)
