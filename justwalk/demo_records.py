"""The demo's clinic records: its patients in a database of its own, and a progress report.

``prepare_database`` makes a SQLite database in the demo's run folder (migrated with the
project's Alembic migrations), adds the demo clinic and its patients with their sensor
heights (the processor reads them from there) and one prescription. ``write_report``
rolls up the day's data in InfluxDB (``schema.backfill_statements``: the continuous
queries only run at the end of each period) and writes one patient's progress report for
today (``justwalk.report``) as HTML, and as PDF when Chromium is installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from justwalk.config import Settings
from justwalk.schema import backfill_statements, clinic_database

GUIDED_WALK = {"session_type": "guided_walk", "duration_s": 600, "times_per_week": 5,
               "pace": "comfortable", "cadence_band_spm": [95, 110]}
"""The prescription every demo patient gets (the issue's example)."""
TWO_MWT = {"session_type": "2mwt", "times_per_week": 1}
"""The walk test prescribed to the patients in ``prepare_database``'s ``walk_tests``."""


def prepare_database(settings: Settings, run_dir: Path, clinic_id: str,
                     patient_ids: Iterable[str], sensor_heights_m: Mapping[str, float], *,
                     walk_tests: Iterable[str] = (),
                     ) -> tuple[Settings, dict[str, dict[str, int]]]:
    """A migrated SQLite database with the clinic and patients; ``settings`` pointing at it.

    Patients without a sensor height get the default, as the simulator assumes. Returns
    also each patient's prescription ids by session type (``walk_tests`` get a 2MWT too).
    """
    from justwalk.db import Repository
    from justwalk.db.engine import create, upgrade

    url = f"sqlite:///{(run_dir / 'justwalk.sqlite3').resolve()}"
    engine = create(url)
    try:
        upgrade(engine)
        repo = Repository(engine)
        repo.add_clinic(clinic_id)
        tests = set(walk_tests)
        prescribed: dict[str, dict[str, int]] = {}
        for patient_id in sorted(patient_ids):
            height = sensor_heights_m.get(patient_id)
            repo.create_patient(clinic_id, patient_id,
                                {} if height is None else {"sensor_height_m": height})
            for rx in [GUIDED_WALK, TWO_MWT] if patient_id in tests else [GUIDED_WALK]:
                made = repo.create_prescription(clinic_id, patient_id, rx)
                prescribed.setdefault(patient_id, {})[str(rx["session_type"])] = int(
                    made["prescription_id"])
    finally:
        engine.dispose()
    return settings.replace(database_url=url), prescribed


async def write_report(settings: Settings, clinic_id: str, patient_id: str,
                       run_dir: Path) -> list[Path]:
    """Today's report of ``patient_id`` (HTML, and PDF if Chromium is there); the files."""
    from justwalk.db import open_repository
    from justwalk.report.browser import BrowserError, find_chromium, html_to_pdf
    from justwalk.report.data import Period
    from justwalk.report.gather import gather
    from justwalk.report.render import render_html
    from sinks.influx import InfluxClient

    today = datetime.now(UTC).date()
    start = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    db = clinic_database(settings.influx_db, clinic_id)
    async with InfluxClient(settings.influx_url, db, username=settings.influx_username,
                            password=settings.influx_password) as client:
        for statement in backfill_statements(db, start, start + timedelta(days=1)):
            await client.query(statement)
    repo = open_repository(settings)
    try:
        data = await gather(settings, repo, clinic_id, patient_id,
                            Period.parse(today.isoformat(), today.isoformat()))
    finally:
        repo.engine.dispose()
    html = render_html(data)
    out = [run_dir / f"report-{patient_id}.html"]
    out[0].write_text(html, encoding="utf-8")
    try:
        if find_chromium(settings.chromium_binary) is not None:
            pdf = run_dir / f"report-{patient_id}.pdf"
            pdf.write_bytes(await html_to_pdf(html, chromium_binary=settings.chromium_binary))
            out.append(pdf)
    except BrowserError:
        pass  # the HTML is the report; the PDF is a print of it
    return out
