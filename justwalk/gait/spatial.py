"""Streaming step length (inverted pendulum) from the vertical trunk acceleration.

Zijlstra & Hof (2003), Gait Posture 18:1-10: during single support the centre of mass moves
on an inverted pendulum of length ``l`` (here the sensor height above the ground, from the
patient profile). From the vertical excursion ``h`` of the trunk during a step the step
length is ``2 * sqrt(2 l h - h^2)``, multiplied by a correction factor ``K``. The Mobilise-D
implementation (SlZijlstra, Soltani et al. 2021, IEEE TNSRE 29:1955-1964) obtains ``h`` by
double integration of the vertical acceleration with 4th-order Butterworth high-pass filters
at 0.1 Hz (before the first integration) and 1 Hz (after it), and uses ``K = 4.587 / 4``
(optimised on people with MS) as the model's ``A`` factor; those are the defaults here.

Filters run causally (``sosfilt`` with carried state) instead of forwards-backwards; the
range max - min over one step of a periodic signal does not depend on its phase, so the
causal phase lag does not bias ``h`` much, only the filter's gain at the step frequency,
which ``scaling_factor`` absorbs.

Turning steps: the pendulum sees the vertical excursion of a step, not where the step goes.
While turning, part of each step rotates the body instead of carrying it forward, so the
forward distance the reference measures (INDIP stride length, Salis et al. 2023) is shorter
than the pendulum's; turns are a large share of daily-life steps (Glaister et al. 2007, Gait
Posture 25:289-294). On the INDIP strides of the Mobilise-D daily-life trials the uncorrected
model overestimates strides that turn by more than 45 degrees by about 45 %, straight ones
by about 7 %. The step length is therefore scaled by
``max(min_turn_factor, 1 - turn_shortening * |dpsi| / pi)``, ``dpsi`` the heading change
(integrated yaw rate) of the step: a straight step is unchanged, and with ``turn_shortening``
``k`` a step that turns the body by 180/k degrees makes no forward progress (k = 2: 90
degrees). The pelvis rotates back and forth by several degrees within every stride of
straight walking (Perry, Gait Analysis, 1992), so ``dpsi`` is the heading change over the
whole stride that ends with the step (same foot to same foot, where that rotation cancels),
prorated to the step's share of the stride. ``turn_shortening`` is the one parameter of
this model chosen by leave-one-participant-out: 2, over the 12 development participants
of issue #15 pooled (``benchmarks/gait_lopo.py``; only the 3 Mobilise-D ones have a speed
reference), where the earlier Mobilise-D-only LOPO had chosen 3; 0 switches the
correction off.

Stride length is the sum of two consecutive step lengths, walking speed the stride length
over the stride time.

State: the filters' delays, and rings of the last seconds of the vertical displacement
(float32: a step's vertical excursion is centimetres, float32 resolves it to nanometres)
and of the heading (float64, the running sum of ``yaw / fs``; only its values at initial
contacts are ever read, so a packed state keeps just those). The per-sample arithmetic runs
in ``_kernels`` (numba).
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
from justwalk.state_format import array_bytes, array_from

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
MOBILISED_MS_SCALING = 4.587 / 4


def pendulum_step_length_m(h_m: float, sensor_height_m: float, scaling_factor: float) -> float:
    """``K * 2 * sqrt(2 l h - h^2)`` (Zijlstra & Hof 2003); NaN when undefined."""
    v = 2.0 * sensor_height_m * h_m - h_m * h_m
    if not math.isfinite(v) or v <= 0:
        return math.nan
    return scaling_factor * 2.0 * math.sqrt(v)


@dataclass
class SpatialState:
    """Per-stream state of ``StepLengthEstimator``."""

    n_seen: int = 0
    z: FloatArray = field(default_factory=lambda: np.zeros(11))
    """Delays: high-pass 1 (2 sections), integrator 1, high-pass 2, integrator 2; heading."""
    position: Float32Array = field(default_factory=lambda: new_ring(1, np.float32))
    """Ring: vertical displacement (m)."""
    heading: FloatArray = field(default_factory=lambda: new_ring(1, np.float64))
    """Ring: heading (rad, integrated yaw rate)."""

    def pack(self, keep_from: int, heading_from: int, heading_at: list[int]) -> list[Any]:
        """Msgpack-ready form.

        Keeps the displacement from ``keep_from`` on, and the heading from ``heading_from``
        on and at the samples ``heading_at`` (ICs a later stride may start or end at).
        """
        n = self.n_seen
        mask = self.heading.shape[0] - 1
        at = sorted({i for i in heading_at if max(0, n - mask - 1) <= i < heading_from})
        return [n, pack_array(self.z), pack_ring(self.position, n, n - keep_from),
                pack_ring(self.heading, n, n - heading_from), at,
                array_bytes(self.heading[np.asarray(at, np.int64) & mask], np.float64)]

    @classmethod
    def unpack(cls, obj: list[Any]) -> SpatialState:
        """Inverse of ``pack``."""
        c = "gait spatial"
        n, z, position, heading, at, values = obj
        ring = unpack_ring(heading, n, np.float64, c)
        ring[np.asarray(at, np.int64) & (ring.shape[0] - 1)] = array_from(
            values, np.float64, len(at), c)
        return cls(int(n), array_from(z, np.float64, 11, c),
                   unpack_ring(position, n, np.float32, c), ring)


class StepLengthEstimator:
    """Vertical trunk displacement, and step length between two ICs; see module docstring."""

    def __init__(self, *, scaling_factor: float = MOBILISED_MS_SCALING,
                 acc_highpass_hz: float = 0.1, velocity_highpass_hz: float = 1.0,
                 max_step_time_s: float = 2.0, history_s: float = 12.0,
                 turn_shortening: float = 2.0, min_turn_factor: float = 0.2) -> None:
        self.scaling_factor = scaling_factor
        self.turn_shortening = turn_shortening
        self.min_turn_factor = min_turn_factor
        self.acc_highpass_hz = acc_highpass_hz
        self.velocity_highpass_hz = velocity_highpass_hz
        self.max_step_time_s = max_step_time_s
        self.history_s = history_s

    def filters(self, sample_rate_hz: float) -> tuple[FloatArray, FloatArray]:
        """The high-passes before the first and the second integration."""
        return (butter_sos(4, self.acc_highpass_hz, "highpass", sample_rate_hz),
                butter_sos(4, self.velocity_highpass_hz, "highpass", sample_rate_hz))

    def initial_state(self, sample_rate_hz: float = 100.0, history: int | None = None
                      ) -> SpatialState:
        """State before any data, keeping ``history`` samples (default ``history_s``)."""
        n = round(self.history_s * sample_rate_hz) if history is None else history
        return SpatialState(position=new_ring(n + MAX_BLOCK, np.float32),
                            heading=new_ring(n + MAX_BLOCK, np.float64))

    def process(self, state: SpatialState, acc_v_mps2: npt.ArrayLike, sample_rate_hz: float,
                yaw_radps: npt.ArrayLike | None = None) -> None:
        """Consume a chunk of vertical acceleration (and yaw rate)."""
        fs = sample_rate_hz
        x = np.ascontiguousarray(acc_v_mps2, dtype=np.float64)
        yaw = np.zeros(x.size) if yaw_radps is None else np.ascontiguousarray(yaw_radps,
                                                                             np.float64)
        sos1, sos2 = self.filters(fs)
        for i in range(0, x.size, MAX_BLOCK):
            _kernels.spatial_block(sos1, sos2, state.z, state.position, state.heading,
                                   state.n_seen, fs, x[i:i + MAX_BLOCK], yaw[i:i + MAX_BLOCK])
            state.n_seen += x[i:i + MAX_BLOCK].size

    def step_length_m(self, state: SpatialState, ic_a: int, ic_b: int, sample_rate_hz: float,
                      sensor_height_m: float, stride_start: int | None = None) -> float:
        """Step length between consecutive ICs ``ic_a < ic_b`` (NaN if unavailable).

        Turning steps are shortened as the module docstring explains; ``stride_start`` is
        the IC before ``ic_a`` (the stride's start), ``ic_a`` if unknown.
        """
        lo = ic_a if stride_start is None or stride_start >= ic_a else stride_start
        return float(_kernels.step_length(
            state.position, state.heading, state.n_seen, ic_a, ic_b, lo,
            self.max_step_time_s * sample_rate_hz, sensor_height_m, self.scaling_factor,
            self.turn_shortening, self.min_turn_factor))
