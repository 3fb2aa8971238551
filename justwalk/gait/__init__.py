"""Gait analysis core: plain numpy/scipy, no I/O, explicit serialisable state.

Nothing in this package may import Kafka, Faust, aiohttp or InfluxDB clients
(tests/test_gait_purity.py checks it).
"""

from justwalk.gait.cadence import WindowCadence, cadence_windows, window_cadence, window_start
from justwalk.gait.steps import StepDetectorState, StreamingStepDetector
from justwalk.gait.stream import GaitOutput, GaitStream, GaitStreamState, Step

__all__ = [
    "GaitOutput",
    "GaitStream",
    "GaitStreamState",
    "Step",
    "StepDetectorState",
    "StreamingStepDetector",
    "WindowCadence",
    "cadence_windows",
    "window_cadence",
    "window_start",
]
