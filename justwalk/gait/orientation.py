"""Vertical trunk acceleration and yaw rate from a tilted lower-back IMU, streaming.

The sensor is rarely upright on the back (the Mobile-D recordings are tilted by up to 35
degrees). The direction of gravity is estimated with a causal first-order low-pass of the
accelerometer (time constant ``gravity_tau_s``), the classic static tilt estimate
(Moe-Nilssen 1998, J Biomech 31:1229-1234, "tilt correction"). Projecting on it gives

- ``acc_v``: the dynamic vertical acceleration (specific force along gravity minus |g|), the
  input of initial-contact detection and the inverted-pendulum model;
- ``yaw``: the angular rate about the vertical (turning; positive = to the left, by the
  right-hand rule about an upward axis);
- ``tilt_rate``: the magnitude of the angular rate about horizontal axes (trunk pitch and
  roll, whatever the sensor's mounting), which ``transfers`` uses;
- ``up``: the unit vector of the estimated vertical in sensor axes (the trunk's posture).

State is the low-pass value (3 floats); feeding whole or chunked gives identical output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import signal

FloatArray = npt.NDArray[np.float64]


@dataclass
class ProjectionState:
    """Per-stream state of ``VerticalProjection``."""

    zi: list[float] = field(default_factory=list)
    """Low-pass filter delays (3 floats); empty before the first sample."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"zi": list(self.zi)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProjectionState:
        """Inverse of ``to_dict``."""
        return cls(zi=[float(v) for v in d["zi"]])


class Projected(NamedTuple):
    """One chunk projected on the estimated vertical."""

    acc_v: FloatArray
    yaw: FloatArray
    tilt_rate: FloatArray
    up: FloatArray
    """(n, 3) unit vectors."""


class VerticalProjection:
    """Projects acceleration and angular rate on the estimated vertical."""

    def __init__(self, *, gravity_tau_s: float = 1.0) -> None:
        self.gravity_tau_s = gravity_tau_s

    def initial_state(self) -> ProjectionState:
        """State before any data."""
        return ProjectionState()

    def process(self, state: ProjectionState, acc_mps2: FloatArray, gyr_radps: FloatArray,
                sample_rate_hz: float) -> Projected:
        """The projections of one chunk (SI units); ``state`` is updated in place."""
        acc = np.asarray(acc_mps2, dtype=np.float64)
        gyr = np.asarray(gyr_radps, dtype=np.float64)
        if acc.shape[0] == 0:
            return Projected(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 3)))
        a = 1.0 - np.exp(-1.0 / (self.gravity_tau_s * sample_rate_hz))
        zi = np.asarray(state.zi)[None, :] if state.zi else ((1.0 - a) * acc[0])[None, :]
        g, zf = signal.lfilter([a], [1.0, a - 1.0], acc, axis=0, zi=zi)
        state.zi = zf[0].tolist()
        norm = np.sqrt(np.einsum("ij,ij->i", g, g))
        unit = g / norm[:, None]
        acc_v = np.einsum("ij,ij->i", acc, unit) - norm
        yaw = np.einsum("ij,ij->i", gyr, unit)
        horizontal = gyr - yaw[:, None] * unit
        tilt_rate = np.sqrt(np.einsum("ij,ij->i", horizontal, horizontal))
        return Projected(acc_v, yaw, tilt_rate, unit)
