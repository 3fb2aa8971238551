"""The report's plots: matplotlib figures (Agg, no pyplot) serialised as inline SVG.

Text stays text in the SVG (``svg.fonttype: none``), so the axis labels are searchable,
print sharply and can be checked in the browser's DOM; ids are derived from a fixed salt,
so the same data gives the same file. Each function returns None when it has nothing to
draw, and the template says "no data".
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

import matplotlib
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from justwalk.report import measures as m
from justwalk.report.data import ReportData

matplotlib.use("Agg")
_LOCK = threading.Lock()
_STYLE: Any = {"svg.fonttype": "none", "svg.hashsalt": "justwalk-report", "font.size": 8.5,
          "axes.spines.top": False, "axes.spines.right": False,
          "font.family": "DejaVu Sans"}
WIDTH_IN = 7.2
HEIGHT_IN = 2.4
_BAND = "#8fd19e"
_LINE = "#1f5fa8"
_WARN = "#c0392b"

# Axis labels: the browser test looks for these in the page.
LABELS = {
    "speed": "walking speed (m/s)",
    "cadence": "cadence (steps/min)",
    "variability": "stride-time CV (%)",
    "steps": "steps per day",
    "walking_time": "walking time (min/day)",
    "t25fw": "T25FW time (s)",
    "distance": "distance (m)",
    "dwi": "DWI (%)",
    "events": "events per day",
    "adherence": "sessions per week",
}


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context(_STYLE):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]  # inline: no XML declaration or DOCTYPE


def _figure(rows: int = 1, cols: int = 1, height: float = HEIGHT_IN) -> tuple[Figure, Any]:
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(WIDTH_IN, height), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _dates(ax: Any, first: date, last: date, maxticks: int = 8) -> None:
    locator = AutoDateLocator(minticks=2, maxticks=maxticks)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    if first == last:  # a one-day report: its day's points (at midnight) in the middle
        midnight = datetime.combine(first, time(0))
        ax.set_xlim(midnight - timedelta(hours=12), midnight + timedelta(hours=12))
    else:
        ax.set_xlim(first, last)
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def _band(ax: Any, data: ReportData, metric: str) -> None:
    band = data.patient.get("reference_ranges", {}).get(metric)
    if band is not None:
        ax.axhspan(band["low"], band["high"], color=_BAND, alpha=0.35, linewidth=0, zorder=0,
                   label=f"personal range {band['low']:g}-{band['high']:g}")
        ax.legend(loc="best", frameon=True, framealpha=0.85, edgecolor="none", fontsize=7.5)


def daily_line(data: ReportData, field: str, label: str, metric: str) -> str | None:
    """One daily value over the period, with the personal reference range as a band."""
    points = [(d.day, getattr(d, field)) for d in data.daily if getattr(d, field) is not None]
    if not points:
        return None
    with matplotlib.rc_context(_STYLE):
        fig, axes = _figure()
        ax = axes[0][0]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=2.5,
                color=_LINE, linewidth=1.2)
        ax.set_ylabel(label)
        _dates(ax, data.period.first, data.period.last)
        _band(ax, data, metric)
        return _svg(fig)


def activity(data: ReportData) -> str | None:
    """Daily steps (bars) and walking time (line), each on its own panel."""
    days = [d for d in data.daily if d.steps is not None or d.walking_min is not None]
    if not days:
        return None
    with matplotlib.rc_context(_STYLE):
        fig, axes = _figure(2, 1, height=HEIGHT_IN * 1.6)
        top, bottom = axes[0][0], axes[1][0]
        steps = [(d.day, d.steps) for d in days if d.steps is not None]
        top.bar([s[0] for s in steps], [s[1] for s in steps], color=_LINE, width=0.8)
        top.set_ylabel(LABELS["steps"])
        _dates(top, data.period.first, data.period.last)
        _band(top, data, "daily_steps")
        threshold = data.patient.get("alert_thresholds", {}).get("min_daily_steps")
        if threshold is not None:
            top.axhline(threshold, color=_WARN, linestyle="--", linewidth=1,
                        label=f"alert below {threshold:g}")
            top.legend(loc="upper right", frameon=False, fontsize=7.5)
        walk = [(d.day, d.walking_min) for d in days if d.walking_min is not None]
        bottom.plot([w[0] for w in walk], [w[1] for w in walk], marker="o", markersize=2.5,
                    color="#6c3fa0", linewidth=1.2)
        bottom.set_ylabel(LABELS["walking_time"])
        _dates(bottom, data.period.first, data.period.last)
        _band(bottom, data, "daily_walking_min")
        return _svg(fig)


def _test_points(data: ReportData, kind: str, field: str) -> list[tuple[date, float, Any]]:
    return [(m.test_day(s), s["result"][field], s) for s in data.tests(kind)
            if s["result"].get(field) is not None]


def walk_tests(data: ReportData) -> str | None:
    """Walk tests against the thresholds.

    T25FW times (with the +/-20 % band around the first), 2MWT/6MWT distances (with their
    uncertainty) and the 6MWT's DWI against the fatigability threshold.
    """
    t25 = _test_points(data, "t25fw", "t25fw_time_s")
    dist = {k: _test_points(data, k, "distance_m") for k in ("2mwt", "6mwt")}
    dwi = _test_points(data, "6mwt", "dwi_pct")
    if not (t25 or dist["2mwt"] or dist["6mwt"] or dwi):
        return None
    with matplotlib.rc_context(_STYLE):
        fig, axes = _figure(1, 3, height=HEIGHT_IN * 1.15)
        a, b, c = axes[0]
        for ax in (a, b, c):
            _dates(ax, data.period.first - timedelta(days=2),
                   data.period.last + timedelta(days=2), maxticks=4)
        if t25:
            base = t25[0][1]
            a.axhspan(base * (1 - m.T25FW_MEANINGFUL_PCT / 100),
                      base * (1 + m.T25FW_MEANINGFUL_PCT / 100), color=_BAND, alpha=0.35,
                      linewidth=0, zorder=0, label="first ±20 %")
            a.plot([p[0] for p in t25], [p[1] for p in t25], marker="o", color=_LINE)
            a.legend(loc="best", frameon=False, fontsize=7)
        a.set_ylabel(LABELS["t25fw"])
        a.set_title("Timed 25-Foot Walk", fontsize=8.5)
        for kind, colour in (("2mwt", "#6c3fa0"), ("6mwt", _LINE)):
            pts = dist[kind]
            if pts:
                err = [p[2]["result"].get("distance_uncertainty_m") or 0.0 for p in pts]
                b.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=err, marker="o",
                           capsize=3, color=colour, label=kind.upper())
        if dist["2mwt"] or dist["6mwt"]:
            b.legend(loc="lower left", frameon=False, fontsize=7)
        b.set_ylabel(LABELS["distance"])
        b.set_title("2MWT / 6MWT distance", fontsize=8.5)
        threshold = m.dwi_threshold(data)
        if dwi:
            colours = [_WARN if p[1] <= threshold else _LINE for p in dwi]
            c.bar([p[0] for p in dwi], [p[1] for p in dwi], color=colours, width=2.5)
            values = [p[1] for p in dwi]
            c.set_ylim(min(*values, threshold) - 5, max(0.0, *values) + 3)
        c.axhline(threshold, color=_WARN, linestyle="--", linewidth=1,
                  label=f"fatigability {threshold:g} %")
        c.axhline(0, color="#555555", linewidth=0.6)
        c.legend(loc="lower left", frameon=False, fontsize=7)
        c.set_ylabel(LABELS["dwi"])
        c.set_title("6MWT Distance Walked Index", fontsize=8.5)
        return _svg(fig)


def events(data: ReportData) -> str | None:
    """Near-falls and falls per day (stacked bars)."""
    if not data.daily:
        return None
    with matplotlib.rc_context(_STYLE):
        fig, axes = _figure(height=HEIGHT_IN * 0.9)
        ax = axes[0][0]
        # Only days with events are drawn: a bar of height 0 is still an SVG path.
        hits = [d for d in data.daily if (d.near_falls or 0) + (d.falls or 0) > 0]
        days = [d.day for d in hits]
        near = [d.near_falls or 0 for d in hits]
        falls = [d.falls or 0 for d in hits]
        ax.bar(days, near, color="#e59b2f", width=0.8, label="near-falls")
        ax.bar(days, falls, bottom=near, color=_WARN, width=0.8, label="falls")
        ax.set_ylabel(LABELS["events"])
        top = max((n + f for n, f in zip(near, falls, strict=True)), default=0)
        ax.set_ylim(0, max(2, top + 1))
        ax.yaxis.get_major_locator().set_params(integer=True)
        _dates(ax, data.period.first, data.period.last)
        ax.legend(loc="upper right", frameon=False, fontsize=7.5)
        return _svg(fig)


def adherence(data: ReportData) -> str | None:
    """Completed prescribed sessions per week against the number prescribed."""
    weeks = m.weekly_adherence(data)
    if not data.prescriptions or not weeks:
        return None
    with matplotlib.rc_context(_STYLE):
        fig, axes = _figure(height=HEIGHT_IN * 0.9)
        ax = axes[0][0]
        starts: Sequence[date] = [w[0] for w in weeks]
        ax.bar(starts, [w[1] for w in weeks], width=5, color=_LINE, label="done",
               align="edge")
        ax.step(starts, [w[2] for w in weeks], where="post", color=_WARN, linewidth=1.2,
                label="prescribed")
        ax.set_ylabel(LABELS["adherence"])
        ax.yaxis.get_major_locator().set_params(integer=True)
        _dates(ax, starts[0], data.period.last)
        ax.legend(loc="upper right", frameon=False, fontsize=7.5)
        return _svg(fig)


def all_plots(data: ReportData) -> dict[str, str | None]:
    """Every plot of the report by its key (None: no data).

    One report draws at a time: matplotlib's style settings (``rc_context``) are global to
    the process, and the API renders in worker threads.
    """
    with _LOCK:
        return _all(data)


def _all(data: ReportData) -> dict[str, str | None]:
    return {
        "speed": daily_line(data, "walking_speed_mean_mps", LABELS["speed"],
                            "walking_speed_mps"),
        "cadence": daily_line(data, "cadence_mean_spm", LABELS["cadence"], "cadence_spm"),
        "variability": daily_line(data, "stride_time_cv_mean_pct", LABELS["variability"],
                                  "stride_time_cv_pct"),
        "activity": activity(data),
        "walk_tests": walk_tests(data),
        "events": events(data),
        "adherence": adherence(data),
    }
