"""The gait package: the window cadence definition, and no I/O in the maths.

(The first milestone's simple step detector and ``GaitStream`` are gone: the validated
``GaitPipeline`` is the one step path; its tests are in test_gait_algorithms.py,
test_gait_state.py and test_gait_regression.py.)
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from justwalk.gait import cadence_windows, window_cadence


def test_window_cadence_definition_by_hand():
    # steps every 0.5 s from t=0 to 10 s -> 120 steps/min in each 5 s window
    steps = np.arange(0, 10.01, 0.5) * 1e6
    w = window_cadence(steps, 5_000_000, 5_000_000)
    assert w.walking and w.cadence_spm == pytest.approx(120)
    assert w.n_steps == 10
    # a 3 s pause inside the window is left out of the cadence
    steps = np.array([0, 0.5, 1.0, 1.5, 4.5, 5.0, 5.5]) * 1e6
    w = window_cadence(steps, 0, 10_000_000)
    assert w.cadence_spm == pytest.approx(120)
    # too few intervals -> not walking
    assert not window_cadence(np.array([0, 0.5e6]), 0, 5_000_000).walking
    ws = cadence_windows(np.round(np.arange(0, 20, 0.6) * 1e6), 0, 19_999_999, 5_000_000)
    assert [round(w.cadence_spm, 6) for w in ws] == [100.0] * 4


def test_gait_package_imports_no_io_library():
    code = (
        "import sys, justwalk.gait;"
        "bad = [m for m in ('aiokafka', 'faust', 'aiohttp', 'sinks', 'ingest',"
        " 'asyncio', 'http.client', 'urllib3', 'requests') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
