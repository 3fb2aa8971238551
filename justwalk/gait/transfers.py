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
``lowpass_hz``, causal) and rejects an IC when it exceeded ``max_rate_dps`` within the
``window_s`` before the IC. Only the past is used, so the gate adds no look-ahead and gives
the same answer however the stream is chunked. State: filter delays and a short history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal

from justwalk.gait._streaming import History, sos_run

FloatArray = npt.NDArray[np.float64]


@lru_cache(maxsize=16)
def _lowpass(cut_hz: float, fs: float) -> FloatArray:
    return signal.butter(2, cut_hz, btype="lowpass", fs=fs, output="sos")


@dataclass
class TransferState:
    """Per-stream state of ``TransferGate``."""

    lp_zi: list[list[float]] | None = None
    rate: History = field(default_factory=lambda: History(0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"lp_zi": self.lp_zi, "rate": self.rate.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransferState:
        """Inverse of ``to_dict``."""
        return cls(lp_zi=d["lp_zi"], rate=History.from_dict(d["rate"]))


class TransferGate:
    """Tells whether an IC follows a fast trunk pitch/roll; see the module docstring."""

    def __init__(self, *, max_rate_dps: float | None = 80.0, lowpass_hz: float = 1.0,
                 window_s: float = 1.5, history_s: float = 12.0) -> None:
        self.max_rate_dps = max_rate_dps
        self.lowpass_hz = lowpass_hz
        self.window_s = window_s
        self.history_s = history_s

    def initial_state(self, sample_rate_hz: float = 100.0) -> TransferState:
        """State before any data."""
        return TransferState(rate=History(round(self.history_s * sample_rate_hz)))

    def process(self, state: TransferState, tilt_rate_radps: FloatArray,
                sample_rate_hz: float) -> History:
        """Consume a chunk; return the smoothed rate history (this chunk and before)."""
        x = np.asarray(tilt_rate_radps, dtype=np.float64)
        if x.size == 0:
            return state.rate
        y, state.lp_zi = sos_run(_lowpass(self.lowpass_hz, sample_rate_hz), x, state.lp_zi)
        return state.rate.extend(y)

    def accept(self, rate: History, ic: int, sample_rate_hz: float) -> bool:
        """False if the trunk turned faster than ``max_rate_dps`` just before ``ic``."""
        if self.max_rate_dps is None:
            return True
        seg = rate.slice(ic - round(self.window_s * sample_rate_hz), ic + 1)
        return seg.size == 0 or float(seg.max()) <= math.radians(self.max_rate_dps)
