"""Per-stream gait analysis: steps plus cadence per event-time window.

``GaitStream`` is a pure reducer in the Quix Streams sense: ``initial_state()`` gives a
state, ``process(state, ...)`` consumes one chunk and returns what became final, and the
state round-trips through ``to_dict``/``from_dict`` so a stream processor can persist it
and a restarted worker can resume. The same code runs on a whole recording, on chunks in a
test, and inside the Kafka processor, and gives the same answers for the same samples.

A window [start, start + W) is emitted once every step in it and the step before it are
final, i.e. when the detector's final time has passed the window's end. Windows in which
data was being received are emitted even when no step occurred (walking = False), so a
dashboard can tell "standing" from "no data".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from justwalk.gait.cadence import (
    MAX_STEP_TIME_S,
    WindowCadence,
    window_cadence,
    window_start,
)
from justwalk.gait.steps import StepDetectorState, StreamingStepDetector


@dataclass(frozen=True, slots=True)
class Step:
    """A detected step at device time ``t_us``."""

    t_us: int
    step_index: int
    step_time_s: float | None


@dataclass
class GaitStreamState:
    """All state of one device session's gait stream."""

    detector: StepDetectorState = field(default_factory=StepDetectorState)
    recent_steps_us: list[int] = field(default_factory=list)
    """Steps of the open window(s) and the one before them."""
    n_steps: int = 0
    open_window_us: int | None = None
    """Start of the oldest window not yet emitted."""
    last_end_us: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "detector": self.detector.to_dict(),
            "recent_steps_us": self.recent_steps_us,
            "n_steps": self.n_steps,
            "open_window_us": self.open_window_us,
            "last_end_us": self.last_end_us,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GaitStreamState:
        """Inverse of ``to_dict``."""
        return cls(
            detector=StepDetectorState.from_dict(d["detector"]),
            recent_steps_us=list(d["recent_steps_us"]),
            n_steps=int(d["n_steps"]),
            open_window_us=d["open_window_us"],
            last_end_us=int(d["last_end_us"]),
        )


@dataclass(frozen=True, slots=True)
class GaitOutput:
    """What one chunk made final."""

    steps: list[Step]
    windows: list[WindowCadence]


class GaitStream:
    """Steps and windowed cadence for one device session."""

    def __init__(self, *, window_s: float = 5.0, detector: StreamingStepDetector | None = None,
                 max_step_time_s: float = MAX_STEP_TIME_S) -> None:
        self.window_s = window_s
        self.detector = detector or StreamingStepDetector()
        self.max_step_time_s = max_step_time_s

    @property
    def window_us(self) -> int:
        """Window length in microseconds."""
        return round(self.window_s * 1e6)

    def initial_state(self) -> GaitStreamState:
        """State before any data."""
        return GaitStreamState(detector=self.detector.initial_state())

    def process(
        self,
        state: GaitStreamState,
        acc_mps2: npt.ArrayLike,
        t0_us: int,
        sample_rate_hz: float,
    ) -> GaitOutput:
        """Consume one chunk of acceleration (n, 3) in m/s^2; ``state`` is updated in place."""
        acc = np.asarray(acc_mps2, dtype=np.float64)
        windows: list[WindowCadence] = []
        if state.open_window_us is None:
            state.open_window_us = window_start(t0_us, self.window_us)
        elif t0_us - state.last_end_us > self.detector.max_gap_s * 1e6:
            # A gap in the data: close the windows that hold data before it, skip the
            # windows that lie wholly inside it, and forget steps older than the gap.
            while state.open_window_us < state.last_end_us:
                windows.append(self._emit(state))
            state.open_window_us = max(state.open_window_us, window_start(t0_us, self.window_us))
            state.recent_steps_us = []
        state.last_end_us = t0_us + round(acc.shape[0] * 1e6 / sample_rate_hz)
        step_times = self.detector.process(state.detector, acc, t0_us, sample_rate_hz)
        steps = []
        for t in step_times.tolist():
            prev = state.recent_steps_us[-1] if state.recent_steps_us else None
            dt = None if prev is None else (t - prev) / 1e6
            steps.append(Step(t, state.n_steps, dt if dt is not None
                              and dt <= self.max_step_time_s else None))
            state.n_steps += 1
            state.recent_steps_us.append(t)
        final_us = state.detector.final_until_us
        while state.open_window_us + self.window_us <= final_us:
            windows.append(self._emit(state))
        return GaitOutput(steps, windows)

    def _emit(self, state: GaitStreamState) -> WindowCadence:
        """Close the oldest open window and move on to the next one."""
        assert state.open_window_us is not None
        start = state.open_window_us
        result = window_cadence(np.asarray(state.recent_steps_us, dtype=np.int64), start,
                                self.window_us, max_step_time_s=self.max_step_time_s)
        state.open_window_us = start + self.window_us
        # keep the steps of the next window plus the last one before it
        recent = state.recent_steps_us
        k = int(np.searchsorted(recent, state.open_window_us, side="left"))
        state.recent_steps_us = recent[max(k - 1, 0):]
        return result
