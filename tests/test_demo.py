"""`make demo`'s command runs end to end: its own stack, patients streamed, live results."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_the_demo_streams_patients_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUSTWALK_")}
    done = subprocess.run(
        [sys.executable, "-m", "justwalk.cli", "demo", "--duration", "20", "--patients", "4"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280, check=False)
    out = done.stdout
    assert done.returncode == 0, (out[-3000:], done.stderr[-3000:])
    written = re.search(r"Summary: (\d+) points written to InfluxDB", out)
    assert written and int(written.group(1)) > 50, out[-3000:]
    # every simulated patient walked and its steps reached InfluxDB
    rows = re.findall(r"│ (pt-\d{3}) +│ simulated +│ +(\d+) │", out)
    assert len({p for p, _ in rows}) == 4 and all(int(n) > 0 for _, n in rows), rows
    assert re.search(r"stopped: gateway \(0\), processor-0 \(0\), sink \(0\), alerts \(0\)",
                     out), out[-2000:]
    assert "stopped the broker and InfluxDB" in out
    # the clinic's records: a progress report written at the end, its path printed
    report = re.search(r"progress report of (pt-ms-001|pt-001): (\S+\.html)", out)
    assert report, out[-2000:]
    html = (tmp_path / report.group(2)).read_text()
    assert "Walking progress report" in html and report.group(1) in html
    assert "<svg" in html  # the plots
