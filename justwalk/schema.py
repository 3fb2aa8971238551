"""InfluxDB schema: retention policies, measurements, tags and fields, rollups, line protocol.

This module is the one contract between the writers (the sink, later the gait and fall
outputs), the readers (demo, dashboards, alert rules, tests) and the database itself
(``sinks.influx.InfluxClient.ensure_database`` creates what is defined here). The
field-by-field documentation is rendered into ``deploy/README.md`` by ``describe()``.

Rules:

* **Tags** are only the low-cardinality identifiers: ``clinic_id``, ``patient_id``,
  ``device_id`` and the device ``placement``. Everything else, the session id and the kind of
  an event included, is a field, so the series count stays ``clinics x patients x devices``.
* **Units are in field names** (``_spm``, ``_mps``, ``_m``, ``_s``, ``_pct``, ``_deg``).
* **Timestamps are event time** from the device clock, so a replay overwrites the same
  points instead of adding new ones.
* **Retention by resolution**: per-step points live in ``raw`` (90 days), per-window
  metrics in ``windows`` (2 years), everything per bout, per event, per session, fall-risk
  scores and the daily and weekly rollups in ``longterm`` (10 years, the database default).
* **Rollups** (``patient_daily``, ``patient_weekly``) are computed inside InfluxDB by
  continuous queries from the windows, bouts, events and fall-risk scores. CQs only look
  back ``resample_for``; data that arrives later (store-and-forward uploads, a rebuilt
  database) is rolled up with ``backfill_statements`` (``justwalk rollups backfill``).
* **One database per clinic** (``clinic_database``): a point goes to the database of its
  ``clinic_id`` tag, each with its own retention policies and continuous queries, so a
  clinic's read user (``GRANT READ``) can read its own patients and no one else's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from justwalk.mobility import BOUT_VALUES, DMOS
from justwalk.records import (
    AlertRecord,
    BoutRecord,
    DmoDailyRecord,
    FallRiskRecord,
    GaitEventRecord,
    GaitWindowRecord,
    Record,
    SessionRecord,
    StepRecord,
    WalkMinuteRecord,
    WalkTestRecord,
)

DATABASE_DEFAULT = "justwalk"
"""Prefix of the clinics' databases (``Settings.influx_db``)."""


def clinic_database(prefix: str, clinic_id: str) -> str:
    """The database that holds clinic ``clinic_id``'s points: ``<prefix>_<clinic_id>``.

    Clinic ids are wire identifiers (letters, digits, ``_.:-``), so distinct clinics always
    get distinct databases; InfluxQL quotes the name (``quote_ident``) wherever it appears.
    """
    if not prefix or not clinic_id:
        raise ValueError(f"a clinic database needs a prefix and a clinic id, got "
                         f"{prefix!r} and {clinic_id!r}")
    return f"{prefix}_{clinic_id}"


FieldValue = float | int | bool | str

# --------------------------------------------------------------------------- retention


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """An InfluxDB 1.x retention policy: how long its points are kept."""

    name: str
    duration: str
    """InfluxQL duration literal (``90d``, ``104w``)."""
    shard_duration: str
    default: bool
    description: str


RP_RAW = RetentionPolicy(
    "raw", "90d", "1d", False,
    "per-step points: the finest resolution, needed for a few weeks of detail")
RP_WINDOWS = RetentionPolicy(
    "windows", "104w", "1w", False,
    "per-window gait metrics (one point per patient every few seconds): two years")
RP_LONGTERM = RetentionPolicy(
    "longterm", "520w", "4w", True,
    "bouts, events, alerts, sessions, fall-risk scores and the daily/weekly rollups: "
    "ten years; the database default, so a write that names no policy is never lost early")
RETENTION_POLICIES: tuple[RetentionPolicy, ...] = (RP_RAW, RP_WINDOWS, RP_LONGTERM)

RETENTION_POLICY = RP_LONGTERM.name
"""The default retention policy: where a write that names no policy goes.

The sink writes there today (``InfluxSink(retention_policy=...)``); routing each
measurement to its own policy is ``InfluxClient.write_lines(..., retention_policy=None)``.
"""
RETENTION_DURATION = RP_LONGTERM.duration

# --------------------------------------------------------------------------- tags

TAG_CLINIC = "clinic_id"
TAG_PATIENT = "patient_id"
TAG_DEVICE = "device_id"
TAG_PLACEMENT = "placement"
TAG_KEYS = (TAG_CLINIC, TAG_PATIENT, TAG_DEVICE)
"""The identity tags every record carries (``record_to_line`` reads them from the record)."""
ALL_TAGS = (*TAG_KEYS, TAG_PLACEMENT)
"""Every tag key the schema allows; ``placement`` (e.g. ``lower_back``) is optional."""
ROLLUP_TAGS = (TAG_CLINIC, TAG_PATIENT)
"""Rollups are per patient: a patient who swaps a device keeps one series."""

