"""The three JustWalk dashboards: clinic live overview, patient detail, longitudinal."""

from __future__ import annotations

from justwalk import schema
from justwalk.dashboards._model import (
    PATIENT,
    WALKING,
    Json,
    Layout,
    annotation,
    dashboard,
    dashboard_link,
    override,
    q,
    query_variable,
    stat,
    table,
    target,
    thresholds,
    timeseries,
)

UID_OVERVIEW = "justwalk-clinic-overview"
UID_PATIENT = "justwalk-patient-detail"
UID_LONGITUDINAL = "justwalk-longitudinal"

WIN = q(schema.MEASUREMENT_GAIT_WINDOW)
ALERT = q(schema.MEASUREMENT_ALERT)
BOUT = q(schema.MEASUREMENT_BOUT)
EVENT = q(schema.MEASUREMENT_EVENT)
SESSION = q(schema.MEASUREMENT_SESSION)
DAILY = q(schema.MEASUREMENT_DAILY)
DMO = q(schema.MEASUREMENT_DMO_DAILY)
WEEKLY = q(schema.MEASUREMENT_WEEKLY)

# Reference ranges drawn on the longitudinal graphs. These are placeholders for a clinic to
# replace with its own (edit here, then `justwalk dashboards build`); they are not
# diagnostic cut-offs.
REFERENCE = {
    "walking_speed_mps": thresholds((None, "red"), (0.8, "yellow"), (1.0, "green")),
    "cadence_spm": thresholds((None, "red"), (90, "yellow"), (100, "green")),
    "stride_time_cv_pct": thresholds((None, "green"), (3, "yellow"), (5, "red")),
    "steps": thresholds((None, "red"), (2500, "yellow"), (5000, "green")),
    "fall_risk": thresholds((None, "green"), (0.3, "yellow"), (0.6, "red")),
}

# No clinic variable: each clinic's Grafana organisation has its own data source, on the
# clinic's own database with a user that may read nothing else (justwalk.clinics), so the
# patients offered here are the clinic's and a query cannot reach another clinic's.
VAR_PATIENT = query_variable(
    "patient", "Patient",
    f'SHOW TAG VALUES FROM {WIN} WITH KEY = "{schema.TAG_PATIENT}"')

WALKING_MAPPING = [{"type": "value", "options": {
    "true": {"text": "walking", "color": "green", "index": 0},
    "false": {"text": "standing", "color": "yellow", "index": 1}}}]


