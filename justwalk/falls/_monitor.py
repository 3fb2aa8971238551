"""Both detectors on one stream, with one serialisable state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt

from justwalk.falls._fall import FallDetector
from justwalk.falls._near_fall import NearFallDetector
from justwalk.falls._scan import DetectorState
from justwalk.falls.base import FallEvent


@dataclass
class FallMonitorState:
    """State of ``FallMonitor``: one per detector."""

    near_fall: DetectorState = field(default_factory=DetectorState)
    fall: DetectorState = field(default_factory=DetectorState)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"near_fall": self.near_fall.to_dict(), "fall": self.fall.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FallMonitorState:
        """Inverse of ``to_dict``."""
        return cls(
            near_fall=DetectorState.from_dict(d["near_fall"]),
            fall=DetectorState.from_dict(d["fall"]),
        )


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

    def initial_state(self) -> FallMonitorState:
        """State before any data."""
        return FallMonitorState(
            near_fall=self.near_fall.initial_state(), fall=self.fall.initial_state()
        )

    def process(
        self,
        state: FallMonitorState,
        samples: npt.ArrayLike,
        t0_us: int,
        sample_rate_hz: float,
    ) -> list[FallEvent]:
        """Consume one chunk (n, 6): acc m/s^2, gyr rad/s; return the events made final."""
        events = self.near_fall.process(state.near_fall, samples, t0_us, sample_rate_hz)
        events += self.fall.process(state.fall, samples, t0_us, sample_rate_hz)
        return sorted(events, key=lambda e: (e.detected_us, e.peak_us))
