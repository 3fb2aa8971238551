"""Validation of what clinics send: patient profiles and prescriptions, from JSON or the CLI.

One set of rules for the HTTP API and the command line. Each function takes the decoded JSON
object (or the CLI's equivalent) and returns the column values to store; anything wrong
raises :class:`InputError` naming the field and what is expected. Unknown fields are errors,
so a misspelt key is never silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Any

from justwalk.db.models import NOTE_MAX_CHARS, Pace, SessionType, WalkingAid
from justwalk.wire import ID_PATTERN
from stream_processors.patient_profiles import SENSOR_HEIGHT_RANGE_M

__all__ = ["ALERT_THRESHOLDS", "REFERENCE_METRICS", "InputError", "check_id",
           "patient_values", "prescription_values"]

REFERENCE_METRICS: dict[str, tuple[float, float]] = {
    "cadence_spm": (0.0, 250.0),
    "walking_speed_mps": (0.0, 3.0),
    "stride_length_m": (0.0, 3.0),
    "stride_time_cv_pct": (0.0, 100.0),
    "daily_steps": (0.0, 100_000.0),
    "daily_walking_min": (0.0, 1440.0),
    "t25fw_s": (0.0, 300.0),
    "two_mwt_distance_m": (0.0, 500.0),
    "six_mwt_distance_m": (0.0, 1500.0),
}
"""Metrics a patient's personal reference range can be given for, and their plausible span."""

ALERT_THRESHOLDS: dict[str, tuple[float, float]] = {
    "fall_risk_score": (1.0, 100.0),
    "fall_risk_weekly_rise": (1.0, 100.0),
    "min_daily_steps": (0.0, 100_000.0),
    "min_walking_speed_mps": (0.0, 3.0),
    "fatigability_dwi_pct": (-100.0, 0.0),
}
"""Personal alert thresholds (fall-risk score points, steps, m/s, DWI %) and their span."""

CADENCE_RANGE_SPM = (30.0, 200.0)
DURATION_RANGE_S = (10.0, 4 * 3600.0)
DISTANCE_RANGE_M = (1.0, 20_000.0)
PROGRESS_RANGE_S = (5.0, 3600.0)
T25FW_DISTANCE_M = 7.62
"""25 feet."""
TEST_DURATION_S = {SessionType.TWO_MWT: 120.0, SessionType.SIX_MWT: 360.0}

_PATIENT_FIELDS = {"sensor_height_m", "walking_aid", "reference_ranges", "alert_thresholds"}
_PRESCRIPTION_FIELDS = {
    "session_type", "pace", "duration_s", "target_distance_m", "times_per_week",
    "cadence_band_spm", "start_date", "end_date", "active", "therapist_note",
    "feedback_cadence_cue", "feedback_metronome_spm", "feedback_rest_suggestion",
    "feedback_progress_every_s",
}


class InputError(ValueError):
    """Bad input; the message names the field."""


