"""Streaming turn detection from the yaw rate (angular rate about the vertical).

El-Gohary et al. (2014), Sensors 14:356-369, as used by Mobilise-D (TdElGohary): the yaw
rate is low-passed (``lowpass_hz``, 4th-order Butterworth, causal here); a turn is a run of
samples with ``|yaw| >= edge_dps`` of one sign whose peak reaches ``peak_dps``, whose total
angle is at least ``min_angle_deg`` and whose duration lies within
[``min_duration_s``, ``max_duration_s``]. Runs of the same direction separated by less
than ``merge_gap_s`` are merged before these checks.

A turn is reported when its run ends (plus ``merge_gap_s``): the look-ahead of a turn's
verdict is ``merge_gap_s`` after its last sample. Angles are positive to the left
(counter-clockwise seen from above).

State: the filters' delays and the open run (a few numbers); the per-sample arithmetic runs
in ``_kernels.turns_block`` (numba).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from justwalk.gait import _kernels
from justwalk.gait._kernels import MAX_BLOCK
from justwalk.gait._rings import butter_sos, pack_array
from justwalk.state_format import array_from

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn; sample indices of the stream."""

    start: int
    end: int
    angle_deg: float
    peak_rate_dps: float

    def duration_s(self, fs: float) -> float:
        """Duration in seconds."""
        return (self.end - self.start + 1) / fs


@dataclass
class TurnState:
    """Per-stream state of ``TurnDetector``."""

    z: FloatArray = field(default_factory=lambda: np.zeros(8))
    """Low-pass delays (2 sections), integrated angle, the open run's angle before its first
    and at its last sample, its peak rate."""
    ints: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(4, np.int64))
    """[samples seen, sign of the open run (0: none), its first and last sample]."""

    def pack(self) -> list[Any]:
        """Msgpack-ready form."""
        return [pack_array(self.z), pack_array(self.ints)]

    @classmethod
    def unpack(cls, obj: list[Any]) -> TurnState:
        """Inverse of ``pack``."""
        return cls(array_from(obj[0], np.float64, 8, "gait turns"),
                   array_from(obj[1], np.int64, 4, "gait turns"))


class TurnDetector:
    """Turns from the yaw rate; see the module docstring."""

    def __init__(self, *, lowpass_hz: float = 1.5, edge_dps: float = 5.0, peak_dps: float = 15.0,
                 min_angle_deg: float = 45.0, min_duration_s: float = 0.5,
                 max_duration_s: float = 10.0, merge_gap_s: float = 0.25) -> None:
        self.lowpass_hz = lowpass_hz
        self.edge_dps = edge_dps
        self.peak_dps = peak_dps
        self.min_angle_deg = min_angle_deg
        self.min_duration_s = min_duration_s
        self.max_duration_s = max_duration_s
        self.merge_gap_s = merge_gap_s

    def initial_state(self) -> TurnState:
        """State before any data."""
        return TurnState()

    def params(self, sample_rate_hz: float) -> FloatArray:
        """The parameter vector of ``_kernels.turns_block``."""
        p = np.zeros(7)
        p[_kernels.UP_EDGE] = self.edge_dps
        p[_kernels.UP_PEAK] = self.peak_dps
        p[_kernels.UP_MIN_ANGLE] = self.min_angle_deg
        p[_kernels.UP_MIN_DUR] = self.min_duration_s
        p[_kernels.UP_MAX_DUR] = self.max_duration_s
        p[_kernels.UP_GAP] = round(self.merge_gap_s * sample_rate_hz)
        p[_kernels.UP_FS] = sample_rate_hz
        return p

    def sos(self, sample_rate_hz: float) -> FloatArray:
        """The yaw rate's low-pass."""
        return butter_sos(4, self.lowpass_hz, "lowpass", sample_rate_hz)

    def process(self, state: TurnState, yaw_radps: npt.ArrayLike, sample_rate_hz: float
                ) -> list[Turn]:
        """Consume a chunk of yaw rate; return turns that ended."""
        x = np.ascontiguousarray(yaw_radps, dtype=np.float64)
        sos, prm = self.sos(sample_rate_hz), self.params(sample_rate_hz)
        out: list[Turn] = []
        for i in range(0, x.size, MAX_BLOCK):
            blk = x[i:i + MAX_BLOCK]
            rows = np.empty((blk.size + 1, 5))
            k = _kernels.turns_block(sos, state.z, state.ints, prm, blk, rows)
            out += turns_from_rows(rows[:k])
        return out


def turns_from_rows(rows: FloatArray) -> list[Turn]:
    """``Turn`` objects from the kernels' rows [start, end, angle, peak rate, known at]."""
    return [Turn(int(r[0]), int(r[1]), float(r[2]), float(r[3])) for r in rows]
