"""Gait training without I/O: session types, walk-test scores and real-time feedback rules.

``TrainingCore`` runs one session (free walk, guided walk, T25FW, 2MWT, 6MWT) as a pure
reducer over the steps, fall events and device time the stream processor feeds it
(``session``); ``scores`` holds the walk-test formulas, ``feedback`` the feedback rules,
``base`` the inputs, outputs and the constants with their sources.
"""

from justwalk.training.base import (
    DWI_FATIGABILITY_PCT,
    SPEED_MAE_MPS,
    STRIDE_LENGTH_MAE_M,
    T25FW_DISTANCE_M,
    T25FW_MEANINGFUL_CHANGE_PCT,
    Feedback,
    MinuteValues,
    Plan,
    SessionKind,
    Status,
    Step,
    WalkResult,
    metronome_tempo,
)
from justwalk.training.session import TrainingCore, TrainingOutput, TrainingState

__all__ = ["DWI_FATIGABILITY_PCT", "SPEED_MAE_MPS", "STRIDE_LENGTH_MAE_M", "T25FW_DISTANCE_M",
           "T25FW_MEANINGFUL_CHANGE_PCT", "Feedback", "MinuteValues", "Plan", "SessionKind",
           "Status", "Step", "TrainingCore", "TrainingOutput", "TrainingState", "WalkResult",
           "metronome_tempo"]