# --------------------------------------------------------------------------- measurements


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a measurement; ``kind``: float, integer, boolean or string."""

    name: str
    kind: str
    description: str


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement: where it is kept, what its timestamp means, its fields."""

    name: str
    retention_policy: RetentionPolicy
    time: str
    description: str
    fields: tuple[Field, ...]
    tags: tuple[str, ...] = ALL_TAGS
    written_by: str = ""

    def field(self, name: str) -> Field:
        """The field called ``name`` (KeyError if the schema has none)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    @property
    def qualified(self) -> str:
        """``"rp"."measurement"``: how InfluxQL names it in any database."""
        return f'"{self.retention_policy.name}"."{self.name}"'


def _f(name: str, kind: str, description: str) -> Field:
    return Field(name, kind, description)


_SESSION = _f("session_id", "string", "recording session of the device (a field: unbounded)")

# Gait parameters shared by windows and bouts (names as justwalk.gait.GaitParameters).
_GAIT_PARAMETERS = (
    _f("cadence_spm", "float", "steps per minute while walking"),
    _f("stride_time_s", "float", "mean stride time (same foot to same foot)"),
    _f("stride_time_cv_pct", "float", "coefficient of variation of stride time, percent"),
    _f("step_time_asymmetry_pct", "float", "left/right step-time asymmetry, percent"),
    _f("step_regularity", "float", "autocorrelation at one step, 0..1"),
    _f("stride_regularity", "float", "autocorrelation at one stride, 0..1"),
    _f("stride_length_m", "float", "mean stride length"),
    _f("walking_speed_mps", "float", "mean walking speed"),
)

_BOUT_ERR_FIELD = {"stride_duration_s": "stride_time_s"}
"""``gait_bout`` field of a ``justwalk.mobility.BOUT_VALUES`` key where the names differ."""

MEASUREMENT_STEP = "step"
MEASUREMENT_GAIT_WINDOW = "gait_window"
MEASUREMENT_BOUT = "gait_bout"
MEASUREMENT_EVENT = "gait_event"
MEASUREMENT_ALERT = "alert"
MEASUREMENT_SESSION = "session"
MEASUREMENT_FALL_RISK = "fall_risk"
MEASUREMENT_DMO_DAILY = "dmo_daily"
MEASUREMENT_DAILY = "patient_daily"
MEASUREMENT_WEEKLY = "patient_weekly"

EVENT_TURN = "turn"
EVENT_NEAR_FALL = "near_fall"
EVENT_FALL = "fall"
EVENT_TYPES = (EVENT_TURN, EVENT_NEAR_FALL, EVENT_FALL)

STEP = Measurement(
    MEASUREMENT_STEP, RP_RAW,
    "initial contact of the foot (device clock)",
    "one point per detected step",
    (
        _SESSION,
        _f("step_index", "integer", "running number of the step within the session"),
        _f("step_time_s", "float", "time since the previous step of the same walking stretch"),
        _f("side", "string", "'left' or 'right' (issue #3)"),
        _f("bout_index", "integer", "walking bout the step belongs to (issue #3)"),
        _f("stride_time_s", "float", "time since the previous contact of the same foot"),
        _f("step_length_m", "float", "step length (issue #3)"),
        _f("stride_length_m", "float", "stride length (issue #3)"),
        _f("stride_speed_mps", "float", "stride length / stride time (issue #3)"),
    ),
    written_by="sink (StepRecord)",
)
GAIT_WINDOW = Measurement(
    MEASUREMENT_GAIT_WINDOW, RP_WINDOWS,
    "start of the window (device clock); the window covers [time, time + window_s)",
    "gait metrics over one fixed event-time window, also when the patient is not walking",
    (
        _SESSION,
        _f("window_s", "float", "window length"),
        _f("n_steps", "integer", "steps in the window"),
        _f("walking", "boolean", "the patient walked in this window"),
        _f("mean_step_time_s", "float", "mean step time while walking"),
        *_GAIT_PARAMETERS,
        _f("n_turns", "integer", "turns that ended in the window (issue #3)"),
    ),
    written_by="sink (GaitWindowRecord: one record per window from the validated gait "
               "pipeline)",
)
BOUT = Measurement(
    MEASUREMENT_BOUT, RP_LONGTERM,
    "start of the walking bout",
    "one point per walking bout, written when the bout ends",
    (
        _SESSION,
        _f("bout_index", "integer", "running number of the bout within the session"),
        _f("duration_s", "float", "bout duration"),
        _f("n_steps", "integer", "steps in the bout"),
        _f("step_time_s", "float", "mean step time (added with the processor wiring)"),
        *_GAIT_PARAMETERS,
        _f("n_turns", "integer", "turns in the bout"),
        _f("turn_angle_deg", "float", "sum of absolute turn angles in the bout"),
        *(_f(f"{_BOUT_ERR_FIELD.get(v, v)}_err", "float",
             f"expected absolute error of {_BOUT_ERR_FIELD.get(v, v)} at its value (issue "
             "#15: justwalk.mobility uncertainty table)") for v in BOUT_VALUES),
    ),
    written_by="sink (BoutRecord)",
)
EVENT = Measurement(
    MEASUREMENT_EVENT, RP_LONGTERM,
    "start of the event",
    "turns, near-falls and falls; one point per event",
    (
        _SESSION,
        _f("event_type", "string", "'turn', 'near_fall' or 'fall' (a field, see module doc)"),
        _f("duration_s", "float", "event duration (always present: count() counts events)"),
        _f("turn_angle_deg", "float", "turn angle, signed (turns)"),
        _f("turn_peak_rate_dps", "float", "peak yaw rate, degrees per second (turns)"),
        _f("peak_acc_mps2", "float", "peak acceleration magnitude (near-falls, falls)"),
        _f("peak_gyr_radps", "float", "peak angular rate magnitude (near-falls, falls)"),
        _f("trunk_tilt_before_deg", "float", "trunk tilt before the event (falls)"),
        _f("trunk_tilt_after_deg", "float", "trunk tilt after the event (falls)"),
        _f("confidence", "float", "detector confidence, 0..1"),
        _f("alert_id", "string", "id of the alert raised for it, if any"),
    ),
    written_by="sink (GaitEventRecord: turns of issue #3, near-falls and falls of #4)",
)
ALERT = Measurement(
    MEASUREMENT_ALERT, RP_LONGTERM,
    "start of the event the alert describes",
    "every alert raised (AlertRecord on the alerts topic); 'open' = raised in the last 24 h",
    (
        _SESSION,
        _f("alert_id", "string", "stable id of the alert (AlertRecord.alert_id)"),
        _f("alert_type", "string", "'near_fall', 'fall', ..."),
        _f("severity", "string", "'critical', 'warning' or 'info'"),
        _f("event_duration_s", "float", "event_end - event_start"),
        _f("confidence", "float", "detector confidence, 0..1, when the evidence has one"),
    ),
    written_by="sink (AlertRecord)",
)
SESSION = Measurement(
    MEASUREMENT_SESSION, RP_LONGTERM,
    "start of the session",
    "one point per recording session, rewritten as the session grows",
    (
        _SESSION,
        _f("duration_s", "float", "time from the first to the last sample so far"),
        _f("n_steps", "integer", "steps so far"),
        _f("walking_s", "float", "time spent walking so far"),
        _f("n_bouts", "integer", "walking bouts so far"),
        _f("ended", "boolean", "the session is closed"),
    ),
    written_by="sink (SessionRecord)",
)
FALL_RISK = Measurement(
    MEASUREMENT_FALL_RISK, RP_LONGTERM,
    "time of the assessment (end of the data it used)",
    "fall-risk score of a patient, from the gait and the near-falls of recent days",
    (
        _f("risk_score", "float", "fall risk, 0 (low) .. 1 (high)"),
        _f("risk_level", "string", "'low', 'moderate' or 'high'"),
        _f("model", "string", "name and version of the model that computed it"),
        _f("horizon_d", "integer", "days of data the score is based on"),
        # Added with the processor wiring: why the score is what it is (justwalk.risk).
        _f("assessment", "string",
           "'update' (after a bout, near-fall or fall) or 'daily' (a day's closing score)"),
        *(_f(f"pts_{c}", "float", f"points of the {c.replace('_', ' ')} component, 0..weight")
          for c in ("walking_speed", "stride_time_cv", "step_time_asymmetry", "near_falls",
                    "falls")),
        _f("walking_speed_mps", "float", "bout-weighted mean walking speed, gait window"),
        _f("stride_time_cv_pct", "float", "bout-weighted mean stride-time CV, gait window"),
        _f("step_time_asymmetry_pct", "float",
           "bout-weighted mean step-time asymmetry, gait window"),
        _f("walking_s", "float", "walking time in the qualifying bouts of the gait window"),
        _f("n_bouts", "integer", "qualifying bouts in the gait window"),
        _f("n_near_falls", "integer", "near-falls in the event window"),
        _f("n_falls", "integer", "falls in the event window"),
        _f("trend_pts_per_day", "float", "slope of the daily scores over the last 7 days"),
        _f("trend_r2", "float", "R^2 of that line (daily scores)"),
    ),
    tags=ROLLUP_TAGS,
    written_by="sink (FallRiskRecord; risk_score = points / 100)",
)

_DMO_STAT = {"count": "number of walking bouts", "sum": "total", "mean": "mean",
             "median": "median", "p90": "90th percentile", "cv": "coefficient of variation of"}
_DMO_BIN = {"all": "all bouts", "1030": "bouts of 10-30 s", "10": "bouts > 10 s",
            "30": "bouts > 30 s", "60": "bouts > 60 s"}
DMO_DAILY = Measurement(
    MEASUREMENT_DMO_DAILY, RP_LONGTERM,
    "local midnight starting the clinic day (clinic time zone)",
    "Mobilise-D daily digital mobility outcomes of a patient (justwalk.mobility), rewritten "
    "after every bout of the day and final at the day's end",
    (
        _f("day", "string", "ISO date of the clinic day"),
        _f("final", "boolean", "the day has ended (values no longer change)"),
        _f("cohort", "string", "cohort whose plausibility limits were applied"),
        _f("n_implausible", "integer", "bouts with a value outside the plausibility limits"),
        *(f for d in DMOS for f in (
            _f(d.name, "integer" if d.is_count else "float",
               f"{_DMO_STAT[d.stat]}"
               f"{'' if d.stat == 'count' else ' ' + d.quantity} over {_DMO_BIN[d.bin]} "
               f"(Mobilise-D {d.mobgap_name})"),
            _f(f"{d.name}_err", "float", f"expected absolute error of {d.name}"))),
    ),
    tags=ROLLUP_TAGS,
    written_by="sink (DmoDailyRecord)",
)

# --------------------------------------------------------------------------- rollups


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One rollup field: ``expression AS name`` over a source measurement."""

    name: str
    kind: str
    expression: str
    description: str


