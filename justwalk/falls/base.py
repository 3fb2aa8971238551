"""The contract of the fall core: what a detected event looks like.

Times are device-clock microseconds since the Unix epoch (event time, never wall time), as
everywhere in ``justwalk``. Physical values are SI and carry their unit in the field name.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

GRAVITY_MPS2 = 9.80665


class EventType(enum.StrEnum):
    """Kind of a detected event."""

    NEAR_FALL = "near_fall"
    """A sudden trunk perturbation during walking from which the person recovered."""
    FALL = "fall"
    """An impact followed by a lying trunk and little movement."""


@dataclass(frozen=True, slots=True)
class FallEvent:
    """One detected near-fall or fall.

    ``start_us``/``end_us`` bound the perturbation (near-fall) or the fall from its onset to
    the impact's end; ``peak_us`` is the time of the acceleration peak; ``detected_us`` is the
    device time of the last sample the decision needed (the event cannot be reported
    earlier, so ``detected_us - peak_us`` is the detection latency the algorithm imposes).
    ``confidence`` is in [0.5, 1): 0.5 at the decision thresholds, growing with the margin.
    """

    type: EventType
    start_us: int
    end_us: int
    peak_us: int
    detected_us: int
    peak_acc_mps2: float
    """Largest acceleration magnitude (specific force) during the event."""
    peak_gyr_radps: float
    """Largest angular-rate magnitude during the event."""
    trunk_tilt_before_deg: float
    """Angle between the sensor's up axis and the vertical before the event."""
    trunk_tilt_after_deg: float
    """The same angle after the event."""
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        d = asdict(self)
        d["type"] = self.type.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FallEvent:
        """Inverse of ``to_dict``."""
        return cls(**{**d, "type": EventType(d["type"])})
