"""Patients' profiles, read from a JSON file (or the database) at the processor's edge.

File (``Settings.patient_profiles``; optional: without it, or for a patient it does not
list, the processor uses ``Settings.default_sensor_height_m``)::

    {"patients": {"pt-0042": {"sensor_height_m": 0.975, "cohort": "MS"}}}

``cohort`` (optional; default MS) chooses the plausibility limits of the patient's daily
mobility outcomes (``justwalk.mobility.COHORTS``: CHF, COPD, HA, MS, PD, PFF).
``sensor_height_m`` is the height of the lower-back sensor above the ground in metres (the
inverted-pendulum length of walking speed and stride length; Zijlstra & Hof 2003). Patient
ids are the pseudonymous ids the devices are registered to. Unknown keys are errors, and so
is a height outside ``SENSOR_HEIGHT_RANGE_M`` (e.g. centimetres given as metres).

With ``Settings.database_url`` set, the profiles come from the database instead
(``justwalk.db``; ``justwalk db import-profiles FILE --clinic C`` imports this file).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from justwalk.config import Settings
from justwalk.mobility import COHORTS
from stream_processors.config_files import load_json_file

SENSOR_HEIGHT_RANGE_M = (0.3, 2.0)
_PROFILE_KEYS = {"sensor_height_m", "cohort"}


class PatientProfileError(ValueError):
    """The profiles file is malformed; the message names the key."""


def parse_patient_profiles(data: Mapping[str, Any]) -> dict[str, float]:
    """Sensor height (m) per patient id."""
    if not isinstance(data, Mapping):
        raise PatientProfileError("expected an object")
    unknown = set(data) - {"patients"}
    if unknown:
        raise PatientProfileError(f"unknown top-level keys {sorted(unknown)}")
    patients = data.get("patients", {})
    if not isinstance(patients, Mapping):
        raise PatientProfileError("patients: expected an object")
    heights: dict[str, float] = {}
    lo, hi = SENSOR_HEIGHT_RANGE_M
    for pid, profile in patients.items():
        where = f"patients.{pid}"
        if not isinstance(profile, Mapping):
            raise PatientProfileError(f"{where}: expected an object")
        unknown = set(profile) - _PROFILE_KEYS
        if unknown:
            raise PatientProfileError(f"{where}: unknown keys {sorted(unknown)}")
        if "cohort" in profile and profile["cohort"] not in COHORTS:
            raise PatientProfileError(
                f"{where}.cohort: {profile['cohort']!r} is not one of {', '.join(COHORTS)}")
        if "sensor_height_m" not in profile:
            continue
        h = profile["sensor_height_m"]
        if isinstance(h, bool) or not isinstance(h, int | float) or not math.isfinite(h) \
                or not lo <= h <= hi:
            raise PatientProfileError(
                f"{where}.sensor_height_m: {h!r} is not a height in metres in [{lo}, {hi}]")
        heights[str(pid)] = float(h)
    return heights


def load_patient_profiles(path: Path) -> dict[str, float]:
    """Read the file; a missing file means no profiles (the default for every patient)."""
    return load_json_file(path, parse_patient_profiles, PatientProfileError, dict)


def load_sensor_heights(settings: Settings) -> dict[str, float]:
    """Sensor height (m) per patient id, read when the processor starts.

    From the database (``justwalk.db``) when ``settings.database_url`` is set, else from the
    ``settings.patient_profiles`` file.
    """
    if settings.database_url:
        from justwalk.db import sensor_heights

        return sensor_heights(settings)
    return load_patient_profiles(settings.patient_profiles)


def parse_patient_cohorts(data: Mapping[str, Any]) -> dict[str, str]:
    """Cohort per patient id (patients whose profile names one)."""
    parse_patient_profiles(data)  # the same checks
    return {str(pid): str(p["cohort"]) for pid, p in data.get("patients", {}).items()
            if "cohort" in p}


def load_patient_cohorts(path: Path) -> dict[str, str]:
    """The cohorts of the profiles file; a missing file means none (the default cohort)."""
    return load_json_file(path, parse_patient_cohorts, PatientProfileError, dict)
