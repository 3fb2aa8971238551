"""Device simulator and recording replay.

Only the pure parts are re-exported here (no aiohttp import); the networked device and the
CLI entry points live in ``justwalk.simulator.device`` and ``justwalk.simulator.run``.
"""

from justwalk.simulator.gait_model import (
    GaitProfile,
    GaitTruth,
    RandomSchedule,
    Schedule,
    SyntheticRecording,
    synthesize,
)
from justwalk.simulator.replay import (
    ParticipantInfo,
    Recording,
    ReferenceBout,
    ReferenceGait,
    load_recording,
    participant_info,
)
from justwalk.simulator.truth import PatientTruth, patient_truth, read_truth, write_truth

__all__ = [
    "GaitProfile",
    "GaitTruth",
    "ParticipantInfo",
    "PatientTruth",
    "RandomSchedule",
    "Recording",
    "ReferenceBout",
    "ReferenceGait",
    "Schedule",
    "SyntheticRecording",
    "load_recording",
    "participant_info",
    "patient_truth",
    "read_truth",
    "synthesize",
    "write_truth",
]