def clinic_overview() -> Json:
    """Who needs attention now: every patient of the clinic streaming today, one row each."""
    lay = Layout()
    live = "time > now() - 5m"
    day = "time > now() - 24h"
    panels = [
        lay.place(stat(
            "Patients streaming", f'SELECT count("w") AS "patients" FROM (SELECT last('
            f'"window_s") AS "w" FROM {WIN} WHERE time > now() - 2m '
            f'GROUP BY "{schema.TAG_PATIENT}")',
            description="Patients with a gait window in the last 2 minutes."), 6, 4),
        lay.place(stat(
            "Walking now", f'SELECT count("n") AS "walking" FROM (SELECT last("n_steps") AS "n" '
            f'FROM {WIN} WHERE {WALKING} AND time > now() - 1m '
            f'GROUP BY "{schema.TAG_PATIENT}")',
            description="Patients with a walking window in the last minute.",
            thresholds_=thresholds((None, "green"))), 6, 4),
        lay.place(stat(
            "Alerts, last 24 h", f'SELECT count("alert_id") AS "alerts" FROM {ALERT} '
            f"WHERE {day}",
            thresholds_=thresholds((None, "green"), (1, "orange"))), 6, 4),
        lay.place(stat(
            "Falls, last 24 h", f'SELECT count("alert_id") AS "falls" FROM {ALERT} '
            f"WHERE \"severity\" = 'critical' AND {day}",
            thresholds_=thresholds((None, "green"), (1, "red"))), 6, 4),
        lay.place(table(
            "Patients: who needs attention first",
            [
                target("A", f'SELECT last("window_s") AS "window_s" FROM {WIN} '
                       f'WHERE {day} GROUP BY "{schema.TAG_PATIENT}"', table=True),
                target("B", f'SELECT last("walking") AS "walking" FROM {WIN} '
                       f'WHERE {day} GROUP BY "{schema.TAG_PATIENT}"', table=True),
                target("C", f'SELECT mean("cadence_spm") AS "cadence_spm", '
                       f'mean("walking_speed_mps") AS "walking_speed_mps", '
                       f'mean("stride_time_cv_pct") AS "stride_time_cv_pct" FROM {WIN} '
                       f'WHERE {WALKING} AND {live} '
                       f'GROUP BY "{schema.TAG_PATIENT}"', table=True),
                target("D", f'SELECT sum("n_steps") AS "steps_today" FROM {WIN} '
                       f'WHERE $timeFilter GROUP BY "{schema.TAG_PATIENT}"',
                       table=True),
                target("E", f'SELECT count("alert_id") AS "alerts_24h" FROM {ALERT} '
                       f'WHERE {day} GROUP BY "{schema.TAG_PATIENT}"', table=True),
                target("F", f'SELECT count("alert_id") AS "falls_24h" FROM {ALERT} '
                       f"WHERE \"severity\" = 'critical' AND {day} "
                       f'GROUP BY "{schema.TAG_PATIENT}"', table=True),
            ],
            description="One row per patient seen in the last 24 h, sorted by attention "
                        "(falls count twice, then other alerts). Live gait is the mean over "
                        "the walking windows of the last 5 minutes; 'Last data' turns red "
                        "after 5 minutes without a window.",
            transformations=[
                {"id": "joinByField",
                 "options": {"byField": schema.TAG_PATIENT, "mode": "outer"}},
                {"id": "calculateField",
                 "options": {"mode": "reduceRow", "alias": "attention",
                             "reduce": {"include": ["alerts_24h", "falls_24h"],
                                        "reducer": "sum"},
                             "replaceFields": False}},
                {"id": "organize", "options": {
                    "excludeByName": {"Time 2": True, "Time 3": True, "Time 4": True,
                                      "Time 5": True, "Time 6": True, "window_s": True},
                    "indexByName": {schema.TAG_PATIENT: 0, "attention": 1, "falls_24h": 2,
                                    "alerts_24h": 3, "Time 1": 4, "walking": 5,
                                    "cadence_spm": 6, "walking_speed_mps": 7,
                                    "stride_time_cv_pct": 8, "steps_today": 9},
                    "renameByName": {schema.TAG_PATIENT: "Patient", "Time 1": "Last data",
                                     "walking": "State", "cadence_spm": "Cadence (steps/min)",
                                     "walking_speed_mps": "Speed (m/s)",
                                     "stride_time_cv_pct": "Stride-time CV (%)",
                                     "steps_today": "Steps today",
                                     "alerts_24h": "Alerts 24 h", "falls_24h": "Falls 24 h",
                                     "attention": "Attention"}}},
            ],
            sort_by=[{"displayName": "Attention", "desc": True}],
            overrides=[
                override("Last data", unit="dateTimeFromNow",
                         custom__cellOptions={"type": "color-text"}),
                override("State", mappings=WALKING_MAPPING,
                         custom__cellOptions={"type": "color-background"}),
                override("Falls 24 h", custom__cellOptions={"type": "color-background"},
                         thresholds=thresholds((None, "transparent"), (1, "red"))),
                override("Alerts 24 h", custom__cellOptions={"type": "color-background"},
                         thresholds=thresholds((None, "transparent"), (1, "orange"))),
                override("Cadence (steps/min)", decimals=0),
                override("Speed (m/s)", decimals=2, custom__cellOptions={"type": "color-text"},
                         thresholds=REFERENCE["walking_speed_mps"]),
                override("Stride-time CV (%)", decimals=1,
                         custom__cellOptions={"type": "color-text"},
                         thresholds=REFERENCE["stride_time_cv_pct"]),
                override("Patient", links=[{
                    "title": "Patient detail",
                    "url": f"/d/{UID_PATIENT}?var-patient=${{__value.raw}}"}]),
            ]), 24, 20),
        lay.place(_state_timeline(
            "Walking / standing, last 2 hours (all patients)",
            f'SELECT last("walking") AS "walking" FROM {WIN} WHERE '
            f'time > now() - 2h GROUP BY time(1m), "{schema.TAG_PATIENT}" fill(null)',
            alias=f"$tag_{schema.TAG_PATIENT}"), 24, 14),
    ]
    return dashboard(
        UID_OVERVIEW, "JustWalk: clinic live overview", panels=panels,
        variables=[], time_from="now/d", refresh="10s",
        description="Every patient of the clinic who streamed in the last 24 h, "
                    "live gait and open alerts.",
        links=[dashboard_link("Patient detail", UID_PATIENT),
               dashboard_link("Longitudinal", UID_LONGITUDINAL)])


