"""The progress report, end to end in a real headless browser (Debian's Chromium).

Real InfluxDB (the LocalStack fixture), the real database (SQLite and PostgreSQL), the real
API server on loopback. The patient's gait windows and events are written as real points
through the project's InfluxDB client (per clinic, as the sink does) and rolled up by
InfluxDB itself (the continuous queries' SELECT ... INTO, as ``justwalk rollups backfill``);
sessions, walk tests and prescriptions go in through the repository. Chromium loads the
report from the API (through a loopback proxy that adds the clinic's bearer token, as a
clinic's portal would: Chromium's command line cannot send a header), dumps the rendered
DOM and takes a screenshot; the figures in the page are compared with the values written
and with our own queries of the database and InfluxDB.
"""

from __future__ import annotations

import re
import statistics
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from justwalk.api import create_app
from justwalk.config import Settings
from justwalk.db import Repository
from justwalk.db.models import SessionStatus
from justwalk.localstack import LocalStack
from justwalk.report import browser
from justwalk.report.plots import LABELS
from justwalk.schema import (
    EVENT_FALL,
    EVENT_NEAR_FALL,
    MEASUREMENT_DAILY,
    MEASUREMENT_EVENT,
    MEASUREMENT_GAIT_WINDOW,
    backfill_statements,
    clinic_database,
    point,
)
from sinks.influx import InfluxClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PATIENT = "pt-r1"
WINDOW_S = 5.0
PLOTS_WITH_DATA = {"speed": ["speed"], "cadence": ["cadence"], "variability": ["variability"],
                   "activity": ["steps", "walking_time"],
                   "walk_tests": ["t25fw", "distance", "dwi"], "events": ["events"],
                   "adherence": ["adherence"]}


@dataclass
class Day:
    """What the test writes for one day: its walking and resting windows."""

    day: date
    cadences: list[float]
    speeds: list[float]
    cvs: list[float]
    steps: list[int]
    resting: int
    near_falls: int = 0
    falls: int = 0

    @property
    def expected(self) -> dict[str, float]:
        """The daily rollup, derived by hand from the windows."""
        return {"steps": float(sum(self.steps)),
                "walking_min": len(self.cadences) * WINDOW_S / 60,
                "cadence_mean_spm": statistics.fmean(self.cadences),
                "walking_speed_mean_mps": statistics.fmean(self.speeds),
                "stride_time_cv_mean_pct": statistics.fmean(self.cvs)}


def _days(first: date) -> list[Day]:
    out = []
    for k, offset in enumerate((1, 4, 8, 12, 16, 20, 24)):
        n = 30 + 6 * k
        cad = [104.0 - 0.8 * k + (i % 5) * 0.5 for i in range(n)]
        out.append(Day(first + timedelta(days=offset), cadences=cad,
                       speeds=[0.98 - 0.015 * k + (i % 3) * 0.01 for i in range(n)],
                       cvs=[3.5 + 0.2 * k + (i % 4) * 0.1 for i in range(n)],
                       steps=[round(c * WINDOW_S / 60) for c in cad], resting=12,
                       near_falls=2 if k == 2 else 0, falls=1 if k == 5 else 0))
    return out


def _lines(clinic: str, days: list[Day]) -> str:
    tags = {"clinic_id": clinic, "patient_id": PATIENT, "device_id": "dev-r1"}
    lines = []
    for d in days:
        t0 = datetime.combine(d.day, time(9), tzinfo=UTC)
        us = int(t0.timestamp() * 1e6)
        step_us = int(WINDOW_S * 1e6)
        for i, (cad, v, cv, n) in enumerate(zip(d.cadences, d.speeds, d.cvs, d.steps,
                                                strict=True)):
            lines.append(point(MEASUREMENT_GAIT_WINDOW, tags, {
                "session_id": "s1", "window_s": WINDOW_S, "n_steps": n, "walking": True,
                "cadence_spm": cad, "walking_speed_mps": v, "stride_time_cv_pct": cv},
                us + i * step_us))
        for j in range(d.resting):
            lines.append(point(MEASUREMENT_GAIT_WINDOW, tags, {
                "session_id": "s1", "window_s": WINDOW_S, "n_steps": 0, "walking": False},
                us + (len(d.cadences) + j) * step_us))
        for j in range(d.near_falls + d.falls):
            kind = EVENT_NEAR_FALL if j < d.near_falls else EVENT_FALL
            lines.append(point(MEASUREMENT_EVENT, tags, {
                "session_id": "s1", "event_type": kind, "duration_s": 1.5,
                "peak_acc_mps2": 21.0, "confidence": 0.9}, us + (3600 + 60 * j) * 1_000_000))
    return "\n".join(lines)