@dataclass(frozen=True, slots=True)
class RollupSource:
    """One SELECT of the rollups: aggregates of one measurement under one condition."""

    key: str
    source: Measurement
    where: str
    aggregates: tuple[Aggregate, ...]


@dataclass(frozen=True, slots=True)
class Period:
    """A rollup period: ``GROUP BY time(interval, offset)`` into ``target``."""

    key: str
    interval: str
    offset: str
    target: str
    resample_every: str
    resample_for: str
    interval_td: timedelta
    offset_td: timedelta


_WALKING = '"walking" = true'

ROLLUP_SOURCES: tuple[RollupSource, ...] = (
    RollupSource("wear", GAIT_WINDOW, "", (
        Aggregate("steps", "integer", 'sum("n_steps")', "steps"),
        Aggregate("monitored_min", "float", 'sum("window_s") / 60',
                  "minutes with data from the device (wear time)"),
    )),
    RollupSource("walking", GAIT_WINDOW, _WALKING, (
        Aggregate("walking_min", "float", 'sum("window_s") / 60', "minutes spent walking"),
        Aggregate("cadence_mean_spm", "float", 'mean("cadence_spm")',
                  "mean cadence over the walking windows"),
        Aggregate("walking_speed_mean_mps", "float", 'mean("walking_speed_mps")',
                  "mean walking speed over the walking windows"),
        Aggregate("walking_speed_p90_mps", "float", 'percentile("walking_speed_mps", 90)',
                  "90th percentile of window speed (the patient's best walking)"),
        Aggregate("stride_length_mean_m", "float", 'mean("stride_length_m")',
                  "mean stride length over the walking windows"),
        Aggregate("stride_time_cv_mean_pct", "float", 'mean("stride_time_cv_pct")',
                  "mean stride-time CV over the walking windows"),
        Aggregate("step_time_asymmetry_mean_pct", "float", 'mean("step_time_asymmetry_pct")',
                  "mean step-time asymmetry over the walking windows"),
    )),
    RollupSource("bouts", BOUT, "", (
        Aggregate("bouts", "integer", 'count("duration_s")', "walking bouts"),
        Aggregate("bout_duration_max_s", "float", 'max("duration_s")', "longest bout"),
    )),
    RollupSource("turns", EVENT, f"\"event_type\" = '{EVENT_TURN}'", (
        Aggregate("turns", "integer", 'count("duration_s")', "turns"),
    )),
    RollupSource("near_falls", EVENT, f"\"event_type\" = '{EVENT_NEAR_FALL}'", (
        Aggregate("near_falls", "integer", 'count("duration_s")', "near-falls"),
    )),
    RollupSource("falls", EVENT, f"\"event_type\" = '{EVENT_FALL}'", (
        Aggregate("falls", "integer", 'count("duration_s")', "falls"),
    )),
    RollupSource("fall_risk", FALL_RISK, "", (
        Aggregate("fall_risk_mean", "float", 'mean("risk_score")', "mean fall-risk score"),
        Aggregate("fall_risk_max", "float", 'max("risk_score")', "highest fall-risk score"),
    )),
)