def check_id(value: Any, what: str) -> str:
    """``value`` if it is an id as the rest of the project writes them (``justwalk.wire``)."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InputError(f"{what}: {value!r} is not an id (1-64 letters, digits, '_', '.', "
                         "':' or '-', starting with a letter or digit)")
    return value


def _object(data: Any, allowed: set[str], what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InputError(f"{what}: expected a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InputError(f"{what}: unknown fields {unknown} (allowed: {sorted(allowed)})")
    return data


def _number(value: Any, field: str, lo: float, hi: float, *, unit: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or not lo <= value <= hi:
        unit = f" {unit}" if unit else ""
        raise InputError(f"{field}: {value!r} is not a number in [{lo:g}, {hi:g}]{unit}")
    return float(value)


def _optional(value: Any, field: str, lo: float, hi: float, unit: str = "") -> float | None:
    return None if value is None else _number(value, field, lo, hi, unit=unit)


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{field}: {value!r} is not true or false")
    return value


def _choice(value: Any, field: str, cls: type[Any]) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise InputError(f"{field}: {value!r} is not one of "
                         f"{[m.value for m in cls]}") from None


def _date(value: Any, field: str) -> date:
    if isinstance(value, date):
        return value
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{field}: {value!r} is not a date (YYYY-MM-DD)") from None


def _reference_ranges(value: Any) -> dict[str, Any]:
    ranges = _object(value, set(REFERENCE_METRICS), "reference_ranges")
    out: dict[str, Any] = {}
    for metric, band in ranges.items():
        where = f"reference_ranges.{metric}"
        band = _object(band, {"low", "high"}, where)
        if set(band) != {"low", "high"}:
            raise InputError(f"{where}: give both low and high")
        lo, hi = REFERENCE_METRICS[metric]
        low = _number(band["low"], f"{where}.low", lo, hi)
        high = _number(band["high"], f"{where}.high", lo, hi)
        if low > high:
            raise InputError(f"{where}: low {low:g} is above high {high:g}")
        out[metric] = {"low": low, "high": high}
    return out


def _alert_thresholds(value: Any) -> dict[str, Any]:
    thresholds = _object(value, set(ALERT_THRESHOLDS), "alert_thresholds")
    return {name: _number(v, f"alert_thresholds.{name}", *ALERT_THRESHOLDS[name])
            for name, v in thresholds.items()}


def patient_values(data: Any) -> dict[str, Any]:
    """Column values of a patient profile (all fields optional; for creation and updates)."""
    d = _object(data, _PATIENT_FIELDS, "patient")
    out: dict[str, Any] = {}
    if "sensor_height_m" in d:
        out["sensor_height_m"] = _optional(d["sensor_height_m"], "sensor_height_m",
                                           *SENSOR_HEIGHT_RANGE_M, unit="m")
    if "walking_aid" in d:
        out["walking_aid"] = _choice(d["walking_aid"], "walking_aid", WalkingAid)
    if "reference_ranges" in d:
        out["reference_ranges"] = _reference_ranges(d["reference_ranges"])
    if "alert_thresholds" in d:
        out["alert_thresholds"] = _alert_thresholds(d["alert_thresholds"])
    return out


def _cadence_band(value: Any) -> tuple[float | None, float | None]:
    if value is None:
        return None, None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise InputError(f"cadence_band_spm: {value!r} is not [low, high] in steps/min "
                         "(or null for none)")
    low = _number(value[0], "cadence_band_spm low", *CADENCE_RANGE_SPM, unit="steps/min")
    high = _number(value[1], "cadence_band_spm high", *CADENCE_RANGE_SPM, unit="steps/min")
    if low > high:
        raise InputError(f"cadence_band_spm: low {low:g} is above high {high:g} steps/min")
    return low, high


def prescription_values(data: Any, *, current: Mapping[str, Any] | None = None,
                        today: date | None = None) -> dict[str, Any]:
    """Column values of a new prescription, or of the changes to one.

    ``current`` (None for a new one) holds the column values the changes apply to; they are
    checked together with what they leave unchanged.

    A new prescription needs ``session_type`` and ``times_per_week``; ``start_date`` defaults
    to ``today``. The walk tests fix their own duration (2MWT 120 s, 6MWT 360 s) or distance
    (T25FW 7.62 m) and default to the fast pace their protocols ask for.
    """
    d = _object(data, _PRESCRIPTION_FIELDS, "prescription")
    out: dict[str, Any] = {}
    if current is None:
        for name in ("session_type", "times_per_week"):
            if name not in d:
                raise InputError(f"{name}: missing")
        if "start_date" not in d and today is None:
            raise InputError("start_date: missing")
    if "session_type" in d:
        out["session_type"] = _choice(d["session_type"], "session_type", SessionType)
    if "pace" in d:
        out["pace"] = _choice(d["pace"], "pace", Pace)
    if "duration_s" in d:
        out["duration_s"] = _optional(d["duration_s"], "duration_s", *DURATION_RANGE_S, "s")
    if "target_distance_m" in d:
        out["target_distance_m"] = _optional(d["target_distance_m"], "target_distance_m",
                                             *DISTANCE_RANGE_M, "m")
    if "times_per_week" in d:
        n = d["times_per_week"]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 21:
            raise InputError(f"times_per_week: {n!r} is not a whole number in [1, 21]")
        out["times_per_week"] = n
    if "cadence_band_spm" in d:
        out["cadence_low_spm"], out["cadence_high_spm"] = _cadence_band(d["cadence_band_spm"])
    if "start_date" in d:
        out["start_date"] = _date(d["start_date"], "start_date")
    elif current is None:
        out["start_date"] = today
    if "end_date" in d:
        out["end_date"] = None if d["end_date"] is None else _date(d["end_date"], "end_date")
    if "active" in d:
        out["active"] = _bool(d["active"], "active")
    if "therapist_note" in d:
        note = d["therapist_note"]
        if not isinstance(note, str) or len(note) > NOTE_MAX_CHARS:
            raise InputError(f"therapist_note: a text of at most {NOTE_MAX_CHARS} characters")
        out["therapist_note"] = note
    for name in ("feedback_cadence_cue", "feedback_rest_suggestion"):
        if name in d:
            out[name] = _bool(d[name], name)
    if "feedback_metronome_spm" in d:
        out["feedback_metronome_spm"] = _optional(
            d["feedback_metronome_spm"], "feedback_metronome_spm", *CADENCE_RANGE_SPM,
            "steps/min")
    if "feedback_progress_every_s" in d:
        out["feedback_progress_every_s"] = _number(
            d["feedback_progress_every_s"], "feedback_progress_every_s", *PROGRESS_RANGE_S,
            unit="s")
    _check_together({**(current or {}), **out}, out, creating=current is None)
    return out


def _check_together(merged: Mapping[str, Any], out: dict[str, Any], *, creating: bool) -> None:
    """Rules across fields; fills in what a walk test fixes (into ``out``)."""
    kind = merged["session_type"]
    start, end = merged.get("start_date"), merged.get("end_date")
    if start is not None and end is not None and end < start:
        raise InputError(f"end_date {end} is before start_date {start}")
    duration, distance = merged.get("duration_s"), merged.get("target_distance_m")
    if kind in TEST_DURATION_S:
        fixed = TEST_DURATION_S[kind]
        if duration not in (None, fixed) or distance is not None:
            raise InputError(f"a {kind.value} lasts {fixed:g} s: give no other duration_s "
                             "and no target_distance_m")
        if duration is None:
            out["duration_s"] = fixed
    elif kind is SessionType.T25FW:
        if duration is not None or distance not in (None, T25FW_DISTANCE_M):
            raise InputError(f"a t25fw is timed over {T25FW_DISTANCE_M} m: give no duration_s "
                             "and no other target_distance_m")
        if distance is None:
            out["target_distance_m"] = T25FW_DISTANCE_M
    elif kind is SessionType.GUIDED_WALK and duration is None and distance is None:
        raise InputError("a guided_walk needs duration_s or target_distance_m")
    if creating and "pace" not in out:
        out["pace"] = (Pace.FAST if kind in (SessionType.T25FW, *TEST_DURATION_S)
                       else Pace.COMFORTABLE)
