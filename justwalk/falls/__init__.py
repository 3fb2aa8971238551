"""Near-fall and fall detection core: plain numpy/scipy, no I/O, explicit serialisable state.

Detectors are reducers in the Quix Streams sense: ``initial_state()`` gives a state,
``process(state, samples, t0_us, sample_rate_hz)`` consumes one chunk of lower-back IMU
samples in the wire convention (``justwalk.wire``: x up, y right, z forward; m/s^2, rad/s)
and returns the events that became final, and the state round-trips exactly through
``to_dict``/``from_dict``. Feeding a recording whole or in chunks of any size gives the
same events. Methods and references are in ``_near_fall`` and ``_fall``; every parameter's
origin (literature, physical, or tuned by leave-one-subject-out) is in ``README.md`` here.
"""

from justwalk.falls._fall import FallDetector, FallFeatures
from justwalk.falls._frontend import Blocks
from justwalk.falls._monitor import FallMonitor, FallMonitorState
from justwalk.falls._near_fall import NearFallDetector, NearFallFeatures
from justwalk.falls._scan import Candidate, CandidateDetector, DetectorState
from justwalk.falls.base import GRAVITY_MPS2, EventType, FallEvent

__all__ = [
    "GRAVITY_MPS2",
    "Blocks",
    "Candidate",
    "CandidateDetector",
    "DetectorState",
    "EventType",
    "FallDetector",
    "FallEvent",
    "FallFeatures",
    "FallMonitor",
    "FallMonitorState",
    "NearFallDetector",
    "NearFallFeatures",
]