PERIOD_DAILY = Period("daily", "1d", "0s", MEASUREMENT_DAILY, "30m", "2d",
                      timedelta(days=1), timedelta(0))
# InfluxDB's epoch (1970-01-01) was a Thursday; a 4-day offset starts weeks on Monday.
PERIOD_WEEKLY = Period("weekly", "1w", "4d", MEASUREMENT_WEEKLY, "6h", "2w",
                       timedelta(weeks=1), timedelta(days=4))
PERIODS = (PERIOD_DAILY, PERIOD_WEEKLY)

_ROLLUP_FIELDS = tuple(
    Field(a.name, a.kind, f"{a.description} ({a.expression} of {s.source.name}"
          + (f" where {s.where}" if s.where else "") + ")")
    for s in ROLLUP_SOURCES for a in s.aggregates
)

DAILY = Measurement(
    MEASUREMENT_DAILY, RP_LONGTERM,
    "start of the UTC day",
    "per-patient daily rollup (continuous queries); days without data have no point",
    _ROLLUP_FIELDS, tags=ROLLUP_TAGS, written_by="continuous queries cq_daily_*",
)
WEEKLY = Measurement(
    MEASUREMENT_WEEKLY, RP_LONGTERM,
    "Monday 00:00 UTC of the week",
    "per-patient weekly rollup (continuous queries), computed from the same raw points as "
    "the daily one (a weekly mean is the mean over the week's windows, not of daily means)",
    _ROLLUP_FIELDS, tags=ROLLUP_TAGS, written_by="continuous queries cq_weekly_*",
)

