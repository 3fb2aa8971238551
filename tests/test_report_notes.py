"""The report's rules and notes on hand-made data (no I/O), and the docs' example report."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from justwalk.cli import main
from justwalk.db.inputs import InputError
from justwalk.report import measures
from justwalk.report.data import Day, Period, ReportData
from justwalk.report.example import example_data
from justwalk.report.notes import notes

ROOT = Path(__file__).resolve().parents[1]


def _data(sessions: list[dict[str, Any]], daily: list[Day] | None = None,
          thresholds: dict[str, float] | None = None) -> ReportData:
    patient = {"patient_id": "pt-1", "clinic_id": "c", "reference_ranges": {},
               "alert_thresholds": thresholds or {}}
    return ReportData(patient=patient, period=Period.of(date(2026, 1, 1), date(2026, 3, 31)),
                      generated_at=datetime(2026, 4, 1, tzinfo=UTC), prescriptions=[],
                      sessions=sessions, daily=daily or [])


def _test(kind: str, day: str, **result: Any) -> dict[str, Any]:
    return {"session_type": kind, "started_at": f"{day}T10:00:00+00:00", "result": result,
            "prescription_id": None, "status": "completed", "minutes": []}


@pytest.mark.parametrize(("first", "last", "expected"), [
    (10.0, 11.8, "T25FW 18 % slower than on 2026-01-05 (10.0 s \u2192 11.8 s on 2026-03-05); "
                 "not yet a clinically meaningful change (< 20 %)."),
    (10.0, 12.0, "T25FW 20 % slower than on 2026-01-05 (10.0 s \u2192 12.0 s on 2026-03-05); "
                 "a clinically meaningful change (\u2265 20 %)."),
    (10.0, 7.5, "T25FW 25 % faster than on 2026-01-05 (10.0 s \u2192 7.5 s on 2026-03-05); "
                "a clinically meaningful change (\u2265 20 %)."),
])
def test_t25fw_change_and_the_20_percent_rule(first: float, last: float, expected: str) -> None:
    data = _data([_test("t25fw", "2026-01-05", t25fw_time_s=first),
                  _test("t25fw", "2026-03-05", t25fw_time_s=last)])
    found = [n for n in notes(data) if n.text.startswith("T25FW")]
    assert [n.text for n in found] == [expected]
    assert found[0].attention == (last >= first * 1.2)


@pytest.mark.parametrize(("dwi", "threshold", "flagged"), [
    (-15.0, None, True), (-14.9, None, False), (-12.0, -10.0, True)])
def test_dwi_fatigability_threshold(dwi: float, threshold: float | None, flagged: bool) -> None:
    data = _data([_test("6mwt", "2026-02-01", dwi_pct=dwi)],
                 thresholds=None if threshold is None else {"fatigability_dwi_pct": threshold})
    (note,) = [n for n in notes(data) if n.text.startswith("Last 6MWT")]
    assert note.attention is flagged
    assert ("no walking-related fatigability" in note.text) is not flagged


def test_distance_change_against_its_uncertainty() -> None:
    data = _data([_test("6mwt", "2026-01-05", distance_m=400.0, distance_uncertainty_m=6.0),
                  _test("6mwt", "2026-03-05", distance_m=392.0, distance_uncertainty_m=8.0)])
    (note,) = [n for n in notes(data) if n.text.startswith("6MWT distance")]
    # sqrt(6^2 + 8^2) = 10 m > |-8 m|
    assert note.text.endswith("(-8 m, -2 %); within the measurement uncertainty (\u00b110 m).")


def test_speed_change_compares_the_first_and_last_days_with_the_error() -> None:
    days = [Day(date(2026, 1, d), walking_speed_mean_mps=v)
            for d, v in ((2, 1.0), (3, 0.9), (20, 0.8), (21, 0.7))]
    change = measures.daily_change(days, "walking_speed_mean_mps")
    assert change is not None
    assert (change.first, change.last) == (pytest.approx(0.95), pytest.approx(0.75))
    (note,) = [n for n in notes(_data([], days)) if n.text.startswith("Walking speed")]
    # -0.2 m/s against the table's speed error (about 0.1 m/s)
    assert 0.05 < measures.SPEED_ERROR_MPS < 0.2
    assert f"larger than the measurement error (\u00b1{measures.SPEED_ERROR_MPS:.2g} m/s)" \
        in note.text


@pytest.mark.parametrize(("first", "last", "message"), [
    ("2026-01-01", "2026-13-01", "to: '2026-13-01' is not a date"),
    ("2026-1-1", "2026-02-01", "from: '2026-1-1' is not a date"),
    ("2026-02-02", "2026-02-01", "is after to"),
    (None, "2026-02-01", "from: missing"),
    ("2020-01-01", "2026-01-01", "at most 731"),
])
def test_bad_periods_are_refused_with_the_reason(first: str | None, last: str,
                                                 message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        Period.parse(first, last)


def test_the_example_report_in_the_docs_is_what_the_command_makes(tmp_path: Path) -> None:
    out = tmp_path / "example.html"
    assert main(["report", "--example", "--out", str(out)]) == 0
    made = out.read_text()
    shipped = (ROOT / "docs" / "example-report.html").read_text()
    # The notes and every table are the same (plots may differ with the matplotlib version).
    tables = re.compile(r"<li[^>]*>.*?</li>|<table.*?</table>", re.S)
    assert tables.findall(made) == tables.findall(shipped)
    texts = [html.unescape(n) for n in re.findall(r"<li[^>]*>(.*?)</li>", made)]
    assert texts == [n.text for n in notes(example_data())]
    assert "T25FW 18 % slower" in texts[0] and "not yet a clinically meaningful" in texts[0]
    assert len(shipped) < 300_000
