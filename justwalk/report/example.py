"""A synthetic-but-realistic report, for the docs (``justwalk report --example``).

One pseudonymous patient with MS over 12 weeks: walking speed and cadence drifting down a
little, stride-time variability up, a few near-falls and one fall, a guided-walk
prescription done most weeks, and monthly walk tests: the T25FW getting slower (18 % over
the period, not yet the 20 % that is clinically meaningful) and 6-Minute Walk Tests whose
last one shows walking-related fatigability. The values are drawn from a seeded generator,
so the example is the same every time; none of it is a real patient.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np

from justwalk.report.data import Day, Period, ReportData

PATIENT_ID = "pt-demo-07"
CLINIC_ID = "clinic-demo"
FIRST = date(2026, 9, 7)
DAYS = 84


def _session(sid: int, kind: str, day: date, hour: int, result: dict[str, Any],
             minutes: list[dict[str, Any]] | None = None, rx: int | None = None,
             status: str = "completed") -> dict[str, Any]:
    start = datetime.combine(day, time(hour), tzinfo=UTC)
    full = {"duration_s": 0.0, "distance_m": None, "distance_uncertainty_m": None, "steps": 0,
            "mean_speed_mps": None, "mean_cadence_spm": None, "stride_time_cv_pct": None,
            "near_falls": 0, "adherence_pct": None, "t25fw_time_s": None, "dwi_pct": None,
            "dwi_minute2_pct": None, "fatigability": None, **result}
    return {"session_id": sid, "patient_id": PATIENT_ID, "prescription_id": rx,
            "session_type": kind, "device_id": "dev-demo-07", "device_session_id": f"s{sid}",
            "status": status, "started_at": start.isoformat(),
            "ended_at": (start + timedelta(seconds=full["duration_s"])).isoformat(),
            "course_length_m": None, "result": full, "minutes": minutes or []}


def _six_minutes(rng: np.random.Generator, speed: float, decline: float) -> list[dict[str, Any]]:
    rows = []
    for minute in range(1, 7):
        v = speed * (1 - decline * (minute - 1) / 5) + rng.normal(0, 0.01)
        cadence = 100 * v / speed * 1.02 + rng.normal(0, 0.8)
        rows.append({"minute": minute, "distance_m": round(v * 60, 1),
                     "steps": round(cadence), "speed_mps": round(v, 3),
                     "cadence_spm": round(cadence, 1)})
    return rows


def example_data() -> ReportData:
    """The example report's data."""
    rng = np.random.default_rng(7)
    period = Period.of(FIRST, FIRST + timedelta(days=DAYS - 1))
    daily = []
    for i in range(DAYS):
        day = FIRST + timedelta(days=i)
        if i in (23, 24, 61):  # device not worn
            continue
        trend = i / DAYS
        weekend = day.weekday() >= 5
        steps = int(rng.normal(4300 if weekend else 5200, 700) * (1 - 0.12 * trend))
        near = int(rng.random() < 0.06 + 0.05 * trend)
        daily.append(Day(
            day=day, steps=max(steps, 800), walking_min=round(steps / 98.0, 1),
            walking_speed_mean_mps=round(0.93 - 0.07 * trend + rng.normal(0, 0.025), 3),
            cadence_mean_spm=round(101 - 3.5 * trend + rng.normal(0, 1.6), 2),
            stride_time_cv_mean_pct=round(4.1 + 1.2 * trend + rng.normal(0, 0.35), 2),
            near_falls=near, falls=1 if i == 66 else 0))
    prescriptions = [{
        "prescription_id": 3, "patient_id": PATIENT_ID, "session_type": "guided_walk",
        "pace": "comfortable", "duration_s": 600.0, "target_distance_m": None,
        "times_per_week": 4, "cadence_band_spm": [95.0, 110.0],
        "start_date": FIRST.isoformat(), "end_date": None, "active": True,
        "therapist_note": "", "feedback_cadence_cue": True, "feedback_metronome_spm": 100.0,
        "feedback_rest_suggestion": True, "feedback_progress_every_s": 60.0,
        "created_at": "", "updated_at": ""}]
    sessions: list[dict[str, Any]] = []
    sid = 100
    for i in range(DAYS):
        day = FIRST + timedelta(days=i)
        if day.weekday() in (0, 2, 4, 5) and rng.random() < 0.8 - 0.25 * (i / DAYS):
            sid += 1
            speed = 0.95 - 0.06 * i / DAYS
            sessions.append(_session(sid, "guided_walk", day, 10, {
                "duration_s": 600.0, "distance_m": round(speed * 560, 1),
                "distance_uncertainty_m": round(speed * 560 * 0.07, 1),
                "steps": int(1010 - 30 * i / DAYS), "mean_speed_mps": round(speed, 3),
                "mean_cadence_spm": 101.0, "stride_time_cv_pct": 4.4,
                "adherence_pct": 100.0}, rx=3))
    for k, (t25, speed6, decline) in enumerate(((8.1, 1.02, 0.08), (8.7, 0.99, 0.12),
                                                 (9.55, 0.95, 0.19))):
        day = FIRST + timedelta(days=2 + 38 * k + (k == 2) * 3)
        sid += 1
        sessions.append(_session(sid, "t25fw", day, 9, {
            "duration_s": t25, "distance_m": 7.62, "distance_uncertainty_m": 0.0,
            "steps": 14, "mean_speed_mps": round(7.62 / t25, 3), "t25fw_time_s": t25}))
        minutes = _six_minutes(rng, speed6, decline)
        dist = sum(r["distance_m"] for r in minutes)
        first, second, last = (minutes[0]["distance_m"], minutes[1]["distance_m"],
                               minutes[-1]["distance_m"])
        dwi = 100 * (last - first) / first
        sid += 1
        sessions.append(_session(sid, "6mwt", day, 9 + 1, {
            "duration_s": 360.0, "distance_m": round(dist, 1),
            "distance_uncertainty_m": round(0.035 * dist + 2.0, 1),
            "steps": sum(r["steps"] for r in minutes),
            "mean_speed_mps": round(dist / 360, 3),
            "mean_cadence_spm": round(sum(r["cadence_spm"] for r in minutes) / 6, 1),
            "stride_time_cv_pct": round(4.0 + 1.5 * k, 1),
            "dwi_pct": round(dwi, 1),
            "dwi_minute2_pct": round(100 * (last - second) / second, 1),
            "fatigability": dwi <= -15.0}, minutes=minutes))
        if k == 1:
            sid += 1
            two = minutes[:2]
            d2 = sum(r["distance_m"] for r in two)
            sessions.append(_session(sid, "2mwt", day + timedelta(days=14), 11, {
                "duration_s": 120.0, "distance_m": round(d2, 1),
                "distance_uncertainty_m": round(0.035 * d2 + 2.0, 1),
                "steps": sum(r["steps"] for r in two), "mean_speed_mps": round(d2 / 120, 3),
                "mean_cadence_spm": round((two[0]["cadence_spm"] + two[1]["cadence_spm"]) / 2,
                                          1)}, minutes=two))
    sessions.sort(key=lambda s: s["started_at"])
    patient = {
        "patient_id": PATIENT_ID, "clinic_id": CLINIC_ID, "sensor_height_m": 0.97,
        "walking_aid": "cane",
        "reference_ranges": {"walking_speed_mps": {"low": 0.85, "high": 1.1},
                             "cadence_spm": {"low": 95.0, "high": 110.0},
                             "stride_time_cv_pct": {"low": 2.0, "high": 5.0},
                             "daily_steps": {"low": 4000.0, "high": 8000.0},
                             "t25fw_s": {"low": 6.0, "high": 9.0}},
        "alert_thresholds": {"min_daily_steps": 3000.0, "fatigability_dwi_pct": -15.0},
        "created_at": "", "updated_at": ""}
    generated = datetime.combine(period.last + timedelta(days=1), time(8), tzinfo=UTC)
    assert not math.isnan(daily[0].walking_speed_mean_mps or math.nan)
    return ReportData(patient=patient, period=period, generated_at=generated,
                      prescriptions=prescriptions, sessions=sessions, daily=daily)