MEASUREMENT_WALK_TEST = "walk_test"
MEASUREMENT_WALK_TEST_MINUTE = "walk_test_minute"
_TRAINING = (
    _SESSION,
    _f("db_session_id", "integer", "the database's session (justwalk.db sessions.id)"),
    _f("session_type", "string", "free_walk, guided_walk, t25fw, 2mwt or 6mwt"),
)
WALK_TEST = Measurement(
    MEASUREMENT_WALK_TEST, RP_LONGTERM,
    "start of the training session (device time)",
    "one point per training session (walk test, guided or free walk), at its end "
    "(justwalk.training); each distance, speed and time with its uncertainty",
    (
        *_TRAINING,
        _f("status", "string", "completed, stopped_early or disconnected"),
        _f("duration_s", "float", "session (test) duration"),
        _f("distance_m", "float", "distance walked (T25FW: 7.62 m or the course)"),
        _f("distance_uncertainty_m", "float",
           "distance uncertainty: the gait evaluation's stride-length MAE relative to the "
           "session's stride length (0 for a measured course)"),
        _f("distance_source", "string", "imu (step lengths) or course (measured)"),
        _f("steps", "integer", "steps in the session"),
        _f("mean_speed_mps", "float", "distance / duration"),
        _f("speed_uncertainty_mps", "float", "uncertainty of mean_speed_mps"),
        _f("mean_cadence_spm", "float", "steps per minute over the duration"),
        _f("stride_time_cv_pct", "float", "variability: stride-time coefficient of variation"),
        _f("near_falls", "integer", "near-falls during the session"),
        _f("adherence_pct", "float", "share of the prescription's time (or distance) done"),
        _f("cadence_in_band_pct", "float", "steps with the running cadence in the band"),
        _f("t25fw_time_s", "float", "Timed 25-Foot Walk time"),
        _f("t25fw_time_uncertainty_s", "float", "uncertainty of t25fw_time_s"),
        _f("dwi_pct", "float", "Distance Walked Index, last minute vs minute 1 (2MWT, 6MWT)"),
        _f("dwi_minute2_pct", "float", "DWI with minute 2 as the baseline (6MWT)"),
        _f("fatigability", "boolean", "DWI <= -15 % (6MWT)"),
    ),
    written_by="sink (WalkTestRecord)",
)
WALK_TEST_MINUTE = Measurement(
    MEASUREMENT_WALK_TEST_MINUTE, RP_LONGTERM,
    "start of the minute (device time)",
    "one point per minute of a training session (per-minute walk-test values)",
    (
        *_TRAINING,
        _f("minute", "integer", "minute of the session, from 1"),
        _f("duration_s", "float", "60, or less for a last minute cut short"),
        _f("distance_m", "float", "distance in the minute"),
        _f("distance_uncertainty_m", "float", "uncertainty of distance_m"),
        _f("steps", "integer", "steps in the minute"),
        _f("speed_mps", "float", "distance / duration"),
        _f("cadence_spm", "float", "steps per minute"),
    ),
    written_by="sink (WalkMinuteRecord)",
)

MEASUREMENTS: tuple[Measurement, ...] = (
    STEP, GAIT_WINDOW, BOUT, EVENT, ALERT, SESSION, FALL_RISK, DMO_DAILY, DAILY, WEEKLY,
    WALK_TEST, WALK_TEST_MINUTE,
)
_BY_NAME = {m.name: m for m in MEASUREMENTS}


def measurement(name: str) -> Measurement:
    """The schema's measurement called ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"the schema has no measurement {name!r}") from None


def retention_policy_for(measurement_name: str) -> str:
    """Name of the retention policy a measurement's points are written to."""
    return measurement(measurement_name).retention_policy.name


def qualified(measurement_name: str) -> str:
    """``"rp"."measurement"`` for InfluxQL ``FROM`` clauses."""
    return measurement(measurement_name).qualified


# --------------------------------------------------------------------------- continuous queries


@dataclass(frozen=True, slots=True)
class ContinuousQuery:
    """One rollup CQ: a SELECT ... INTO that InfluxDB re-runs every ``resample_every``."""

    name: str
    period: Period
    source: RollupSource

    def select(self, database: str, time_condition: str = "") -> str:
        """The ``SELECT ... INTO ...`` (``time_condition`` added for a backfill)."""
        conditions = [c for c in (self.source.where, time_condition) if c]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        fields = ", ".join(f'{a.expression} AS "{a.name}"' for a in self.source.aggregates)
        offset = "" if self.period.offset == "0s" else f", {self.period.offset}"
        group = ", ".join(f'"{t}"' for t in ROLLUP_TAGS)
        src = self.source.source
        return (
            f'SELECT {fields} INTO "{database}"."{RP_LONGTERM.name}"."{self.period.target}" '
            f'FROM "{database}"."{src.retention_policy.name}"."{src.name}"{where} '
            f"GROUP BY time({self.period.interval}{offset}), {group}"
        )

    def create(self, database: str) -> str:
        """``CREATE CONTINUOUS QUERY`` statement for ``database``."""
        p = self.period
        return (
            f'CREATE CONTINUOUS QUERY "{self.name}" ON "{database}" '
            f"RESAMPLE EVERY {p.resample_every} FOR {p.resample_for} "
            f"BEGIN {self.select(database)} END"
        )


CONTINUOUS_QUERIES: tuple[ContinuousQuery, ...] = tuple(
    ContinuousQuery(f"cq_{p.key}_{s.key}", p, s) for p in PERIODS for s in ROLLUP_SOURCES
)


