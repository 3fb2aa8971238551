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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal

from justwalk.gait._streaming import butter_sos, sos_run

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

    n_seen: int = 0
    lp_zi: list[list[float]] | None = None
    int_zi: list[float] | None = None
    run_sign: int = 0
    """Sign of the open run (0 = none)."""
    run_start: int = 0
    run_last: int = 0
    run_angle0: float = 0.0
    """Integrated angle just before the run's first sample."""
    run_angle1: float = 0.0
    """Integrated angle at the run's last sample."""
    run_peak: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TurnState:
        """Inverse of ``to_dict``."""
        return cls(**d)


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

    def process(self, state: TurnState, yaw_radps: FloatArray, sample_rate_hz: float
                ) -> list[Turn]:
        """Consume a chunk of yaw rate; return turns that ended."""
        fs = sample_rate_hz
        x = np.degrees(np.asarray(yaw_radps, dtype=np.float64))
        out: list[Turn] = []
        if x.size == 0:
            return out
        w, state.lp_zi = sos_run(butter_sos(4, self.lowpass_hz, "lowpass", fs), x, state.lp_zi)
        zi = np.asarray(state.int_zi) if state.int_zi is not None else np.zeros(1)
        ang, zf = signal.lfilter([1.0 / fs], [1.0, -1.0], w, zi=zi)
        state.int_zi = zf.tolist()
        n0 = state.n_seen
        state.n_seen += x.size
        sign = np.where(w >= self.edge_dps, 1, np.where(w <= -self.edge_dps, -1, 0))
        gap = round(self.merge_gap_s * fs)
        # walk over the runs of equal sign inside this chunk (vectorised boundaries)
        change = np.nonzero(np.diff(sign))[0] + 1
        starts = np.r_[0, change]
        ends = np.r_[change, sign.size]
        prev_angle = float(zi[0]) if zi.size else 0.0
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            sg = int(sign[s])
            if sg == 0:
                if state.run_sign != 0 and n0 + e - 1 - state.run_last > gap:
                    out.extend(self._close(state, fs))
                continue
            if state.run_sign == sg and n0 + s - state.run_last - 1 <= gap:
                pass  # continue (merge into) the open run
            else:
                if state.run_sign != 0:
                    out.extend(self._close(state, fs))
                state.run_sign = sg
                state.run_start = n0 + s
                state.run_angle0 = float(ang[s - 1]) if s > 0 else prev_angle
                state.run_peak = 0.0
            state.run_last = n0 + e - 1
            state.run_angle1 = float(ang[e - 1])
            state.run_peak = max(state.run_peak, float(np.abs(w[s:e]).max()))
        if state.run_sign != 0 and state.n_seen - 1 - state.run_last > gap:
            out.extend(self._close(state, fs))
        return out

    def _close(self, state: TurnState, fs: float) -> list[Turn]:
        turn = Turn(state.run_start, state.run_last, state.run_angle1 - state.run_angle0,
                    state.run_peak)
        state.run_sign = 0
        dur = turn.duration_s(fs)
        ok = (turn.peak_rate_dps >= self.peak_dps and abs(turn.angle_deg) >= self.min_angle_deg
              and self.min_duration_s <= dur <= self.max_duration_s
              and math.isfinite(turn.angle_deg))
        return [turn] if ok else []