def _state_timeline(title: str, query: str, *, alias: str) -> Json:
    p = timeseries(title, [target("A", query, alias=alias)], unit="none")
    p["type"] = "state-timeline"
    p["fieldConfig"]["defaults"] = {"mappings": WALKING_MAPPING,
                                    "color": {"mode": "thresholds"},
                                    "thresholds": thresholds((None, "text")),
                                    "custom": {"fillOpacity": 80, "lineWidth": 0}}
    p["options"] = {"showValue": "never", "rowHeight": 0.9, "mergeValues": True,
                    "alignValue": "left", "legend": {"showLegend": False}}
    return p


def patient_detail() -> Json:
    """How one patient walked today: gait over time, bouts, turns, events as annotations."""
    lay = Layout()
    tf = "$timeFilter"

    def ev(kind: str) -> str:
        return f"\"event_type\" = '{kind}'"

    panels = [
        lay.place(stat("Steps", f'SELECT sum("n_steps") AS "steps" FROM {WIN} '
                                f"WHERE {PATIENT} AND {tf}"), 4, 4),
        lay.place(stat("Walking time", f'SELECT sum("window_s") / 60 AS "walking_min" '
                                       f"FROM {WIN} WHERE {PATIENT} AND {WALKING} AND {tf}",
                       unit="m"), 4, 4),
        lay.place(stat("Bouts", f'SELECT count("duration_s") AS "bouts" FROM {BOUT} '
                                f"WHERE {PATIENT} AND {tf}"), 4, 4),
        lay.place(stat("Turns", f'SELECT count("duration_s") AS "turns" FROM {EVENT} '
                                f"WHERE {PATIENT} AND {ev(schema.EVENT_TURN)} AND {tf}"), 4, 4),
        lay.place(stat("Near-falls", f'SELECT count("duration_s") AS "near_falls" FROM {EVENT} '
                                     f"WHERE {PATIENT} AND {ev(schema.EVENT_NEAR_FALL)} AND {tf}",
                       thresholds_=thresholds((None, "green"), (1, "orange"))), 4, 4),
        lay.place(stat("Falls", f'SELECT count("duration_s") AS "falls" FROM {EVENT} '
                                f"WHERE {PATIENT} AND {ev(schema.EVENT_FALL)} AND {tf}",
                       thresholds_=thresholds((None, "green"), (1, "red"))), 4, 4),
        lay.place(timeseries("Cadence", [target(
            "A", f'SELECT mean("cadence_spm") AS "cadence_spm" FROM {WIN} WHERE {PATIENT} '
                 f"AND {WALKING} AND {tf} GROUP BY time($__interval) fill(null)")],
            unit="none", description="Steps per minute, walking windows only."), 12, 8),
        lay.place(timeseries("Walking speed and stride length", [
            target("A", f'SELECT mean("walking_speed_mps") AS "walking_speed_mps" FROM {WIN} '
                        f"WHERE {PATIENT} AND {WALKING} AND {tf} "
                        "GROUP BY time($__interval) fill(null)"),
            target("B", f'SELECT mean("stride_length_m") AS "stride_length_m" FROM {WIN} '
                        f"WHERE {PATIENT} AND {WALKING} AND {tf} "
                        "GROUP BY time($__interval) fill(null)")],
            unit="velocityms",
            overrides=[override("stride_length_m", unit="lengthm",
                                custom__axisPlacement="right")]), 12, 8),
        lay.place(timeseries("Variability and asymmetry", [target(
            "A", f'SELECT mean("stride_time_cv_pct") AS "stride_time_cv_pct", '
                 f'mean("step_time_asymmetry_pct") AS "step_time_asymmetry_pct" FROM {WIN} '
                 f"WHERE {PATIENT} AND {WALKING} AND {tf} GROUP BY time($__interval) "
                 "fill(null)")], unit="percent"), 12, 8),
        lay.place(timeseries("Steps", [target(
            "A", f'SELECT sum("n_steps") AS "steps" FROM {WIN} WHERE {PATIENT} AND {tf} '
                 "GROUP BY time($__interval) fill(0)")], unit="none", bars=True), 12, 8),
        lay.place(_state_timeline(
            "Walking / standing",
            f'SELECT last("walking") AS "walking" FROM {WIN} WHERE {PATIENT} AND {tf} '
            "GROUP BY time($__interval) fill(null)", alias="state"), 24, 4),
        lay.place(table("Walking bouts", [target(
            "A", f'SELECT "duration_s" AS "duration_s", "n_steps" AS "n_steps", '
                 f'"cadence_spm" AS "cadence_spm", "walking_speed_mps" AS "walking_speed_mps", '
                 f'"stride_length_m" AS "stride_length_m", '
                 f'"stride_time_cv_pct" AS "stride_time_cv_pct", "n_turns" AS "n_turns" '
                 f"FROM {BOUT} WHERE {PATIENT} AND {tf}", table=True)],
            sort_by=[{"displayName": "Time", "desc": True}]), 12, 10),
        lay.place(table("Turns, near-falls and falls", [target(
            "A", f'SELECT "event_type" AS "event_type", "duration_s" AS "duration_s", '
                 f'"turn_angle_deg" AS "turn_angle_deg", "confidence" AS "confidence" '
                 f"FROM {EVENT} WHERE {PATIENT} AND {tf}", table=True)],
            sort_by=[{"displayName": "Time", "desc": True}]), 12, 10),
        lay.place(table("Sessions", [target(
            "A", f'SELECT "session_id" AS "session_id", "duration_s" AS "duration_s", '
                 f'"n_steps" AS "n_steps", "walking_s" AS "walking_s", "n_bouts" AS "n_bouts", '
                 f'"ended" AS "ended" FROM {SESSION} WHERE {PATIENT} AND {tf}', table=True)]),
            12, 6),
        lay.place(table("Alerts", [target(
            "A", f'SELECT "alert_type" AS "alert_type", "severity" AS "severity", '
                 f'"confidence" AS "confidence" FROM {ALERT} WHERE {PATIENT} AND {tf}',
            table=True)], sort_by=[{"displayName": "Time", "desc": True}]), 12, 6),
    ]
    annotations = [
        annotation("Falls", f'SELECT "event_type" AS "text", "duration_s" AS "duration_s" '
                            f"FROM {EVENT} WHERE {PATIENT} AND {ev(schema.EVENT_FALL)} AND {tf}",
                   "red"),
        annotation("Near-falls", f'SELECT "event_type" AS "text", "confidence" AS "confidence" '
                                 f"FROM {EVENT} WHERE {PATIENT} AND "
                                 f"{ev(schema.EVENT_NEAR_FALL)} AND {tf}", "orange"),
        annotation("Turns", f'SELECT "event_type" AS "text", "turn_angle_deg" AS '
                            f'"turn_angle_deg" FROM {EVENT} WHERE {PATIENT} AND '
                            f"{ev(schema.EVENT_TURN)} AND {tf}", "blue"),
        annotation("Bout starts", f'SELECT "duration_s" AS "text" FROM {BOUT} '
                                  f"WHERE {PATIENT} AND {tf}", "green"),
    ]
    return dashboard(
        UID_PATIENT, "JustWalk: patient detail", panels=panels,
        variables=[VAR_PATIENT], annotations=annotations, time_from="now/d",
        refresh="30s", description="One patient's walking today: gait over time, bouts, "
                                   "turns, near-falls and falls.",
        links=[dashboard_link("Clinic overview", UID_OVERVIEW),
               dashboard_link("Longitudinal", UID_LONGITUDINAL)])


