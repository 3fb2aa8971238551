"""What a clinic receives: the webhook JSON body and the e-mail text, built from alerts.

Two kinds of delivery, both JSON objects with a top-level ``kind`` and ``alert_id``:

``"kind": "alert"`` -- one alert, sent at once::

    {"kind": "alert", "alert_id": "<32 hex>", "format_version": 1,
     "alert": {<the AlertRecord of justwalk.records, all its fields>},
     "grouping": {"group_key": "<clinic>/<patient>/<type>", "window_s": 300.0,
                  "window_opened_by": "<alert_id that opened the window>"}}

``"kind": "alert_group"`` -- the alerts of the same patient and type that arrived within the
suppression window after the first one, sent once when the window closes::

    {"kind": "alert_group", "alert_id": "grp-<32 hex>", "format_version": 1,
     "clinic_id": ..., "patient_id": ..., "type": ..., "severity": <highest>,
     "count": 3, "first_event_us": ..., "last_event_us": ...,
     "alert_ids": [...], "alerts": [<AlertRecord>, ...],
     "grouping": {"group_key": ..., "window_s": ..., "window_opened_by": ...}}

``alert_id`` is what receivers deduplicate on (delivery is at least once); it is also sent
as the ``X-JustWalk-Alert-Id`` header. A group's id is derived from the alert that opened
its window, so a re-sent group has the same id. The body is serialised once, when the
delivery is queued, and the same bytes are sent on every attempt.

Only pseudonymous ids (patient, device, session, clinic) appear; the system holds no names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from justwalk.records import ALERT_FORMAT_VERSION, AlertRecord

__all__ = [
    "KIND_ALERT",
    "KIND_GROUP",
    "alert_body",
    "dump_body",
    "email_subject",
    "email_text",
    "group_body",
    "group_id",
]

KIND_ALERT = "alert"
KIND_GROUP = "alert_group"
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def group_key(alert: AlertRecord) -> str:
    """Alerts with the same key are grouped within the suppression window."""
    return f"{alert.clinic_id}/{alert.patient_id}/{alert.type}"


def group_id(opened_by: str) -> str:
    """The stable id of the grouped follow-up of the window opened by alert ``opened_by``."""
    return "grp-" + hashlib.sha256(f"group|{opened_by}".encode()).hexdigest()[:32]


def _grouping(alert: AlertRecord, window_s: float, opened_by: str) -> dict[str, Any]:
    return {"group_key": group_key(alert), "window_s": window_s,
            "window_opened_by": opened_by}


def alert_body(alert: AlertRecord, *, window_s: float) -> dict[str, Any]:
    """The delivery of one alert, sent at once (it opens a suppression window)."""
    return {
        "kind": KIND_ALERT,
        "alert_id": alert.alert_id,
        "format_version": ALERT_FORMAT_VERSION,
        "alert": asdict(alert),
        "grouping": _grouping(alert, window_s, alert.alert_id),
    }


def group_body(alerts: Sequence[AlertRecord], *, window_s: float, opened_by: str
               ) -> dict[str, Any]:
    """The one follow-up for the alerts suppressed in a window (at least one)."""
    if not alerts:
        raise ValueError("a group needs at least one alert")
    ordered = sorted(alerts, key=lambda a: (a.event_start_us, a.alert_id))
    first = ordered[0]
    return {
        "kind": KIND_GROUP,
        "alert_id": group_id(opened_by),
        "format_version": ALERT_FORMAT_VERSION,
        "clinic_id": first.clinic_id,
        "patient_id": first.patient_id,
        "type": first.type,
        "severity": max((a.severity for a in ordered),
                        key=lambda s: _SEVERITY_RANK.get(s, -1)),
        "count": len(ordered),
        "first_event_us": ordered[0].event_start_us,
        "last_event_us": ordered[-1].event_start_us,
        "alert_ids": [a.alert_id for a in ordered],
        "alerts": [asdict(a) for a in ordered],
        "grouping": _grouping(first, window_s, opened_by),
    }


def dump_body(body: dict[str, Any]) -> str:
    """The exact JSON text that is signed and sent (compact, keys sorted, no NaN)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)


# -- e-mail ----------------------------------------------------------------------------------


def _label(type_: str) -> str:
    return type_.replace("_", "-").upper()


def _utc(t_us: int, fmt: str = "%H:%M:%S") -> str:
    return datetime.fromtimestamp(t_us / 1e6, tz=UTC).strftime(fmt)


def email_subject(body: dict[str, Any]) -> str:
    """E.g. ``[JustWalk] FALL: patient pt-012 (clinic-a) at 14:03:22 UTC``."""
    if body["kind"] == KIND_GROUP:
        return (f"[JustWalk] {_label(body['type'])} x{body['count']} more (grouped): "
                f"patient {body['patient_id']} ({body['clinic_id']}) "
                f"{_utc(body['first_event_us'])}-{_utc(body['last_event_us'])} UTC")
    a = body["alert"]
    return (f"[JustWalk] {_label(a['type'])}: patient {a['patient_id']} ({a['clinic_id']}) "
            f"at {_utc(a['event_start_us'])} UTC")


def _alert_lines(a: dict[str, Any]) -> list[str]:
    lines = [
        f"Type:        {_label(a['type'])} (severity {a['severity']})",
        f"Patient:     {a['patient_id']}",
        f"Clinic:      {a['clinic_id']}",
        f"Device:      {a['device_id']}   session {a['session_id']}",
        f"Event:       {_utc(a['event_start_us'], '%Y-%m-%d %H:%M:%S')} to "
        f"{_utc(a['event_end_us'], '%H:%M:%S')} UTC (device clock)",
        f"Raised:      {_utc(a['raised_at_us'], '%Y-%m-%d %H:%M:%S')} UTC",
        f"Alert id:    {a['alert_id']}",
    ]
    if a["evidence"]:
        lines.append("Evidence:")
        lines += [f"  {k}: {v}" for k, v in sorted(a["evidence"].items())]
    return lines


def email_text(body: dict[str, Any]) -> str:
    """The plain-text e-mail body: what happened, when, and the numbers behind it."""
    if body["kind"] == KIND_GROUP:
        window = body["grouping"]["window_s"]
        lines = [
            f"{body['count']} further {_label(body['type'])} alert(s) for patient "
            f"{body['patient_id']} ({body['clinic_id']}) within {window:g} s of the alert "
            f"{body['grouping']['window_opened_by']}, grouped instead of sent one by one.",
            "",
            f"First: {_utc(body['first_event_us'], '%Y-%m-%d %H:%M:%S')} UTC",
            f"Last:  {_utc(body['last_event_us'], '%Y-%m-%d %H:%M:%S')} UTC",
            f"Group id: {body['alert_id']}",
        ]
        for a in body["alerts"]:
            lines += ["", *_alert_lines(a)]
    else:
        lines = _alert_lines(body["alert"])
        lines += ["", f"Further {_label(body['alert']['type'])} alerts for this patient within "
                  f"{body['grouping']['window_s']:g} s are grouped into one follow-up."]
    lines += ["", "-- ", "JustWalk Stream alert service. Patients are identified by "
              "pseudonymous ids only."]
    return "\n".join(lines) + "\n"
