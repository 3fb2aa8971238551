"""Collect one patient's report data: the database's rows and the clinic's InfluxDB rollups.

Only the patient's own clinic is read: the repository refuses another clinic's patient
(``NotFound``), and InfluxDB is read in ``clinic_database(prefix, clinic)`` alone. A
measurement that does not exist yet, or an InfluxDB that cannot be reached, leaves the
InfluxDB sections empty ("no data", with the reason); the database's sections still render.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from justwalk.config import Settings
from justwalk.db import Repository
from justwalk.report.data import DAILY_FIELDS, Day, Period, ReportData
from justwalk.schema import DAILY, TAG_PATIENT, clinic_database
from sinks.influx import InfluxClient, InfluxError, quote_ident

_INTEGER_FIELDS = {"steps", "near_falls", "falls"}


def daily_query(period: Period) -> str:
    """InfluxQL for the patient's ``patient_daily`` points of the period ($patient bound)."""
    fields = ", ".join(quote_ident(f) for f in DAILY_FIELDS)
    return (f"SELECT {fields} FROM {DAILY.qualified} WHERE {quote_ident(TAG_PATIENT)} = "
            f"$patient AND time >= '{_rfc3339(period.start)}' "
            f"AND time < '{_rfc3339(period.end)}'")


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(row: dict[str, Any]) -> Day:
    t = datetime.fromtimestamp(int(row["time"]) / 1e9, UTC)
    values: dict[str, Any] = {}
    for name in DAILY_FIELDS:
        v = row.get(name)
        if v is not None:
            values[name] = int(v) if name in _INTEGER_FIELDS else float(v)
    return Day(day=t.date(), **values)


async def read_daily(client: InfluxClient, patient_id: str,
                     period: Period) -> tuple[list[Day], list[str]]:
    """The period's daily rollups of the patient, and the measurements found missing."""
    database = client.db
    names = await client.query_rows("SHOW MEASUREMENTS", missing_ok=True)
    if DAILY.name not in {r.get("name") for r in names}:
        return [], [f"{DAILY.name} (in {database})"]
    rows = await client.query_rows(daily_query(period), params={"patient": patient_id},
                                   missing_ok=True)
    return sorted((_day(r) for r in rows), key=lambda d: d.day), []


async def gather(settings: Settings, repository: Repository, clinic_id: str | None,
                 patient_id: str, period: Period, *,
                 now: datetime | None = None) -> ReportData:
    """The report data of ``patient_id`` (of ``clinic_id``; None: any clinic, the operator)."""
    patient = await asyncio.to_thread(repository.patient, clinic_id, patient_id)
    clinic = patient["clinic_id"]
    prescriptions = await asyncio.to_thread(repository.prescriptions, clinic, patient_id)
    sessions = await asyncio.to_thread(repository.sessions_between, clinic, patient_id,
                                       period.start, period.end)
    daily: list[Day] = []
    missing: list[str] = []
    problem: str | None = None
    async with InfluxClient(settings.influx_url, clinic_database(settings.influx_db, clinic),
                            username=settings.influx_username,
                            password=settings.influx_password) as client:
        try:
            daily, missing = await read_daily(client, patient_id, period)
        except InfluxError as exc:
            problem = f"InfluxDB could not be read: {exc.message}"
    in_period = [rx for rx in prescriptions if _overlaps(rx, period)]
    return ReportData(patient=patient, period=period, generated_at=now or datetime.now(UTC),
                      prescriptions=in_period, sessions=sessions, daily=daily,
                      influx_problem=problem, missing=missing)


def _overlaps(rx: dict[str, Any], period: Period) -> bool:
    start = rx["start_date"]
    end = rx["end_date"]
    return start <= period.last.isoformat() and (end is None or end >= period.first.isoformat())