async def _fill_influx(settings: Settings, days: list[Day], period: tuple[date, date]) -> None:
    start = datetime.combine(period[0], time(), tzinfo=UTC)
    end = datetime.combine(period[1] + timedelta(days=1), time(), tzinfo=UTC)
    async with InfluxClient(settings.influx_url, settings.influx_db, per_clinic=True) as sink:
        await sink.write_lines(_lines("clinic-a", days), retention_policy=None)
        # A point labelled for clinic-b (another clinic's database) naming the same patient:
        # a report of clinic-a's patient must never read it.
        stray = point(MEASUREMENT_DAILY, {"clinic_id": "clinic-b", "patient_id": PATIENT},
                      {"steps": 987654}, int(datetime.combine(days[0].day, time(),
                                                              tzinfo=UTC).timestamp() * 1e6))
        await sink.write_lines(stray, retention_policy=None)
    db = clinic_database(settings.influx_db, "clinic-a")
    async with InfluxClient(settings.influx_url, db) as client:
        for statement in backfill_statements(db, start, end):
            await client.query(statement)


def _session(repo: Repository, n: int, kind: str, day: date, result: dict[str, Any], *,
             minutes: Sequence[dict[str, Any]] = (), rx: int | None = None) -> None:
    started = datetime.combine(day, time(10), tzinfo=UTC)
    s = repo.start_session("clinic-a", PATIENT, device_id="dev-r1",
                           device_session_id=f"{kind}-{n}", session_type=kind,
                           started_at=started, prescription_id=rx)
    repo.finish_session(s["session_id"], status=SessionStatus.COMPLETED,
                        ended_at=started + timedelta(seconds=result["duration_s"]),
                        result=result, minutes=list(minutes))


def _six_minutes(first_m: float, last_m: float) -> list[dict[str, Any]]:
    step = (last_m - first_m) / 5
    return [{"minute": i + 1, "distance_m": first_m + step * i, "steps": 100 - i,
             "speed_mps": (first_m + step * i) / 60, "cadence_spm": 100.0 - i}
            for i in range(6)]


