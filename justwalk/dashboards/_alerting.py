"""Grafana unified-alerting rules for the slow signals, their contact point and mute timing.

Fast events (falls, near-falls) are alerted by the stream processors within seconds; these
rules cover what only shows over hours or weeks. Every clinic's Grafana organisation gets
the same rules on its own data source (its own database), routed to its own contact point
(the clinic's webhook and e-mail of the clinics file) and muted at night in its time zone.
"""

from __future__ import annotations

from collections.abc import Sequence

from justwalk import schema
from justwalk.clinics import Clinic
from justwalk.dashboards._model import DATASOURCE_UID, FOLDER_TITLE, Json, q

CONTACT_POINT = "JustWalk clinic"
CONTACT_POINT_UID = "justwalk-clinic"
NIGHT = "justwalk-night"
EXPR = "__expr__"
DAY_S = 86400
GROUP_BY_PATIENT = f'GROUP BY "{schema.TAG_CLINIC}", "{schema.TAG_PATIENT}"'


def _query(ref: str, query: str, from_s: int, to_s: int = 0) -> Json:
    return {
        "refId": ref,
        "relativeTimeRange": {"from": from_s, "to": to_s},
        "datasourceUid": DATASOURCE_UID,
        "model": {"refId": ref, "query": query, "rawQuery": True,
                  "resultFormat": "time_series", "intervalMs": 1000, "maxDataPoints": 43200},
    }


def _reduce(ref: str, of: str, reducer: str = "last") -> Json:
    return {"refId": ref, "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": EXPR,
            "model": {"refId": ref, "type": "reduce", "expression": of, "reducer": reducer,
                      "settings": {"mode": "dropNN"}, "datasource": {"type": EXPR,
                                                                       "uid": EXPR}}}


def _math(ref: str, expression: str) -> Json:
    return {"refId": ref, "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": EXPR,
            "model": {"refId": ref, "type": "math", "expression": expression,
                      "datasource": {"type": EXPR, "uid": EXPR}}}


def _threshold(ref: str, of: str, op: str, value: float) -> Json:
    return {"refId": ref, "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": EXPR,
            "model": {"refId": ref, "type": "threshold", "expression": of,
                      "conditions": [{"evaluator": {"type": op, "params": [value]}}],
                      "datasource": {"type": EXPR, "uid": EXPR}}}


def _rule(uid: str, title: str, data: list[Json], *, condition: str, for_: str,
          summary: str, description: str, severity: str, mute_at_night: bool = False,
          dashboard_uid: str = "") -> Json:
    settings: Json = {"receiver": CONTACT_POINT,
                      "group_by": ["alertname", schema.TAG_CLINIC, schema.TAG_PATIENT]}
    if mute_at_night:
        settings["mute_time_intervals"] = [NIGHT]
    rule: Json = {
        "uid": uid,
        "title": title,
        "condition": condition,
        "data": data,
        "noDataState": "OK",
        "execErrState": "Error",
        "for": for_,
        "annotations": {"summary": summary, "description": description},
        "labels": {"severity": severity, "team": "justwalk"},
        "isPaused": False,
        "notification_settings": settings,
    }
    if dashboard_uid:
        rule["annotations"]["__dashboardUid__"] = dashboard_uid
    return rule