def _floor(t: datetime, p: Period) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC) + p.offset_td
    return epoch + ((t - epoch) // p.interval_td) * p.interval_td


def period_bounds(start: datetime, end: datetime, period: Period) -> tuple[datetime, datetime]:
    """``[start, end)`` widened to whole periods, so no bucket is rolled up from part of it."""
    lo = _floor(start, period)
    hi = _floor(end, period)
    if hi < end:
        hi += period.interval_td
    return lo, hi


def backfill_statements(database: str, start: datetime, end: datetime) -> list[str]:
    """Every CQ's SELECT ... INTO over whole periods covering ``[start, end)``.

    A CQ only recomputes the last ``resample_for``; this is how older data is rolled up
    (late uploads, a restored database, the tests). Rerunning it is harmless: the rollup
    points of a period are overwritten with the same values.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("backfill bounds must be timezone-aware")
    out = []
    for cq in CONTINUOUS_QUERIES:
        lo, hi = period_bounds(start, end, cq.period)
        cond = f"time >= '{_rfc3339(lo)}' AND time < '{_rfc3339(hi)}'"
        out.append(cq.select(database, cond))
    return out


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- line protocol


def _no_newline(s: str) -> str:
    if "\n" in s or "\r" in s:
        raise ValueError(f"line protocol cannot carry a line break: {s!r}")
    return s


def _escape_key(s: str) -> str:
    # Tag keys, tag values and field keys escape comma, equals and space; a backslash is
    # literal in InfluxDB 1.x (it is not un-escaped), so it is left as it is.
    return _no_newline(s).replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_measurement(s: str) -> str:
    return _no_newline(s).replace(",", "\\,").replace(" ", "\\ ")


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue | None],
    t_ns: int,
) -> str:
    """One line of InfluxDB line protocol. None fields are left out; empty tags too."""
    tag_part = "".join(
        f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags.items()) if v != ""
    )
    field_part = ",".join(
        f"{_escape_key(k)}={_field(v)}" for k, v in fields.items() if v is not None
    )
    if not field_part:
        raise ValueError(f"{measurement} point at {t_ns} has no fields")
    return f"{_escape_measurement(measurement)}{tag_part} {field_part} {t_ns}"


_KIND_CHECK: dict[str, tuple[type, ...]] = {
    "float": (float,),
    "integer": (int,),
    "boolean": (bool,),
    "string": (str,),
}


def point(
    measurement_name: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue | None],
    t_us: int,
) -> str:
    """One line for a schema measurement, checked against the schema.

    Unknown tags or fields, and values of the wrong type, raise ``ValueError`` (InfluxDB
    would otherwise create a new field or reject the whole batch on a type conflict).
    Integers are accepted for float fields and written as floats.
    """
    m = measurement(measurement_name)
    unknown_tags = set(tags) - set(m.tags)
    if unknown_tags:
        raise ValueError(f"{m.name} has no tags {sorted(unknown_tags)}")
    checked: dict[str, FieldValue | None] = {}
    for name, value in fields.items():
        try:
            kind = m.field(name).kind
        except KeyError:
            raise ValueError(f"{m.name} has no field {name!r}") from None
        if value is not None:
            if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            ok = isinstance(value, _KIND_CHECK[kind]) and not (
                kind == "integer" and isinstance(value, bool))
            if not ok:
                raise ValueError(f"{m.name}.{name} is {kind}, got {value!r}")
        checked[name] = value
    return line(m.name, tags, checked, t_us * 1000)


def record_to_line(record: Record) -> str:
    """The InfluxDB point for one output record."""
    tags = {k: getattr(record, k) for k in TAG_KEYS}
    if isinstance(record, StepRecord):
        return point(
            MEASUREMENT_STEP,
            tags,
            {
                "step_index": record.step_index,
                "step_time_s": record.step_time_s,
                "session_id": record.session_id,
                "side": record.side,
                "bout_index": record.bout_index,
                "stride_time_s": record.stride_time_s,
                "step_length_m": record.step_length_m,
                "stride_length_m": record.stride_length_m,
                "stride_speed_mps": record.stride_speed_mps,
            },
            record.t_us,
        )
    if isinstance(record, GaitWindowRecord):
        return point(
            MEASUREMENT_GAIT_WINDOW,
            tags,
            {
                "n_steps": record.n_steps,
                "walking": record.walking,
                "cadence_spm": record.cadence_spm,
                "mean_step_time_s": record.mean_step_time_s,
                "window_s": record.window_s,
                "session_id": record.session_id,
                "stride_time_s": record.stride_time_s,
                "stride_time_cv_pct": record.stride_time_cv_pct,
                "step_time_asymmetry_pct": record.step_time_asymmetry_pct,
                "step_regularity": record.step_regularity,
                "stride_regularity": record.stride_regularity,
                "stride_length_m": record.stride_length_m,
                "walking_speed_mps": record.walking_speed_mps,
                "n_turns": record.n_turns,
            },
            record.window_start_us,
        )
    if isinstance(record, BoutRecord):
        return point(
            MEASUREMENT_BOUT,
            tags,
            {
                "session_id": record.session_id,
                "bout_index": record.bout_index,
                "duration_s": record.duration_s,
                "n_steps": record.n_steps,
                "step_time_s": record.step_time_s,
                "cadence_spm": record.cadence_spm,
                "stride_time_s": record.stride_time_s,
                "stride_time_cv_pct": record.stride_time_cv_pct,
                "step_time_asymmetry_pct": record.step_time_asymmetry_pct,
                "step_regularity": record.step_regularity,
                "stride_regularity": record.stride_regularity,
                "stride_length_m": record.stride_length_m,
                "walking_speed_mps": record.walking_speed_mps,
                "n_turns": record.n_turns,
                "turn_angle_deg": record.turn_angle_deg,
                **{f"{_BOUT_ERR_FIELD.get(k, k)}_err": v for k, v in record.errors.items()},
            },
            record.start_us,
        )
    if isinstance(record, GaitEventRecord):
        return point(
            MEASUREMENT_EVENT,
            tags,
            {
                "session_id": record.session_id,
                "event_type": record.event_type,
                "duration_s": record.duration_s,
                "turn_angle_deg": record.turn_angle_deg,
                "turn_peak_rate_dps": record.turn_peak_rate_dps,
                "peak_acc_mps2": record.peak_acc_mps2,
                "peak_gyr_radps": record.peak_gyr_radps,
                "trunk_tilt_before_deg": record.trunk_tilt_before_deg,
                "trunk_tilt_after_deg": record.trunk_tilt_after_deg,
                "confidence": record.confidence,
                "alert_id": record.alert_id,
            },
            record.start_us,
        )
    if isinstance(record, SessionRecord):
        return point(
            MEASUREMENT_SESSION,
            tags,
            {
                "session_id": record.session_id,
                "duration_s": record.duration_s,
                "n_steps": record.n_steps,
                "walking_s": record.walking_s,
                "n_bouts": record.n_bouts,
                "ended": record.ended,
            },
            record.start_us,
        )
    if isinstance(record, WalkTestRecord | WalkMinuteRecord):
        return training_to_line(record)
    if isinstance(record, FallRiskRecord):
        return fall_risk_to_line(record)
    if isinstance(record, DmoDailyRecord):
        return dmo_daily_to_line(record)
    if isinstance(record, AlertRecord):
        return alert_to_line(record)
    raise TypeError(f"no InfluxDB mapping for {type(record).__name__}")


def fall_risk_to_line(risk: FallRiskRecord) -> str:
    """The ``fall_risk`` point of one assessment (per patient: clinic and patient tags only).

    ``risk_score`` is the score in points divided by 100 (the schema's 0..1 scale).
    """
    fields: dict[str, FieldValue | None] = {
        "risk_score": risk.score_pts / 100.0,
        "risk_level": risk.level,
        "model": risk.model,
        "horizon_d": risk.horizon_d,
        "assessment": risk.assessment,
    }
    for name, pts in risk.components_pts.items():
        fields[f"pts_{name}"] = pts
    for name in ("walking_speed_mps", "stride_time_cv_pct", "step_time_asymmetry_pct",
                 "walking_s"):
        fields[name] = risk.inputs.get(name)
    fields.update(n_bouts=risk.n_bouts, n_near_falls=risk.n_near_falls, n_falls=risk.n_falls,
                  trend_pts_per_day=risk.trend_pts_per_day, trend_r2=risk.trend_r2)
    return point(MEASUREMENT_FALL_RISK, {k: getattr(risk, k) for k in ROLLUP_TAGS}, fields,
                 risk.t_us)


def dmo_daily_to_line(rec: DmoDailyRecord) -> str:
    """The ``dmo_daily`` point of one patient-day (clinic and patient tags only)."""
    fields: dict[str, FieldValue | None] = {
        "day": rec.day, "final": rec.final, "cohort": rec.cohort,
        "n_implausible": rec.n_implausible}
    for d in DMOS:
        v = rec.values.get(d.name)
        fields[d.name] = None if v is None else (round(v) if d.is_count else v)
        fields[f"{d.name}_err"] = rec.errors.get(d.name)
    return point(MEASUREMENT_DMO_DAILY, {k: getattr(rec, k) for k in ROLLUP_TAGS}, fields,
                 rec.day_start_us)


def records_to_lines(records: Iterable[Record]) -> str:
    """Line-protocol body for a batch of records."""
    return "\n".join(record_to_line(r) for r in records)


def alert_to_line(alert: AlertRecord) -> str:
    """The ``alert`` point of one alert (timestamp: the event's start, device clock)."""
    confidence = alert.evidence.get("confidence")
    return point(
        MEASUREMENT_ALERT,
        {k: getattr(alert, k) for k in TAG_KEYS},
        {
            "session_id": alert.session_id,
            "alert_id": alert.alert_id,
            "alert_type": alert.type,
            "severity": alert.severity,
            "event_duration_s": (alert.event_end_us - alert.event_start_us) / 1e6,
            "confidence": float(confidence) if isinstance(confidence, int | float) else None,
        },
        alert.event_start_us,
    )


def fold_lines(lines: Iterable[str]) -> dict[tuple[str, str], dict[str, str]]:
    """What InfluxDB holds after these lines were written, in order.

    One point per measurement, tag set and time (the key: the line's head and timestamp);
    a later write of the same point overwrites the fields it carries and keeps the others
    (InfluxDB 1.x). Field values stay as written in line protocol. For comparing runs.
    """
    points: dict[tuple[str, str], dict[str, str]] = {}
    for text in lines:
        head, rest = _head_and_rest(text)
        fields, ts = rest.rsplit(" ", 1)
        points.setdefault((head, ts), {}).update(_line_fields(fields))
    return points


def _head_and_rest(text: str) -> tuple[str, str]:
    """Split a line at its first unescaped space: measurement and tags | fields and time."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == " ":
            return text[:i], text[i + 1:]
        i += 1
    raise ValueError(f"not a line of line protocol: {text!r}")


def _line_fields(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    key, buf, quoted, i = "", [], False, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            buf.append(text[i:i + 2])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if not quoted and c == "=" and not key:
            key, buf = "".join(buf), []
        elif not quoted and c == ",":
            out[key], key, buf = "".join(buf), "", []
        else:
            buf.append(c)
        i += 1
    if key:
        out[key] = "".join(buf)
    return out


_HEAD = re.compile(r"(?:[^\\ ]|\\.)*")
_HEAD_PART = re.compile(r"(?:[^\\,]|\\.)+")
_TAG = re.compile(r"((?:[^\\=]|\\.)*)=(.*)", re.S)
_UNESCAPE = re.compile(r"\\([,= ])")
_CLINIC_KEY = f",{TAG_CLINIC}="


def _line_head(text: str) -> str:
    """Measurement and tags: everything before the first unescaped space.

    As InfluxDB scans a line, a backslash and the character after it are one unit; of those,
    only an escaped comma, equals sign or space is unescaped (see _escape_key).
    """
    space = text.find(" ")
    if space >= 0 and "\\" not in text[:space]:
        return text[:space]  # nothing escaped: the usual case, and fast
    m = _HEAD.match(text)
    return m.group() if m else ""


def tags_of_line(text: str) -> dict[str, str]:
    """The tags of one line of line protocol, unescaped (``clinic_id`` -> ``clinic-a``)."""
    head = _line_head(text)
    if "\\" not in head:  # nothing escaped
        return {k: v for k, _, v in (t.partition("=") for t in head.split(",")[1:])}
    tags: dict[str, str] = {}
    for part in _HEAD_PART.findall(head)[1:]:  # [0] is the measurement
        m = _TAG.fullmatch(part)
        if m:
            tags[_UNESCAPE.sub(r"\1", m[1])] = _UNESCAPE.sub(r"\1", m[2])
    return tags


def clinic_of_line(text: str) -> str | None:
    """The ``clinic_id`` tag of one line of line protocol (None when it has none).

    The sink's router, called for every point: about 1 us a line when no tag is escaped.
    """
    head = _line_head(text)
    if "\\" in head:
        return tags_of_line(text).get(TAG_CLINIC) or None
    i = head.find(_CLINIC_KEY)
    if i < 0:
        return None
    value = head[i + len(_CLINIC_KEY):].split(",", 1)[0]
    return value or None


def measurement_of_line(text: str) -> str:
    """The (unescaped) measurement name of one line of line protocol."""
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in ", ":
            break
        i += 1
    return text[:i].replace("\\,", ",").replace("\\ ", " ")


# --------------------------------------------------------------------------- documentation


def describe() -> str:
    """The schema as Markdown (``deploy/README.md`` embeds it; a test keeps it current)."""
    out = ["| retention policy | duration | default | holds |", "|---|---|---|---|"]
    for rp in RETENTION_POLICIES:
        holds = ", ".join(f"`{m.name}`" for m in MEASUREMENTS if m.retention_policy is rp)
        out.append(f"| `{rp.name}` | {rp.duration} | {'yes' if rp.default else ''} | {holds} |")
    out.append("")
    out.append(f"Tags: {', '.join(f'`{t}`' for t in ALL_TAGS)} (rollups and `fall_risk`: "
               f"{', '.join(f'`{t}`' for t in ROLLUP_TAGS)}). Everything else is a field.")
    for m in MEASUREMENTS:
        out += ["", f"#### `{m.retention_policy.name}.{m.name}`", "",
                f"{m.description}. Time: {m.time}. Written by: {m.written_by}.", "",
                "| field | type | meaning |", "|---|---|---|"]
        out += [f"| `{f.name}` | {f.kind} | {f.description} |" for f in m.fields]
    out += ["", "#### Continuous queries", "",
            "In every clinic's database (`justwalk_<clinic>` with the default prefix):", "",
            "| name | runs every | looks back | statement |", "|---|---|---|---|"]
    for cq in CONTINUOUS_QUERIES:
        out.append(f"| `{cq.name}` | {cq.period.resample_every} | {cq.period.resample_for} | "
                   f"`{cq.select(clinic_database(DATABASE_DEFAULT, '<clinic>'))}` |")
    return "\n".join(out) + "\n"


def training_to_line(record: WalkTestRecord | WalkMinuteRecord) -> str:
    """The ``walk_test`` or ``walk_test_minute`` point of a training record."""
    tags = {k: getattr(record, k) for k in TAG_KEYS}
    m = WALK_TEST if isinstance(record, WalkTestRecord) else WALK_TEST_MINUTE
    fields = {f.name: getattr(record, f.name) for f in m.fields}
    t_us = record.start_us if isinstance(record, WalkTestRecord) else record.t_us
    return point(m.name, tags, fields, t_us)
