"""Both detectors on one stream, with one serialisable state and one shared front end.

The two detectors read the same block summaries (``BlockFrontEnd``: per-block maxima,
posture) and the same steps, so the monitor computes them once per chunk, keeping the
longer of the two detectors' histories, and lets each detector judge its candidates on them
(``CandidateDetector.scan_blocks``).

Steps come from the gait pass. The stream processor runs ``GaitPipeline.process`` on a chunk
first and passes the device times of the steps it released (``[s.t_us for s in
out.steps]``) with the same chunk. The pipeline releases a step at most 2.7 s after the
contact (the bounded look-ahead of ``justwalk.gait.gsd``); only the near-fall detector reads
steps, in its walking window, which ends ``perturbation_half_s`` (>= 0.5 s) before a peak
that is judged ``lookahead_s`` (3.5 s) after it. Every step the detector reads has therefore
arrived, in the same chunk or an earlier one, before the verdict, whatever the chunking.
``FallMonitor.process`` checks this: a step older than the walking window of a block already
judged raises ``ValueError`` (the verdict could have depended on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from justwalk.falls._fall import FallDetector
from justwalk.falls._frontend import BlockFrontEnd, FrontEndState
from justwalk.falls._near_fall import NearFallDetector
from justwalk.falls._scan import DetectorState
from justwalk.falls.base import FallEvent


@dataclass
class FallMonitorState:
    """State of ``FallMonitor``: the shared front end and each detector's own state."""

    near_fall: DetectorState = field(default_factory=DetectorState)
    fall: DetectorState = field(default_factory=DetectorState)
    front: FrontEndState = field(default_factory=FrontEndState)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"near_fall": self.near_fall.to_dict(), "fall": self.fall.to_dict(),
                "front": self.front.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FallMonitorState:
        """Inverse of ``to_dict``."""
        return cls(near_fall=DetectorState.from_dict(d["near_fall"]),
                   fall=DetectorState.from_dict(d["fall"]),
                   front=FrontEndState.from_dict(d["front"]))


class FallMonitor:
    """Runs a ``NearFallDetector`` and a ``FallDetector`` on the same chunks.

    Events come out in the order they become final, sorted by ``detected_us`` within a
    chunk. The near-fall detector requires an upright trunk after the event, so a fall is
    not also reported as a near-fall.
    """

    def __init__(
        self,
        *,
        near_fall: NearFallDetector | None = None,
        fall: FallDetector | None = None,
    ) -> None:
        self.near_fall = near_fall or NearFallDetector()
        self.fall = fall or FallDetector()
        self.front = BlockFrontEnd(history_s=max(self.near_fall.history_s,
                                                 self.fall.history_s))

    def initial_state(self) -> FallMonitorState:
        """State before any data."""
        return FallMonitorState(front=self.front.initial_state())

    def process(
        self,
        state: FallMonitorState,
        samples: npt.ArrayLike,
        t0_us: int,
        sample_rate_hz: float,
        steps_us: npt.ArrayLike,
    ) -> list[FallEvent]:
        """Consume one chunk; return the events made final.

        ``samples`` (n, 6): acc m/s^2, gyr rad/s (wire axes). ``steps_us``: the device times
        (us) of the steps ``GaitPipeline.process`` released for the same chunk, increasing.
        Raises ``ValueError`` for malformed input and for a step that comes after a verdict
        that could have read it (see the module docstring).
        """
        x = np.asarray(samples, dtype=np.float64)
        steps = np.asarray(steps_us, dtype=np.int64).reshape(-1)
        new_segment = self.front.starts_segment(state.front, x.shape[0] if x.ndim else 0,
                                                t0_us, sample_rate_hz)
        if steps.size:
            self._check_steps(state, steps, new_segment)
        blocks = self.front.process(state.front, x, t0_us, sample_rate_hz, steps)
        if new_segment:  # a new segment started: block indices restart
            state.near_fall.next_candidate = state.fall.next_candidate = 0
        events = [c.event for c in self.near_fall.scan_blocks(state.near_fall, blocks)
                  if c.event is not None]
        events += [c.event for c in self.fall.scan_blocks(state.fall, blocks)
                   if c.event is not None]
        return sorted(events, key=lambda e: (e.detected_us, e.peak_us))

    def _check_steps(self, state: FallMonitorState, steps: npt.NDArray[np.int64],
                     new_segment: bool) -> None:
        """Steps must increase and come before any verdict that could have read them."""
        if (np.diff(steps) <= 0).any():
            raise ValueError("steps_us must be strictly increasing")
        front = state.front
        if new_segment:
            return
        if front.steps_us and steps[0] <= front.steps_us[-1]:
            raise ValueError(f"step at {steps[0]} us is not after the last step "
                             f"({front.steps_us[-1]} us)")
        # Blocks before next_candidate are judged: their walking windows end before this.
        b = self.front.block_samples(front.sample_rate_hz)
        closed_us = front.segment_t0_us + round(
            state.near_fall.next_candidate * b * 1e6 / front.sample_rate_hz
        ) - round(self.near_fall.perturbation_half_s * 1e6)
        late = steps[(steps >= front.segment_t0_us) & (steps < closed_us)]
        if late.size:
            raise ValueError(
                f"step at {late[0]} us came after the near-fall verdicts up to {closed_us} us "
                "that could have read it (steps must be released within "
                f"{self.max_step_delay_s:.1f} s of the contact)")

    @property
    def max_step_delay_s(self) -> float:
        """Longest delay after a contact at which its step may still arrive (s).

        The near-fall walking window ends ``perturbation_half_s`` before a peak judged
        ``lookahead_s`` after it; ``GaitPipeline`` releases steps within 2.7 s.
        """
        return self.near_fall.lookahead_s + self.near_fall.perturbation_half_s

    def flush(self, state: FallMonitorState) -> list[FallEvent]:
        """The data ended (the session's last chunk, or its device went quiet): falls now.

        A fall is decided ``lookahead_s`` (2 s) after its impact. When the data ends sooner,
        an impact with at least ``FallDetector.min_flush_after_s`` of data after it is judged
        on the posture and movement at the end of the data (``FallDetector.truncated``), so
        a fall is not lost because the device stopped. Near-falls are not judged early: they
        need the upright recovery after the event. Data that continues the same segment
        later still judges the impacts that were too recent here.
        """
        if state.front.sample_rate_hz <= 0:
            return []
        blocks = self.front.process(state.front, np.zeros((0, 6)), state.front.segment_t0_us,
                                    state.front.sample_rate_hz, ())
        events = [c.event for c in self.fall.flush_blocks(state.fall, blocks)
                  if c.event is not None]
        return sorted(events, key=lambda e: (e.detected_us, e.peak_us))
