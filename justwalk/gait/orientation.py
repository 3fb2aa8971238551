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

State is the low-pass value (3 floats and a started flag); the arithmetic runs in
``_kernels.project_block`` (numba), sample by sample, so feeding whole or chunked gives
identical output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from justwalk.gait import _kernels
from justwalk.gait._rings import pack_array
from justwalk.state_format import array_from

FloatArray = npt.NDArray[np.float64]


@dataclass
class ProjectionState:
    """Per-stream state of ``VerticalProjection``: [gx, gy, gz, started] (float64)."""

    z: FloatArray = field(default_factory=lambda: np.zeros(4))

    def pack(self) -> list[Any]:
        """Msgpack-ready form."""
        return [pack_array(self.z)]

    @classmethod
    def unpack(cls, obj: list[Any]) -> ProjectionState:
        """Inverse of ``pack``."""
        return cls(array_from(obj[0], np.float64, 4, "gait projection"))


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

    def coefficient(self, sample_rate_hz: float) -> float:
        """The low-pass coefficient ``a`` of ``y += a (x - y)``."""
        return float(1.0 - np.exp(-1.0 / (self.gravity_tau_s * sample_rate_hz)))

    def process(self, state: ProjectionState, acc_mps2: npt.ArrayLike, gyr_radps: npt.ArrayLike,
                sample_rate_hz: float) -> Projected:
        """The projections of one chunk (SI units); ``state`` is updated in place."""
        acc = np.ascontiguousarray(acc_mps2, dtype=np.float64)
        gyr = np.ascontiguousarray(gyr_radps, dtype=np.float64)
        n = acc.shape[0]
        out = Projected(np.empty(n), np.empty(n), np.empty(n), np.empty((n, 3)))
        _kernels.project_block(state.z, self.coefficient(sample_rate_hz), acc, gyr, *out)
        return out
