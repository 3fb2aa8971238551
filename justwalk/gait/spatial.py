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
this model chosen by leave-one-participant-out (``justwalk.evaluation.gait.TUNING_GRID``:
3, chosen in two of three folds, 2 in the third); 0 switches the correction off.

Stride length is the sum of two consecutive step lengths, walking speed the stride length
over the stride time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal

from justwalk.gait._streaming import History, butter_sos, sos_run

FloatArray = npt.NDArray[np.float64]
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
    hp1_zi: list[list[float]] | None = None
    int1_zi: list[float] = field(default_factory=lambda: [0.0])
    hp2_zi: list[list[float]] | None = None
    int2_zi: list[float] = field(default_factory=lambda: [0.0])
    position: History = field(default_factory=lambda: History(0))
    heading_rad: float = 0.0
    """Integrated yaw rate up to the last sample seen."""
    heading: History = field(default_factory=lambda: History(0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"n_seen": self.n_seen, "hp1_zi": self.hp1_zi, "int1_zi": self.int1_zi,
                "hp2_zi": self.hp2_zi, "int2_zi": self.int2_zi,
                "position": self.position.to_dict(), "heading_rad": self.heading_rad,
                "heading": self.heading.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpatialState:
        """Inverse of ``to_dict``."""
        position = History.from_dict(d["position"])
        heading = (History.from_dict(d["heading"]) if "heading" in d
                   else History(position.max_len, position.end))
        return cls(n_seen=int(d["n_seen"]), hp1_zi=d["hp1_zi"], int1_zi=list(d["int1_zi"]),
                   hp2_zi=d["hp2_zi"], int2_zi=list(d["int2_zi"]), position=position,
                   heading_rad=float(d.get("heading_rad", 0.0)), heading=heading)


class StepLengthEstimator:
    """Vertical trunk displacement, and step length between two ICs; see module docstring."""

    def __init__(self, *, scaling_factor: float = MOBILISED_MS_SCALING,
                 acc_highpass_hz: float = 0.1, velocity_highpass_hz: float = 1.0,
                 max_step_time_s: float = 2.0, history_s: float = 12.0,
                 turn_shortening: float = 3.0, min_turn_factor: float = 0.2) -> None:
        self.scaling_factor = scaling_factor
        self.turn_shortening = turn_shortening
        self.min_turn_factor = min_turn_factor
        self.acc_highpass_hz = acc_highpass_hz
        self.velocity_highpass_hz = velocity_highpass_hz
        self.max_step_time_s = max_step_time_s
        self.history_s = history_s

    def initial_state(self, sample_rate_hz: float = 100.0) -> SpatialState:
        """State before any data."""
        n = round(self.history_s * sample_rate_hz)
        return SpatialState(position=History(n), heading=History(n))

    def process(self, state: SpatialState, acc_v_mps2: FloatArray, sample_rate_hz: float,
                yaw_radps: FloatArray | None = None) -> tuple[History, History]:
        """Consume a chunk of vertical acceleration (and yaw rate).

        Returns the vertical displacement and heading histories, each holding at least
        everything of this chunk plus ``history_s`` before it, for ``step_length_m``.
        """
        fs = sample_rate_hz
        x = np.asarray(acc_v_mps2, dtype=np.float64)
        if x.size == 0:
            return state.position, state.heading
        hp1 = butter_sos(4, self.acc_highpass_hz, "highpass", fs)
        hp2 = butter_sos(4, self.velocity_highpass_hz, "highpass", fs)
        a, state.hp1_zi = sos_run(hp1, x, state.hp1_zi)
        v, z1 = signal.lfilter([1.0 / fs], [1.0, -1.0], a, zi=state.int1_zi)
        state.int1_zi = z1.tolist()
        v, state.hp2_zi = sos_run(hp2, v, state.hp2_zi)
        p, z2 = signal.lfilter([1.0 / fs], [1.0, -1.0], v, zi=state.int2_zi)
        state.int2_zi = z2.tolist()
        state.n_seen += x.size
        yaw = np.zeros(x.size) if yaw_radps is None else np.asarray(yaw_radps, np.float64)
        # sequential sums from the carried value: identical however the stream is chunked
        psi = np.cumsum(np.concatenate(([state.heading_rad], yaw / fs)))[1:]
        state.heading_rad = float(psi[-1])
        return state.position.extend(p), state.heading.extend(psi)

    def step_length_m(self, position: History, ic_a: int, ic_b: int, sample_rate_hz: float,
                      sensor_height_m: float, heading: History | None = None,
                      stride_start: int | None = None) -> float:
        """Step length between consecutive ICs ``ic_a < ic_b`` (NaN if unavailable).

        With ``heading`` turning steps are shortened as the module docstring explains;
        ``stride_start`` is the IC before ``ic_a`` (the stride's start), ``ic_a`` if unknown.
        """
        if ic_b <= ic_a or (ic_b - ic_a) > self.max_step_time_s * sample_rate_hz:
            return math.nan
        seg = position.slice(ic_a, ic_b + 1)
        if seg.size < (ic_b - ic_a + 1):
            return math.nan
        h = float(seg.max() - seg.min())
        length = pendulum_step_length_m(h, sensor_height_m, self.scaling_factor)
        if heading is not None and self.turn_shortening > 0:
            lo = ic_a if stride_start is None or stride_start >= ic_a else stride_start
            psi = heading.slice(lo, ic_b + 1)
            if psi.size == ic_b - lo + 1:
                turn = abs(float(psi[-1] - psi[0])) * (ic_b - ic_a) / (ic_b - lo)
                length *= max(self.min_turn_factor, 1.0 - self.turn_shortening * turn / math.pi)
        return length
