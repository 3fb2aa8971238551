"""Gait analysis core: plain numpy/scipy, no I/O, explicit serialisable state.

``justwalk.gait.pipeline.GaitPipeline`` is the one step path: the stream processor and
``justwalk evaluate gait`` both run it. Nothing in this package may import Kafka, aiohttp
or InfluxDB clients (tests/test_gait_core.py checks it).
"""

from justwalk.gait.cadence import WindowCadence, cadence_windows, window_cadence, window_start

__all__ = [
    "WindowCadence",
    "cadence_windows",
    "window_cadence",
    "window_start",
]