def _fill_database(repo: Repository, first: date) -> None:
    repo.create_patient("clinic-a", PATIENT, {
        "sensor_height_m": 0.97, "walking_aid": "cane",
        "reference_ranges": {"walking_speed_mps": {"low": 0.8, "high": 1.2},
                             "cadence_spm": {"low": 95, "high": 112},
                             "daily_steps": {"low": 100, "high": 500}},
        "alert_thresholds": {"fatigability_dwi_pct": -15}})
    rx = repo.create_prescription("clinic-a", PATIENT, {
        "session_type": "guided_walk", "duration_s": 600, "times_per_week": 3,
        "cadence_band_spm": [95, 110], "start_date": first.isoformat()})["prescription_id"]
    for n, offset in enumerate((2, 5, 9, 11, 16, 19, 23)):
        _session(repo, n, "guided_walk", first + timedelta(days=offset), {
            "duration_s": 600.0, "distance_m": 540.0 - n, "distance_uncertainty_m": 38.0,
            "steps": 1000 + n, "mean_speed_mps": 0.9, "mean_cadence_spm": 101.5,
            "stride_time_cv_pct": 4.25, "near_falls": 0, "adherence_pct": 100.0}, rx=rx)
    for n, (offset, t25) in enumerate(((3, 8.0), (24, 9.44))):
        _session(repo, n, "t25fw", first + timedelta(days=offset), {
            "duration_s": t25, "distance_m": 7.62, "steps": 14,
            "mean_speed_mps": 7.62 / t25, "t25fw_time_s": t25})
    for n, (offset, m1, m6) in enumerate(((3, 62.0, 58.9), (24, 60.0, 49.2))):
        minutes = _six_minutes(m1, m6)
        dist = sum(m["distance_m"] for m in minutes)
        _session(repo, n, "6mwt", first + timedelta(days=offset), {
            "duration_s": 360.0, "distance_m": dist, "distance_uncertainty_m": 12.5,
            "steps": sum(m["steps"] for m in minutes), "mean_speed_mps": dist / 360,
            "mean_cadence_spm": 97.5, "stride_time_cv_pct": 4.75,
            "dwi_pct": 100 * (m6 - m1) / m1,
            "dwi_minute2_pct": 100 * (m6 - minutes[1]["distance_m"]) / minutes[1]["distance_m"],
            "fatigability": 100 * (m6 - m1) / m1 <= -15}, minutes=minutes)
    minutes = _six_minutes(61.0, 55.0)[:2]
    _session(repo, 0, "2mwt", first + timedelta(days=13), {
        "duration_s": 120.0, "distance_m": 120.2, "distance_uncertainty_m": 6.25,
        "steps": 199, "mean_speed_mps": 1.0016, "mean_cadence_spm": 99.5}, minutes=minutes)


@dataclass
class Served:
    settings: Settings
    api: str
    proxy_a: str
    proxy_b: str
    token_a: str
    token_b: str


@pytest.fixture(scope="module", autouse=True)
def _chromium() -> None:
    """Debian's chromium, installed with apt-get on a fresh machine (as root)."""
    browser.ensure_chromium()


