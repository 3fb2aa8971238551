"""Plain-language notes on what changed in the period, for the therapist (no I/O).

Each note is one sentence a therapist can read out; ``attention`` marks the ones that call
for a look (a meaningful slowing, fatigability, falls, values outside the personal range).
The rules and their sources are in ``justwalk.report.measures``.
"""

from __future__ import annotations

from dataclasses import dataclass

from justwalk.report import measures as m
from justwalk.report.data import ReportData

_TEST_NAMES = {"2mwt": "2MWT", "6mwt": "6MWT"}
_RANGE_METRICS = (
    # reference-range metric, daily field, what it is, unit, format
    ("walking_speed_mps", "walking_speed_mean_mps", "Mean walking speed", "m/s", ".2f"),
    ("cadence_spm", "cadence_mean_spm", "Mean cadence", "steps/min", ".0f"),
    ("stride_time_cv_pct", "stride_time_cv_mean_pct", "Stride-time variability (CV)", "%",
     ".1f"),
    ("daily_steps", "steps", "Mean daily steps", "steps", ".0f"),
    ("daily_walking_min", "walking_min", "Mean daily walking time", "min", ".0f"),
)


@dataclass(frozen=True, slots=True)
class Note:
    """One sentence; ``attention``: worth the therapist's look."""

    text: str
    attention: bool = False


def _t25fw(data: ReportData) -> list[Note]:
    found = m.test_change(data, "t25fw", "t25fw_time_s")
    if found is None:
        return []
    c, _ = found
    pct = c.pct
    direction = "slower" if pct > 0 else "faster"
    meaningful = abs(pct) >= m.T25FW_MEANINGFUL_PCT
    verdict = ("a clinically meaningful change (≥ 20 %)" if meaningful
               else "not yet a clinically meaningful change (< 20 %)")
    return [Note(f"T25FW {abs(pct):.0f} % {direction} than on {c.first_label} "
                 f"({c.first:.1f} s → {c.last:.1f} s on {c.last_label}); {verdict}.",
                 attention=meaningful and pct > 0)]


def _distances(data: ReportData) -> list[Note]:
    notes = []
    for kind, name in _TEST_NAMES.items():
        found = m.test_change(data, kind, "distance_m")
        if found is None:
            continue
        c, u = found
        text = (f"{name} distance {c.first:.0f} m on {c.first_label} → {c.last:.0f} m on "
                f"{c.last_label} ({c.delta:+.0f} m, {c.pct:+.0f} %)")
        if u is not None:
            beyond = abs(c.delta) > u
            text += ("; larger than the measurement uncertainty" if beyond
                     else "; within the measurement uncertainty") + f" (±{u:.0f} m)"
        notes.append(Note(text + "."))
    return notes


def _fatigability(data: ReportData) -> list[Note]:
    threshold = m.dwi_threshold(data)
    tests = [s for s in data.tests("6mwt") if s["result"].get("dwi_pct") is not None]
    if not tests:
        return []
    flagged = [s for s in tests if s["result"]["dwi_pct"] <= threshold]
    last = tests[-1]
    dwi = last["result"]["dwi_pct"]
    state = ("walking-related fatigability" if dwi <= threshold
             else "no walking-related fatigability")
    text = (f"Last 6MWT ({m.test_day(last).isoformat()}): DWI {dwi:+.0f} % (minute 6 vs "
            f"minute 1): {state} (threshold DWI ≤ {threshold:.0f} %)")
    if len(tests) > 1:
        text += f"; {len(flagged)} of {len(tests)} 6MWTs in the period reached it"
    return [Note(text + ".", attention=dwi <= threshold)]


def _gait(data: ReportData) -> list[Note]:
    notes = []
    for field, what, unit, fmt, error in (
            ("walking_speed_mean_mps", "Walking speed", "m/s", ".2f", m.SPEED_ERROR_MPS),
            ("cadence_mean_spm", "Cadence", "steps/min", ".0f", m.CADENCE_ERROR_SPM),
            ("stride_time_cv_mean_pct", "Stride-time variability (CV)", "%", ".1f", None)):
        c = m.daily_change(data.daily, field)
        if c is None:
            continue
        text = (f"{what} {c.first:{fmt}} → {c.last:{fmt}} {unit} (means of "
                f"{c.first_label} and {c.last_label}, {c.pct:+.0f} %)")
        if error is not None:
            within = abs(c.delta) <= error
            text += ("; within the measurement error" if within
                     else "; larger than the measurement error") + f" (±{error:.2g} {unit})"
        notes.append(Note(text + "."))
    return notes


def _ranges(data: ReportData) -> list[Note]:
    ranges = data.patient.get("reference_ranges", {})
    notes = []
    for metric, field, what, unit, fmt in _RANGE_METRICS:
        band = ranges.get(metric)
        mean = m.period_mean(data.daily, field)
        if band is None or mean is None:
            continue
        if band["low"] <= mean <= band["high"]:
            continue
        side = "below" if mean < band["low"] else "above"
        notes.append(Note(f"{what} over the period, {mean:{fmt}} {unit}, is {side} the "
                          f"personal reference range {band['low']:g}-{band['high']:g} {unit}.",
                          attention=True))
    steps_min = data.patient.get("alert_thresholds", {}).get("min_daily_steps")
    if steps_min is not None:
        low = [d for d in data.daily if d.steps is not None and d.steps < steps_min]
        if low:
            notes.append(Note(f"{len(low)} of {len(data.daily)} days had fewer than "
                              f"{steps_min:g} steps (the patient's alert threshold).",
                              attention=True))
    return notes


def _events(data: ReportData) -> list[Note]:
    if not data.daily:
        return []
    near, falls = m.event_totals(data.daily)
    session_near = sum((s["result"] or {}).get("near_falls", 0) or 0 for s in data.sessions)
    text = f"{near} near-fall{'s' * (near != 1)} and {falls} fall{'s' * (falls != 1)} " \
           "detected in the period"
    if session_near:
        text += f" ({session_near} of the near-falls during sessions)"
    return [Note(text + ".", attention=falls > 0)]


def _adherence(data: ReportData) -> list[Note]:
    notes = []
    for a in m.adherence(data):
        if a.pct is None:
            continue
        notes.append(Note(f"Prescription {a.prescription_id} ({a.session_type}, "
                          f"{a.times_per_week}x/week): {a.done} of {a.expected:.0f} sessions "
                          f"done ({a.pct:.0f} %).", attention=a.pct < 50))
    return notes


def notes(data: ReportData) -> list[Note]:
    """The report's notes, walk tests first."""
    return [*_t25fw(data), *_distances(data), *_fatigability(data), *_gait(data),
            *_ranges(data), *_events(data), *_adherence(data)]
