"""Near-fall and fall detection core: plain numpy/scipy, no I/O, explicit serialisable state.

``FallMonitor`` is a reducer in the Quix Streams sense: ``initial_state()`` gives a state,
``process(state, samples, t0_us, sample_rate_hz, steps_us)`` consumes one chunk of
lower-back IMU samples in the wire convention (``justwalk.wire``: x up, y right, z forward;
m/s^2, rad/s) with the device times of the steps the gait pipeline released for the same
chunk, and returns the events that became final; ``flush(state)`` judges what it can when
the data ends. The state round-trips exactly through ``to_dict``/``from_dict``. Feeding a
recording whole or in chunks of any size gives the same events. Methods and references are
in ``_near_fall`` and ``_fall``; every parameter's origin (literature, physical, or tuned by
leave-one-subject-out) is in ``README.md`` here.
"""

from justwalk.falls._fall import FallDetector, FallFeatures
from justwalk.falls._frontend import BlockFrontEnd, Blocks
from justwalk.falls._monitor import FallMonitor, FallMonitorState
from justwalk.falls._near_fall import NearFallDetector, NearFallFeatures
from justwalk.falls._scan import Candidate, CandidateDetector, DetectorState
from justwalk.falls.base import GRAVITY_MPS2, EventType, FallEvent

__all__ = [
    "GRAVITY_MPS2",
    "BlockFrontEnd",
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