@pytest.fixture
async def served(repo: Repository, local_stack: LocalStack) -> AsyncIterator[Served]:
    settings = local_stack.settings(Settings()).replace(
        influx_db=f"jwreport_{uuid.uuid4().hex[:8]}")
    token_a, token_b = repo.issue_token("clinic-a"), repo.issue_token("clinic-b")
    runners = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    try:
        api = await start(create_app(repo, settings))
        proxies = []
        for token in (token_a, token_b):
            proxies.append(await start(_proxy(api, token)))
        yield Served(settings, api, proxies[0], proxies[1], token_a, token_b)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def _proxy(api: str, token: str) -> web.Application:
    """A clinic's portal on loopback: passes GETs to the API with the clinic's token."""

    async def forward(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as http, http.get(
                api + request.path_qs, headers={"Authorization": f"Bearer {token}"}) as r:
            return web.Response(body=await r.read(), status=r.status,
                                content_type=r.content_type, charset=r.charset)

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    return app


def _values(dom: str, row_attr: str, key: str) -> dict[str, float | None]:
    match = re.search(rf'<tr {row_attr}="{re.escape(key)}">(.*?)</tr>', dom, re.S)
    assert match, f"no row {row_attr}={key} in the page"
    return {f: (float(v) if v else None) for f, v in
            re.findall(r'data-field="([^"]+)" data-value="([^"]*)"', match.group(1))}


def _plot(dom: str, key: str) -> str:
    match = re.search(rf'<figure class="plot" data-plot="{key}">(.*?)</figure>', dom, re.S)
    assert match, f"no plot {key} in the page"
    return match.group(1)


async def test_report_in_chromium_equals_database_and_influxdb(
        served: Served, repo: Repository, tmp_path: Path) -> None:
    settings = served.settings
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=27), today - timedelta(days=1)
    days = _days(first)
    _fill_database(repo, first)
    await _fill_influx(settings, days, (first, last))
    query = f"from={first.isoformat()}&to={last.isoformat()}"
    url = f"{served.proxy_a}/v1/patients/{PATIENT}/report?{query}"

    dom = await browser.dump_dom(url)
    shot = await browser.screenshot(url, tmp_path / "report.png", window=(1280, 2400))
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
    (tmp_path / "report-dom.html").write_text(dom)

    assert f'<strong data-field="patient_id">{PATIENT}</strong>' in dom
    assert "data-nodata" not in dom, re.findall(r'data-nodata="([^"]+)"', dom)
    # Every plot: an inline SVG with its axis labels as text.
    for key, labels in PLOTS_WITH_DATA.items():
        figure = _plot(dom, key)
        assert "<svg" in figure and "<path" in figure
        texts = set(re.findall(r"<text[^>]*>([^<]+)</text>", figure))
        for label in labels:
            assert LABELS[label] in texts, (key, label, texts)

    # Daily values: the page equals the values written (derived by hand) and our own query.
    db = clinic_database(settings.influx_db, "clinic-a")
    async with InfluxClient(settings.influx_url, db) as client:
        rows = await client.query_rows(
            f"SELECT * FROM longterm.{MEASUREMENT_DAILY} WHERE patient_id = '{PATIENT}'",
            epoch=None)
    by_day = {r["time"][:10]: r for r in rows}
    assert sorted(by_day) == [d.day.isoformat() for d in days]
    for d in days:
        page = _values(dom, "data-day", d.day.isoformat())
        for field, expected in d.expected.items():
            assert page[field] == pytest.approx(expected, rel=1e-9), (d.day, field)
            assert page[field] == pytest.approx(by_day[d.day.isoformat()][field], rel=1e-12)
        assert (page["near_falls"] or 0) == d.near_falls and (page["falls"] or 0) == d.falls
    assert "987654" not in dom  # clinic-b's database was not read

    # Walk tests and their per-minute values: the page equals the database.
    sessions = repo.sessions_between("clinic-a", PATIENT, datetime.combine(first, time(),
                                     tzinfo=UTC), datetime.combine(today, time(), tzinfo=UTC))
    tests = [s for s in sessions if s["session_type"] in ("t25fw", "2mwt", "6mwt")]
    assert len(tests) == 5
    for s in tests:
        page = _values(dom, "data-session", str(s["session_id"]))
        assert page, s
        for field, value in page.items():
            stored = s["result"][field]
            assert value == (None if stored is None else pytest.approx(stored, rel=1e-12)), \
                (s, field)
        for m in s["minutes"]:
            block = re.search(rf'<table data-minutes="{s["session_id"]}">(.*?)</table>', dom,
                              re.S)
            assert block
            row = _values(block.group(1), "data-minute", str(m["minute"]))
            assert row == {k: pytest.approx(m[k]) for k in row} and len(row) == 4

    # Adherence: 7 completed guided walks; 3 a week over the period's 27 days.
    page = _values(dom, "data-prescription", "1")
    assert page["done"] == 7 and page["expected"] == pytest.approx(3 * 27 / 7)

    # Plain-language notes.
    assert "T25FW 18 % slower than on" in dom
    assert "not yet a clinically meaningful change" in dom
    assert "walking-related fatigability (threshold DWI" in dom
    assert "2 near-falls and 1 fall detected in the period" in dom

    # The PDF (same HTML printed by Chromium) and the clinic isolation, bad dates.
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {served.token_a}"}
        base = f"{served.api}/v1/patients/{PATIENT}"
        async with http.get(f"{base}/report.pdf?{query}", headers=auth) as r:
            pdf = await r.read()
            assert r.status == 200 and r.content_type == "application/pdf"
            assert pdf.startswith(b"%PDF-") and len(pdf) > 20_000
        async with http.get(f"{base}/report?{query}&format=pdf", headers=auth) as r:
            assert r.status == 200 and (await r.read()).startswith(b"%PDF-")
        other = {"Authorization": f"Bearer {served.token_b}"}
        async with http.get(f"{base}/report?{query}", headers=other) as r:
            assert r.status == 404 and "no patient" in (await r.json())["error"]
        for bad, message in ((f"from={first}&to=2026-02-30", "is not a date"),
                             (f"from={last}&to={first}", "is after to"),
                             (f"to={last}", "from: missing"),
                             ("from=2020-01-01&to=2026-01-01", "at most 731"),
                             (f"{query}&format=docx", "format:")):
            async with http.get(f"{base}/report?{bad}", headers=auth) as r:
                assert r.status == 400 and message in (await r.json())["error"], bad
    status = await _status(f"{served.proxy_b}/v1/patients/{PATIENT}/report?{query}")
    assert status == 404


