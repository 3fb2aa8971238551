"""Both detectors on one stream, with one serialisable state and one shared front end.

The two detectors read the same block summaries (``BlockFrontEnd``: per-block maxima,
posture, steps), so the monitor computes them once per chunk, keeping the longer of the two
detectors' histories, and lets each detector judge its candidates on them
(``CandidateDetector.scan_blocks``). Each detector only reads blocks within its own
history, so the events are those of the two detectors run separately.
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
        """Inverse of ``to_dict``.

        A state saved before the front end was shared resumes from the fall detector's
        front end, which kept the longer history.
        """
        fall = DetectorState.from_dict(d["fall"])
        front = (FrontEndState.from_dict(d["front"]) if "front" in d else fall.front)
        fall.front = FrontEndState()
        near = DetectorState.from_dict(d["near_fall"])
        near.front = FrontEndState()
        return cls(near_fall=near, fall=fall, front=front)


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
    ) -> list[FallEvent]:
        """Consume one chunk (n, 6): acc m/s^2, gyr rad/s; return the events made final."""
        segment = state.front.segment
        blocks = self.front.process(state.front, samples, t0_us, sample_rate_hz)
        if state.front.segment != segment:  # a new segment started (see CandidateDetector)
            state.near_fall.next_candidate = state.fall.next_candidate = 0
        events = [c.event for c in self.near_fall.scan_blocks(state.near_fall, blocks)
                  if c.event is not None]
        events += [c.event for c in self.fall.scan_blocks(state.fall, blocks)
                   if c.event is not None]
        return sorted(events, key=lambda e: (e.detected_us, e.peak_us))

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
                                    state.front.sample_rate_hz)
        events = [c.event for c in self.fall.flush_blocks(state.fall, blocks)
                  if c.event is not None]
        return sorted(events, key=lambda e: (e.detected_us, e.peak_us))