def rules(org_id: int = 1) -> list[Json]:
    """The rule groups of one organisation (Grafana file-provisioning format)."""
    weekly = q(schema.MEASUREMENT_WEEKLY)
    daily = q(schema.MEASUREMENT_DAILY)
    windows = q(schema.MEASUREMENT_GAIT_WINDOW)
    who = "{{ $labels.patient_id }} ({{ $labels.clinic_id }})"
    trends = [
        _rule(
            "justwalk-weekly-speed-drop", "Weekly walking speed dropped",
            [
                _query("A", f'SELECT last("walking_speed_mean_mps") AS "speed" FROM {weekly} '
                            f"WHERE $timeFilter {GROUP_BY_PATIENT}", 14 * DAY_S, 7 * DAY_S),
                _query("B", f'SELECT mean("walking_speed_mean_mps") AS "baseline" FROM {weekly} '
                            f"WHERE $timeFilter {GROUP_BY_PATIENT}", 42 * DAY_S, 14 * DAY_S),
                _reduce("C", "A"),
                _reduce("D", "B"),
                _math("E", "($C - $D) / $D * 100"),
                _threshold("F", "E", "lt", -15),
            ],
            condition="F", for_="1h", severity="warning",
            summary=f"Walking speed of {who} dropped {{{{ $values.E }}}} % in a week",
            description="Mean walking speed of the last complete week (Monday-Sunday) is "
                        "more than 15 % below the mean of the four weeks before it.",
            dashboard_uid="justwalk-longitudinal"),
        _rule(
            "justwalk-near-falls-weekly", "Several near-falls this week",
            [
                _query("A", f'SELECT last("near_falls") AS "near_falls" FROM {weekly} '
                            f"WHERE $timeFilter {GROUP_BY_PATIENT}", 7 * DAY_S),
                _reduce("B", "A"),
                _threshold("C", "B", "gt", 2),
            ],
            condition="C", for_="0s", severity="warning",
            summary=f"{who} had {{{{ $values.B }}}} near-falls this week",
            description="Three or more near-falls in the current week.",
            dashboard_uid="justwalk-longitudinal"),
        _rule(
            "justwalk-fall-risk-high", "Fall-risk score high",
            [
                _query("A", f'SELECT max("fall_risk_max") AS "fall_risk" FROM {daily} '
                            f"WHERE $timeFilter {GROUP_BY_PATIENT}", 2 * DAY_S),
                _reduce("B", "A"),
                _threshold("C", "B", "gt", 0.7),
            ],
            condition="C", for_="0s", severity="warning",
            summary=f"Fall-risk score of {who} is {{{{ $values.B }}}}",
            description="The highest fall-risk score of the last two days is above 0.7.",
            dashboard_uid="justwalk-longitudinal"),
    ]
    silence = [
        _rule(
            "justwalk-device-silent", "No data from a device that was streaming",
            [
                # Windows per 5 minutes, averaged over the last 6 buckets (30 min); fill(0)
                # makes a silent device of a series seen in the last 6 h read 0.
                _query("A", f'SELECT moving_average(count("window_s"), 6) AS "windows_per_5min" '
                            f"FROM {windows} WHERE $timeFilter GROUP BY time(5m), "
                            f'"{schema.TAG_CLINIC}", "{schema.TAG_PATIENT}", '
                            f'"{schema.TAG_DEVICE}" fill(0)', 6 * 3600),
                _reduce("B", "A"),
                _threshold("C", "B", "lt", 0.01),
            ],
            condition="C", for_="5m", severity="info", mute_at_night=True,
            summary="No data from {{ $labels.device_id }} of " + who + " for 30 minutes",
            description="The device streamed in the last 6 hours but sent nothing for the "
                        "last 30 minutes (battery, connectivity, or taken off). Muted at night.",
            dashboard_uid="justwalk-clinic-overview"),
    ]
    return [
        {"orgId": org_id, "name": "justwalk-trends", "folder": FOLDER_TITLE, "interval": "1h",
         "rules": trends},
        {"orgId": org_id, "name": "justwalk-devices", "folder": FOLDER_TITLE, "interval": "1m",
         "rules": silence},
    ]


def contact_points(org_id: int, *, webhook_url: str, emails: Sequence[str]) -> list[Json]:
    """The clinic's contact point: its webhook and/or e-mail list (none if neither)."""
    receivers: list[Json] = []
    if webhook_url:
        receivers.append({"uid": "justwalk-webhook", "type": "webhook",
                          "disableResolveMessage": False,
                          "settings": {"url": webhook_url, "httpMethod": "POST"}})
    if emails:
        receivers.append({"uid": "justwalk-email", "type": "email",
                          "disableResolveMessage": False,
                          "settings": {"addresses": ";".join(emails), "singleEmail": True}})
    if not receivers:
        return []
    return [{"orgId": org_id, "name": CONTACT_POINT, "receivers": receivers}]


def mute_times(org_id: int, *, timezone: str) -> list[Json]:
    """Nights (22:00-07:00, clinic time zone): devices are expected to be off."""
    return [{
        "orgId": org_id,
        "name": NIGHT,
        "time_intervals": [{
            "times": [{"start_time": "22:00", "end_time": "24:00"},
                      {"start_time": "00:00", "end_time": "07:00"}],
            "location": timezone,
        }],
    }]


def alerting_file(clinics: Sequence[Clinic]) -> Json:
    """The whole alerting provisioning file: every clinic's objects in its organisation.

    A clinic without webhook and e-mail gets no contact point; its rules then follow its
    organisation's default notification policy.
    """
    groups: list[Json] = []
    points: list[Json] = []
    mutes: list[Json] = []
    for c in clinics:
        cps = contact_points(c.grafana_org_id, webhook_url=c.alert_webhook_url,
                             emails=c.alert_emails)
        org_rules = rules(c.grafana_org_id)
        if not cps:
            for group in org_rules:
                for rule in group["rules"]:
                    del rule["notification_settings"]
        groups += org_rules
        points += cps
        mutes += mute_times(c.grafana_org_id, timezone=c.timezone)
    return {"apiVersion": 1, "groups": groups, "contactPoints": points, "muteTimes": mutes}