async def _status(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status


async def test_missing_measurements_read_as_no_data(served: Served, repo: Repository) -> None:
    repo.create_patient("clinic-b", "pt-empty", {})
    dom = await browser.dump_dom(
        f"{served.proxy_b}/v1/patients/pt-empty/report?from=2026-01-05&to=2026-02-01")
    nodata = set(re.findall(r'data-nodata="([^"]+)"', dom))
    assert {"speed", "cadence", "variability", "activity", "events", "walk_tests", "t25fw",
            "2mwt", "6mwt", "daily", "notes"} <= nodata
    assert "the measurement patient_daily" in dom and "does not exist yet" in dom


async def test_the_pdf_is_printed_by_the_configured_chromium(served: Served,
                                                              repo: Repository) -> None:
    """``chromium_binary`` (the image sets ``JUSTWALK_CHROMIUM_BINARY=/usr/bin/chromium``)
    picks the browser; one that is not there is a 503 naming the setting."""
    repo.create_patient("clinic-a", "pt-pdf", {})
    found = browser.find_chromium()
    assert found is not None
    url = "/v1/patients/pt-pdf/report.pdf?from=2026-01-05&to=2026-01-11"
    auth = {"Authorization": f"Bearer {served.token_a}"}
    for binary, status in ((str(found.resolve()), 200), ("/nonexistent/chromium", 503)):
        runner = web.AppRunner(create_app(repo, served.settings.replace(chromium_binary=binary)),
                               access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            async with aiohttp.ClientSession() as http, http.get(base + url,
                                                                  headers=auth) as r:
                body = await r.read()
                assert r.status == status, (binary, body[:300])
                if status == 200:
                    assert body.startswith(b"%PDF-")
                else:
                    assert b"chromium_binary '/nonexistent/chromium' is not an executable" \
                        in body
        finally:
            await runner.cleanup()


def test_the_cli_writes_html_and_pdf(repo: Repository, local_stack: LocalStack,
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from justwalk.cli import main

    settings = local_stack.settings(Settings()).replace(
        influx_db=f"jwreport_{uuid.uuid4().hex[:8]}")
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=27), today - timedelta(days=1)
    days = _days(first)
    _fill_database(repo, first)
    asyncio.run(_fill_influx(settings, days, (first, last)))
    env = {"JUSTWALK_DATABASE_URL": repo.engine.url.render_as_string(hide_password=False),
           "JUSTWALK_INFLUX_URL": settings.influx_url, "JUSTWALK_INFLUX_DB": settings.influx_db}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    period = ["--from", first.isoformat(), "--to", last.isoformat()]
    assert main(["report", PATIENT, *period, "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    d = days[3]
    row = _values(page, "data-day", d.day.isoformat())
    assert row["steps"] == sum(d.steps) and "T25FW 18 % slower" in page
    assert main(["report", PATIENT, *period, "--out", str(tmp_path / "r.pdf")]) == 0
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF-")
    assert main(["report", "pt-nobody", *period, "--out", str(tmp_path / "x.html")]) == 2
    assert main(["report", PATIENT, "--from", "2026-02-30", "--to", last.isoformat(),
                 "--out", str(tmp_path / "x.html")]) == 2
    assert not (tmp_path / "x.html").exists()
