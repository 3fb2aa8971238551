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
whose vertical lies more than ``max_posture_deg`` away from it is no step; 20 degrees,
chosen by leave-one-participant-out from 20 / 25 / 30 (``justwalk.evaluation.gait``).
The decision uses only data up to the IC and is taken in IC order, so it does not depend on
chunking.

State: filter delays, short histories, the posture estimate (a few floats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from justwalk.gait._streaming import History, butter_sos, sos_run

FloatArray = npt.NDArray[np.float64]



@dataclass
class TransferState:
    """Per-stream state of ``TransferGate``."""

    lp_zi: list[list[float]] | None = None
    rate: History = field(default_factory=lambda: History(0))
    up: list[History] = field(default_factory=list)
    """x, y, z of the vertical's unit vector, recent samples."""
    posture: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    """Running mean of the vertical at rhythmic ICs (not normalised)."""
    n_posture: int = 0
    last_ics: list[int] = field(default_factory=list)
    """The last two ICs seen (for the rhythm test)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"lp_zi": self.lp_zi, "rate": self.rate.to_dict(),
                "up": [h.to_dict() for h in self.up], "posture": list(self.posture),
                "n_posture": self.n_posture, "last_ics": list(self.last_ics)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransferState:
        """Inverse of ``to_dict``."""
        return cls(lp_zi=d["lp_zi"], rate=History.from_dict(d["rate"]),
                   up=[History.from_dict(h) for h in d.get("up", [])],
                   posture=[float(v) for v in d.get("posture", [0.0, 0.0, 0.0])],
                   n_posture=int(d.get("n_posture", 0)),
                   last_ics=[int(v) for v in d.get("last_ics", [])])


class TransferGate:
    """Tells whether an IC follows a fast trunk pitch/roll; see the module docstring."""

    def __init__(self, *, max_rate_dps: float | None = 80.0, lowpass_hz: float = 1.0,
                 window_s: float = 1.5, history_s: float = 3.0,
                 max_posture_deg: float | None = 20.0, posture_weight: float = 0.05,
                 posture_rhythm: float = 0.25, posture_min_ics: int = 6) -> None:
        self.max_rate_dps = max_rate_dps
        self.lowpass_hz = lowpass_hz
        self.window_s = window_s
        self.history_s = history_s
        self.max_posture_deg = max_posture_deg
        self.posture_weight = posture_weight
        self.posture_rhythm = posture_rhythm
        self.posture_min_ics = posture_min_ics

    def initial_state(self, sample_rate_hz: float = 100.0) -> TransferState:
        """State before any data."""
        n = round(self.history_s * sample_rate_hz)
        return TransferState(rate=History(n), up=[History(n) for _ in range(3)])

    def process(self, state: TransferState, tilt_rate_radps: FloatArray, up: FloatArray,
                sample_rate_hz: float) -> tuple[History, list[History]]:
        """Consume a chunk; return the smoothed rate and vertical histories (with the past)."""
        x = np.asarray(tilt_rate_radps, dtype=np.float64)
        if x.size == 0:
            return state.rate, state.up
        lp = butter_sos(2, self.lowpass_hz, "lowpass", sample_rate_hz)
        y, state.lp_zi = sos_run(lp, x, state.lp_zi)
        u = np.asarray(up, dtype=np.float64)
        return state.rate.extend(y), [h.extend(u[:, k]) for k, h in enumerate(state.up)]

    def upright(self, state: TransferState, up: list[History], ic: int) -> bool:
        """Whether the trunk is near its walking posture at ``ic``; learns from rhythmic ICs.

        Call once per IC, in order.
        """
        v = np.array([h.at(ic) for h in up])
        if not np.all(np.isfinite(v)):
            return True
        ok = True
        if self.max_posture_deg is not None and state.n_posture >= self.posture_min_ics:
            ref = np.asarray(state.posture)
            cos = float(v @ ref) / float(np.linalg.norm(ref))
            ok = cos >= math.cos(math.radians(self.max_posture_deg))
        last = state.last_ics
        if ok and len(last) == 2:
            d0, d1 = last[1] - last[0], ic - last[1]
            if d0 > 0 and abs(d1 / d0 - 1.0) <= self.posture_rhythm:
                w = self.posture_weight if state.n_posture else 1.0
                state.posture = ((1.0 - w) * np.asarray(state.posture) + w * v).tolist()
                state.n_posture += 1
        if ok:
            state.last_ics = [*last[-1:], ic]
        return ok

    def accept(self, rate: History, ic: int, sample_rate_hz: float) -> bool:
        """False if the trunk turned faster than ``max_rate_dps`` just before ``ic``."""
        if self.max_rate_dps is None:
            return True
        seg = rate.slice(ic - round(self.window_s * sample_rate_hz), ic + 1)
        return seg.size == 0 or float(seg.max()) <= math.radians(self.max_rate_dps)