def longitudinal() -> Json:
    """Daily and weekly trends of one patient over months, against reference ranges."""
    lay = Layout()
    tf = "$timeFilter"

    def trend(title: str, field: str, unit: str, ref: str, *, p90: str = "") -> Json:
        targets = [
            target("A", f'SELECT "{field}" AS "daily" FROM {DAILY} WHERE {PATIENT} AND {tf}'),
            target("B", f'SELECT "{field}" AS "weekly" FROM {WEEKLY} WHERE {PATIENT} AND {tf}'),
        ]
        if p90:
            targets.append(target("C", f'SELECT "{p90}" AS "daily_p90" FROM {DAILY} '
                                       f"WHERE {PATIENT} AND {tf}"))
        return timeseries(title, targets, unit=unit, thresholds_=REFERENCE[ref],
                          description="Daily (points) and weekly (line, Monday-based) values "
                                      "from the rollups; shaded bands are the clinic's "
                                      "reference ranges.",
                          overrides=[override(name, custom__drawStyle="points")
                                     for name in ("daily", "daily_p90")[:len(targets) - 1]])

    def dmo_with_error(title: str, field: str, unit: str) -> Json:
        return timeseries(title, [target(
            "A", f'SELECT "{field}" AS "value", "{field}" - "{field}_err" AS "low", '
                 f'"{field}" + "{field}_err" AS "high" FROM {DMO} WHERE {PATIENT} AND {tf}')],
            unit=unit, description=f"Daily mobility outcome {field} (dmo_daily), with the "
                                   "band of its expected error (value +- err): a change "
                                   "inside the band is within measurement error.",
            overrides=[override("value", custom__drawStyle="points"),
                       override("low", custom__lineWidth=0),
                       override("high", custom__lineWidth=0, custom__fillBelowTo="low",
                                custom__fillOpacity=20)])

    def dmo_change(title: str, field: str, unit: str) -> Json:
        return timeseries(title, [target(
            "A", f'SELECT difference(mean("{field}")) AS "change", '
                 f'mean("{field}_err") AS "err_plus", -1 * mean("{field}_err") AS "err_minus" '
                 f"FROM {DMO} WHERE {PATIENT} AND {tf} GROUP BY time(1d) fill(none)")],
            unit=unit, description="Change of the daily value from the previous day with "
                                   "data (bars) against +- its expected error (lines): a bar "
                                   "beyond the lines is a change larger than the "
                                   "measurement error.",
            overrides=[override("change", custom__drawStyle="bars", custom__fillOpacity=60)])

    panels = [
        lay.place(trend("Walking speed", "walking_speed_mean_mps", "velocityms",
                        "walking_speed_mps", p90="walking_speed_p90_mps"), 12, 9),
        lay.place(trend("Cadence", "cadence_mean_spm", "none", "cadence_spm"), 12, 9),
        lay.place(trend("Stride-time variability (CV)", "stride_time_cv_mean_pct", "percent",
                        "stride_time_cv_pct"), 12, 9),
        lay.place(timeseries("Daily steps", [target(
            "A", f'SELECT "steps" AS "steps" FROM {DAILY} WHERE {PATIENT} AND {tf}')],
            unit="none", bars=True, thresholds_=REFERENCE["steps"]), 12, 9),
        lay.place(timeseries("Walking and wear time per day", [target(
            "A", f'SELECT "walking_min" AS "walking_min", "monitored_min" AS "monitored_min" '
                 f"FROM {DAILY} WHERE {PATIENT} AND {tf}")], unit="m", bars=True), 12, 9),
        lay.place(timeseries("Near-falls and falls per day", [target(
            "A", f'SELECT "near_falls" AS "near_falls", "falls" AS "falls" FROM {DAILY} '
                 f"WHERE {PATIENT} AND {tf}")], unit="none", bars=True), 12, 9),
        lay.place(timeseries("Fall-risk score", [target(
            "A", f'SELECT "fall_risk_mean" AS "fall_risk_mean", "fall_risk_max" AS '
                 f'"fall_risk_max" FROM {DAILY} WHERE {PATIENT} AND {tf}')],
            unit="percentunit", thresholds_=REFERENCE["fall_risk"]), 12, 9),
        lay.place(dmo_with_error("Walking speed, daily DMOs (bouts 10-30 s, mean)",
                                 "ws_1030_mean_mps", "velocityms"), 12, 9),
        lay.place(dmo_with_error("Cadence, daily DMOs (all bouts, mean)",
                                 "cadence_all_mean_spm", "none"), 12, 9),
        lay.place(dmo_change("Walking speed: day-to-day change vs measurement error",
                             "ws_1030_mean_mps", "velocityms"), 12, 9),
        lay.place(timeseries("Walking bouts per day by duration (Mobilise-D)", [target(
            "A", f'SELECT "wb_all_n" AS "all", "wb_10_n" AS "over_10s", '
                 f'"wb_30_n" AS "over_30s", "wb_60_n" AS "over_60s" FROM {DMO} '
                 f"WHERE {PATIENT} AND {tf}")], unit="none", bars=True,
            description="Daily mobility outcomes (dmo_daily): number of walking bouts in "
                        "Mobilise-D's duration bins."), 12, 9),
        lay.place(table("Daily mobility outcomes (Mobilise-D, +- expected error)", [target(
            "A", f'SELECT "day" AS "day", "final" AS "final", "wb_all_n" AS "bouts", '
                 f'"walkdur_all_s" AS "walking_s", '
                 f'"wbdur_all_median_s" AS "bout_median_s", '
                 f'"cadence_all_mean_spm" AS "cadence_spm", '
                 f'"cadence_all_mean_spm_err" AS "cadence_err", '
                 f'"strdur_all_mean_s" AS "stride_s", "strdur_all_mean_s_err" AS "stride_err", '
                 f'"ws_1030_mean_mps" AS "speed_1030_mps", '
                 f'"ws_1030_mean_mps_err" AS "speed_1030_err", '
                 f'"strlen_1030_mean_m" AS "stride_length_1030_m", '
                 f'"strlen_1030_mean_m_err" AS "stride_length_1030_err", '
                 f'"ws_10_p90_mps" AS "speed_p90_mps", "n_implausible" AS "implausible" '
                 f"FROM {DMO} WHERE {PATIENT} AND {tf}", table=True)],
            description="One row per clinic day (clinic time zone); 'final' once the day "
                        "has ended. *_err: the expected absolute error of the value beside "
                        "it (justwalk evaluate gait, leave-one-participant-out).",
            sort_by=[{"displayName": "Time", "desc": True}]), 24, 9),
        lay.place(table("Weekly summary", [target(
            "A", f'SELECT "walking_speed_mean_mps" AS "walking_speed_mean_mps", '
                 f'"cadence_mean_spm" AS "cadence_mean_spm", '
                 f'"stride_time_cv_mean_pct" AS "stride_time_cv_mean_pct", "steps" AS "steps", '
                 f'"walking_min" AS "walking_min", "bouts" AS "bouts", '
                 f'"near_falls" AS "near_falls", "falls" AS "falls" FROM {WEEKLY} '
                 f"WHERE {PATIENT} AND {tf}", table=True)],
            sort_by=[{"displayName": "Time", "desc": True}]), 12, 9),
    ]
    return dashboard(
        UID_LONGITUDINAL, "JustWalk: longitudinal", panels=panels,
        variables=[VAR_PATIENT], time_from="now-180d", refresh="",
        description="Per-patient daily and weekly trends over months.",
        links=[dashboard_link("Clinic overview", UID_OVERVIEW),
               dashboard_link("Patient detail", UID_PATIENT)])


DASHBOARDS = {
    "clinic-overview": clinic_overview,
    "patient-detail": patient_detail,
    "longitudinal": longitudinal,
}
