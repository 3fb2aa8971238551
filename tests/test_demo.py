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
    env["COLUMNS"] = "220"  # the table's rows on one line each
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
    # two devices run training sessions under their prescriptions; the feedback the
    # guided walker's device received is in the table
    assert "guided walk" in out and "2-Minute" in out
    assert re.search(r"(cadence_cue|progress|safety|fatigue): ", out), out[-3000:]
    # the clinic's records: the training patients' progress reports, their paths printed
    reports = re.findall(r"progress report of (pt-00[12]): (\S+\.html)", out)
    assert [p for p, _ in reports] == ["pt-001", "pt-002"], out[-2000:]
    html = (tmp_path / reports[0][1]).read_text()
    assert "Walking progress report" in html and "pt-001" in html
    assert "<svg" in html  # the plots
    assert "guided_walk" in html  # its prescription and session
