"""Rows as JSON-ready dicts: what the HTTP API returns and the CLI prints."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from justwalk.db.models import Patient, Prescription, Session, SessionMinute, SessionResult


def _time(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _day(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def patient_view(p: Patient) -> dict[str, Any]:
    """A patient profile."""
    return {
        "patient_id": p.id, "clinic_id": p.clinic_id, "sensor_height_m": p.sensor_height_m,
        "walking_aid": p.walking_aid.value, "reference_ranges": p.reference_ranges,
        "alert_thresholds": p.alert_thresholds, "created_at": _time(p.created_at),
        "updated_at": _time(p.updated_at),
    }


def prescription_view(rx: Prescription) -> dict[str, Any]:
    """A prescription, with its feedback settings."""
    band = (None if rx.cadence_low_spm is None or rx.cadence_high_spm is None
            else [rx.cadence_low_spm, rx.cadence_high_spm])
    return {
        "prescription_id": rx.id, "patient_id": rx.patient_id,
        "session_type": rx.session_type.value, "pace": rx.pace.value,
        "duration_s": rx.duration_s, "target_distance_m": rx.target_distance_m,
        "times_per_week": rx.times_per_week, "cadence_band_spm": band,
        "start_date": _day(rx.start_date), "end_date": _day(rx.end_date),
        "active": rx.active, "therapist_note": rx.therapist_note,
        "feedback_cadence_cue": rx.feedback_cadence_cue,
        "feedback_metronome_spm": rx.feedback_metronome_spm,
        "feedback_rest_suggestion": rx.feedback_rest_suggestion,
        "feedback_progress_every_s": rx.feedback_progress_every_s,
        "created_at": _time(rx.created_at), "updated_at": _time(rx.updated_at),
    }


def _result_view(r: SessionResult) -> dict[str, Any]:
    names = ("duration_s", "distance_m", "distance_uncertainty_m", "steps", "mean_speed_mps",
             "mean_cadence_spm", "stride_time_cv_pct", "near_falls", "adherence_pct",
             "t25fw_time_s", "dwi_pct", "dwi_minute2_pct", "fatigability")
    return {name: getattr(r, name) for name in names}


def _minute_view(m: SessionMinute) -> dict[str, Any]:
    return {"minute": m.minute, "distance_m": m.distance_m, "steps": m.steps,
            "speed_mps": m.speed_mps, "cadence_spm": m.cadence_spm}


def session_view(s: Session) -> dict[str, Any]:
    """A session with its result and per-minute values (when it has them)."""
    return {
        "session_id": s.id, "patient_id": s.patient_id, "prescription_id": s.prescription_id,
        "session_type": s.session_type.value, "device_id": s.device_id,
        "device_session_id": s.device_session_id, "status": s.status.value,
        "started_at": _time(s.started_at), "ended_at": _time(s.ended_at),
        "course_length_m": s.course_length_m,
        "result": None if s.result is None else _result_view(s.result),
        "minutes": [_minute_view(m) for m in s.minutes],
    }
