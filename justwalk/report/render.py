"""The report as HTML: a Jinja2 template (autoescaped) with the plots inline as SVG.

The page is self-contained (no scripts, no external files) and print-friendly, so the
same HTML is what the browser shows and what headless Chromium prints to PDF
(``justwalk.report.browser``). Each figure of the tables carries its raw value in
``data-value`` for the browser test to compare with the database and InfluxDB.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from justwalk.report import measures as m
from justwalk.report import plots
from justwalk.report.data import DAILY_FIELDS, WALK_TESTS, ReportData
from justwalk.report.notes import notes

TEMPLATE = "report.html.j2"

DAILY_COLUMNS = (
    ("steps", "steps", "d"),
    ("walking_min", "walking (min)", ".0f"),
    ("walking_speed_mean_mps", "speed (m/s)", ".2f"),
    ("cadence_mean_spm", "cadence (steps/min)", ".1f"),
    ("stride_time_cv_mean_pct", "stride-time CV (%)", ".1f"),
    ("near_falls", "near-falls", "d"),
    ("falls", "falls", "d"),
)
assert {c[0] for c in DAILY_COLUMNS} == set(DAILY_FIELDS)

_C = {
    "duration_s": ("duration (s)", ".0f"),
    "t25fw_time_s": ("T25FW time (s)", ".2f"),
    "distance_m": ("distance (m)", ".1f"),
    "distance_uncertainty_m": ("\u00b1 (m)", ".1f"),
    "steps": ("steps", "d"),
    "mean_speed_mps": ("speed (m/s)", ".2f"),
    "mean_cadence_spm": ("cadence (steps/min)", ".1f"),
    "stride_time_cv_pct": ("stride CV (%)", ".1f"),
    "dwi_pct": ("DWI (%)", ".1f"),
    "dwi_minute2_pct": ("DWI from min 2 (%)", ".1f"),
    "near_falls": ("near-falls", "d"),
}
_TEST_FIELDS = {
    "t25fw": ("t25fw_time_s", "distance_m", "mean_speed_mps", "steps", "near_falls"),
    "2mwt": ("distance_m", "distance_uncertainty_m", "steps", "mean_speed_mps",
             "mean_cadence_spm", "stride_time_cv_pct", "near_falls"),
    "6mwt": ("distance_m", "distance_uncertainty_m", "steps", "mean_speed_mps",
             "mean_cadence_spm", "stride_time_cv_pct", "dwi_pct", "dwi_minute2_pct",
             "near_falls"),
}
RESULT_COLUMNS = {kind: tuple((name, *_C[name]) for name in names)
                  for kind, names in _TEST_FIELDS.items()}
"""Per walk test, the result columns of its table: (field, heading, format)."""
MINUTE_COLUMNS = (
    ("distance_m", "distance (m)", ".1f"),
    ("steps", "steps", "d"),
    ("speed_mps", "speed (m/s)", ".2f"),
    ("cadence_spm", "cadence (steps/min)", ".1f"),
)
RANGE_LABELS = {
    "cadence_spm": "cadence (steps/min)", "walking_speed_mps": "walking speed (m/s)",
    "stride_length_m": "stride length (m)", "stride_time_cv_pct": "stride-time CV (%)",
    "daily_steps": "daily steps", "daily_walking_min": "daily walking time (min)",
    "t25fw_s": "T25FW time (s)", "two_mwt_distance_m": "2MWT distance (m)",
    "six_mwt_distance_m": "6MWT distance (m)",
}
THRESHOLD_LABELS = {
    "fall_risk_score": "fall-risk score (points)",
    "fall_risk_weekly_rise": "fall-risk rise in a week (points)",
    "min_daily_steps": "fewest daily steps", "min_walking_speed_mps": "slowest speed (m/s)",
    "fatigability_dwi_pct": "fatigability DWI (%)",
}
TEST_NAMES = {"t25fw": "Timed 25-Foot Walk", "2mwt": "2-Minute Walk Test",
              "6mwt": "6-Minute Walk Test"}


def fmt(value: Any, spec: str) -> str:
    """A value for a table cell; an em dash for a missing one."""
    if value is None:
        return "\u2014"
    if spec == "d":
        return f"{int(value):d}"
    return f"{float(value):{spec}}"


def raw(value: Any) -> str:
    """The exact value for ``data-value`` (``repr`` of the float: round-trips)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(float(value)) if isinstance(value, float) else str(value)


@cache
def environment() -> Environment:
    """The Jinja2 environment: templates of this package, autoescaping on."""
    env = Environment(loader=PackageLoader("justwalk.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["raw"] = raw
    return env


def render_html(data: ReportData) -> str:
    """The report page."""
    svgs = {k: None if v is None else Markup(v) for k, v in plots.all_plots(data).items()}
    influx_state = data.influx_problem or (
        f"the measurement {', '.join(data.missing)} does not exist yet"
        if data.missing else None)
    return environment().get_template(TEMPLATE).render(
        data=data, patient=data.patient, period=data.period, notes=notes(data), plots=svgs,
        labels=plots.LABELS, influx_state=influx_state,
        tests={k: data.tests(k) for k in WALK_TESTS}, test_names=TEST_NAMES,
        daily_columns=DAILY_COLUMNS, result_columns=RESULT_COLUMNS,
        minute_columns=MINUTE_COLUMNS, range_labels=RANGE_LABELS, threshold_labels=THRESHOLD_LABELS,
        adherence=m.adherence(data), dwi_threshold=m.dwi_threshold(data),
        t25fw_pct=m.T25FW_MEANINGFUL_PCT, speed_error=m.SPEED_ERROR_MPS,
        cadence_error=m.CADENCE_ERROR_SPM)
