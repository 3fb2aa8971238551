"""The API's OpenAPI 3.1 description, built from the same constants the validation uses."""

from __future__ import annotations

from functools import cache
from typing import Any

from justwalk.db.inputs import (
    ALERT_THRESHOLDS,
    CADENCE_RANGE_SPM,
    REFERENCE_METRICS,
    T25FW_DISTANCE_M,
    TEST_DURATION_S,
)
from justwalk.db.models import Pace, SessionStatus, SessionType, WalkingAid
from justwalk.wire import ID_PATTERN

_ID = {"type": "string", "pattern": f"^{ID_PATTERN.pattern}$"}
_NUM = {"type": "number"}
_NULL_NUM = {"type": ["number", "null"]}


def _values(cls: Any) -> list[str]:
    return [m.value for m in cls]


def _profile() -> dict[str, Any]:
    band = {"type": "object", "required": ["low", "high"], "additionalProperties": False,
            "properties": {"low": _NUM, "high": _NUM}}
    return {
        "sensor_height_m": {**_NULL_NUM, "description": "lower-back sensor above the ground"},
        "walking_aid": {"enum": _values(WalkingAid)},
        "reference_ranges": {"type": "object", "additionalProperties": False,
                             "properties": {m: band for m in REFERENCE_METRICS}},
        "alert_thresholds": {"type": "object", "additionalProperties": False,
                             "properties": {t: _NUM for t in ALERT_THRESHOLDS}},
    }


def _prescription() -> dict[str, Any]:
    lo, hi = CADENCE_RANGE_SPM
    tests = ", ".join(f"{k.value} {v:g} s" for k, v in TEST_DURATION_S.items())
    return {
        "session_type": {"enum": _values(SessionType)},
        "pace": {"enum": _values(Pace), "description": "default: fast for the walk tests"},
        "duration_s": {**_NULL_NUM, "description": f"fixed for the tests ({tests})"},
        "target_distance_m": {**_NULL_NUM,
                              "description": f"t25fw: {T25FW_DISTANCE_M} m (fixed)"},
        "times_per_week": {"type": "integer", "minimum": 1, "maximum": 21},
        "cadence_band_spm": {"type": ["array", "null"], "minItems": 2, "maxItems": 2,
                             "items": {"type": "number", "minimum": lo, "maximum": hi},
                             "description": "[low, high] steps/min, low <= high"},
        "start_date": {"type": "string", "format": "date", "description": "default today"},
        "end_date": {"type": ["string", "null"], "format": "date"},
        "active": {"type": "boolean"},
        "therapist_note": {"type": "string", "description": "no identifying data"},
        "feedback_cadence_cue": {"type": "boolean"},
        "feedback_metronome_spm": _NULL_NUM,
        "feedback_rest_suggestion": {"type": "boolean"},
        "feedback_progress_every_s": _NUM,
    }


def _op(summary: str, *, body: str | None = None, ok: int = 200,
        params: tuple[str, ...] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {str(ok): {"description": "OK"},
                      "400": {"$ref": "#/components/responses/Error"},
                      "401": {"$ref": "#/components/responses/Error"},
                      "404": {"$ref": "#/components/responses/Error"}},
    }
    if params:
        op["parameters"] = [{"name": p, "in": "path", "required": True,
                             "schema": {"type": "integer"} if p == "prescription_id" else _ID}
                            for p in params]
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
        op["responses"]["409"] = {"$ref": "#/components/responses/Error"}
    return op


def _report_op(summary: str) -> dict[str, Any]:
    op = _op(summary, params=("patient_id",))
    day = {"type": "string", "format": "date"}
    op["parameters"] += [
        {"name": "from", "in": "query", "required": True, "schema": day,
         "description": "first day of the period (UTC), YYYY-MM-DD"},
        {"name": "to", "in": "query", "required": True, "schema": day,
         "description": "last day of the period (included), at most 731 days after from"},
        {"name": "format", "in": "query", "required": False,
         "schema": {"enum": ["html", "pdf"]}}]
    op["responses"]["200"] = {"description": "the report", "content": {
        "text/html": {"schema": {"type": "string"}},
        "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}
    op["responses"]["503"] = {"$ref": "#/components/responses/Error"}
    return op


@cache
def openapi() -> dict[str, Any]:
    """The description served at ``GET /v1/openapi.json``."""
    pid = ("patient_id",)
    rxid = ("prescription_id",)
    return {
        "openapi": "3.1.0",
        "info": {"title": "JustWalk clinics API", "version": "1",
                 "description": "Pseudonymous patients, prescriptions and sessions of the "
                 "clinic whose bearer token is sent."},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/patients": {
                "get": _op("the clinic's patients"),
                "post": _op("a new patient", body="NewPatient", ok=201)},
            "/v1/patients/{patient_id}": {
                "get": _op("one patient", params=pid),
                "patch": _op("change a profile", body="Profile", params=pid)},
            "/v1/patients/{patient_id}/prescriptions": {
                "get": _op("the patient's prescriptions (?active_only=true)", params=pid),
                "post": _op("prescribe", body="Prescription", ok=201, params=pid)},
            "/v1/patients/{patient_id}/sessions": {
                "get": _op("the patient's sessions, newest first (?limit=N)", params=pid)},
            "/v1/patients/{patient_id}/report": {
                "get": _report_op("the patient's progress report, HTML (format=pdf: PDF)")},
            "/v1/patients/{patient_id}/report.pdf": {
                "get": _report_op("the patient's progress report as PDF (printed by headless "
                                  "Chromium from the same HTML)")},
            "/v1/prescriptions/{prescription_id}": {
                "get": _op("one prescription", params=rxid),
                "patch": _op("change a prescription", body="Prescription", params=rxid)},
            "/v1/sessions": {"get": _op("the clinic's sessions, newest first (?limit=N)")},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "what is wrong", "content": {
                "application/json": {"schema": {
                    "type": "object", "properties": {"error": {"type": "string"}}}}}}},
            "schemas": {
                "Profile": {"type": "object", "additionalProperties": False,
                            "properties": _profile()},
                "NewPatient": {"type": "object", "additionalProperties": False,
                               "required": ["patient_id"],
                               "properties": {"patient_id": _ID, **_profile()}},
                "Prescription": {"type": "object", "additionalProperties": False,
                                 "properties": _prescription()},
                "SessionStatus": {"enum": _values(SessionStatus)},
            },
        },
    }
