"""Small builders for Grafana dashboard JSON (schema version 39, Grafana 11).

Only what the JustWalk dashboards use. Every InfluxQL target is a raw query (``rawQuery``),
so what the provisioning files hold is exactly what ``tests/test_dashboards.py`` runs.
"""

from __future__ import annotations

from typing import Any

from justwalk import schema

DATASOURCE_UID = "justwalk-influxdb"
DATASOURCE_NAME = "JustWalk InfluxDB"
DS: dict[str, str] = {"type": "influxdb", "uid": DATASOURCE_UID}
FOLDER_UID = "justwalk"
FOLDER_TITLE = "JustWalk"

PATIENT = f"\"{schema.TAG_PATIENT}\" = '$patient'"
WALKING = '"walking" = true'

Json = dict[str, Any]


def q(measurement: str) -> str:
    """``"rp"."measurement"`` of a schema measurement."""
    return schema.qualified(measurement)


def target(ref: str, query: str, *, table: bool = False, alias: str = "") -> Json:
    """An InfluxQL raw-query target."""
    t: Json = {
        "refId": ref,
        "datasource": DS,
        "query": query,
        "rawQuery": True,
        "resultFormat": "table" if table else "time_series",
    }
    if alias:
        t["alias"] = alias
    return t


def thresholds(*steps: tuple[float | None, str]) -> Json:
    """Absolute thresholds: ``(None, base colour), (value, colour), ...``."""
    return {"mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in steps]}


class Layout:
    """Places panels left to right, top to bottom on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, panel: Json, w: int, h: int) -> Json:
        """Give ``panel`` an id and a grid position."""
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel


def panel(kind: str, title: str, targets: list[Json], *, unit: str = "",
          description: str = "", decimals: int | None = None,
          thresholds_: Json | None = None, options: Json | None = None,
          overrides: list[Json] | None = None, custom: Json | None = None,
          transformations: list[Json] | None = None,
          mappings: list[Json] | None = None) -> Json:
    """One panel with its queries."""
    defaults: Json = {}
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    if thresholds_ is not None:
        defaults["thresholds"] = thresholds_
        defaults["color"] = {"mode": "thresholds"}
    if custom:
        defaults["custom"] = custom
    if mappings:
        defaults["mappings"] = mappings
    p: Json = {
        "type": kind,
        "title": title,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if description:
        p["description"] = description
    if transformations:
        p["transformations"] = transformations
    return p


def override(name: str, **props: Any) -> Json:
    """Field override by column name: ``override("cadence_spm", unit="none")``."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()],
    }


def stat(title: str, query: str, *, unit: str = "none", description: str = "",
         thresholds_: Json | None = None) -> Json:
    """A single-number panel."""
    return panel("stat", title, [target("A", query)], unit=unit, description=description,
                 thresholds_=thresholds_ or thresholds((None, "blue")),
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                            "values": False},
                          "colorMode": "value", "graphMode": "none", "textMode": "value"})


def timeseries(title: str, targets: list[Json], *, unit: str, description: str = "",
               thresholds_: Json | None = None, bars: bool = False,
               overrides: list[Json] | None = None) -> Json:
    """A time-series graph; thresholds drawn as dashed lines and areas (reference ranges)."""
    custom: Json = {"drawStyle": "bars" if bars else "line", "lineWidth": 2,
                    "pointSize": 5, "showPoints": "auto", "spanNulls": False,
                    "fillOpacity": 60 if bars else 0}
    if thresholds_ is not None:
        custom["thresholdsStyle"] = {"mode": "line+area"}
    p = panel("timeseries", title, targets, unit=unit, description=description,
              thresholds_=thresholds_, custom=custom, overrides=overrides,
              options={"legend": {"displayMode": "list", "placement": "bottom"},
                       "tooltip": {"mode": "multi", "sort": "none"}})
    if thresholds_ is not None:
        # colour the lines by series, not by threshold
        p["fieldConfig"]["defaults"]["color"] = {"mode": "palette-classic"}
    return p


def table(title: str, targets: list[Json], *, description: str = "",
          overrides: list[Json] | None = None, transformations: list[Json] | None = None,
          sort_by: list[Json] | None = None) -> Json:
    """A table panel (one row per patient or per bout/event)."""
    return panel("table", title, targets, description=description, overrides=overrides,
                 transformations=transformations,
                 custom={"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True},
                 options={"showHeader": True, "cellHeight": "sm",
                          "footer": {"show": False, "reducer": ["sum"], "fields": ""},
                          "sortBy": sort_by or []})


def query_variable(name: str, label: str, query: str) -> Json:
    """A template variable filled from InfluxDB (``SHOW TAG VALUES ...``)."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": False,
        "includeAll": False,
        "current": {},
        "options": [],
        "hide": 0,
        "skipUrlSync": False,
    }


def annotation(name: str, query: str, color: str, *, text_column: str = "text",
               tags_column: str = "") -> Json:
    """An InfluxQL annotation query (events on the time axis)."""
    a: Json = {
        "name": name,
        "datasource": DS,
        "enable": True,
        "iconColor": color,
        "query": query,
        "textColumn": text_column,
    }
    if tags_column:
        a["tagsColumn"] = tags_column
    return a


BUILTIN_ANNOTATION: Json = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def dashboard(uid: str, title: str, *, panels: list[Json], variables: list[Json],
              annotations: list[Json] | None = None, time_from: str, refresh: str,
              description: str, links: list[Json] | None = None) -> Json:
    """A whole dashboard."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["justwalk"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "monday",
        "links": links or [],
        "annotations": {"list": [BUILTIN_ANNOTATION, *(annotations or [])]},
        "templating": {"list": variables},
        "panels": panels,
    }


def dashboard_link(title: str, uid: str, *, keep_vars: bool = True) -> Json:
    """A link to another JustWalk dashboard that carries the patient over."""
    return {"title": title, "type": "link", "url": f"/d/{uid}", "includeVars": keep_vars,
            "keepTime": False, "icon": "dashboard", "targetBlank": False, "tags": [],
            "asDropdown": False, "tooltip": ""}
