"""Output records of the stream processors: the contract of the gait.* Kafka topics.

Records are small JSON objects (one per step, window, bout, event or fall-risk
assessment). Each carries the identity tags (clinic, patient, device, session) and an event
time taken from the device clock, so writing the same record twice produces the same
InfluxDB point (idempotent replay). Values that are not available (NaN in the gait core)
are ``None`` here: JSON has no NaN.

=================== ===================== ================================================
record              topic (``Settings``)  InfluxDB measurement (``justwalk.schema``)
=================== ===================== ================================================
StepRecord          ``topic_steps``       ``step``
GaitWindowRecord    ``topic_windows``     ``gait_window``
BoutRecord          ``topic_bouts``       ``gait_bout``
GaitEventRecord     ``topic_events``      ``gait_event`` (turns, near-falls, falls)
FallRiskRecord      ``topic_risk``        ``fall_risk``
DmoDailyRecord      ``topic_risk``        ``dmo_daily`` (per patient and clinic day)
SessionRecord       ``topic_sessions``    ``session`` (one point per session, rewritten)
AlertRecord         ``topic_alerts``      ``alert``
WalkTestRecord      ``topic_training``    ``walk_test`` (and the database's session result)
WalkMinuteRecord    ``topic_training``    ``walk_test_minute``
FeedbackRecord      ``topic_feedback``    (none: pushed to the device by the gateway)
=================== ===================== ================================================
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self

import orjson

_dumps = orjson.dumps


def _dict_maker(cls: type[_TopicRecord]) -> Any:
    """``lambda r: {"kind": KIND, "field": r.field, ...}`` for a record class.

    orjson serialises a slotted dataclass by looking each field up by name (~2 us for a
    step); a dict literal of attribute reads is built in ~0.6 us and serialised in ~0.6 us,
    to the same bytes (the same keys in the same order). Generated once per class from its
    dataclass fields (identifiers), as ``dataclasses`` generates ``__init__``.
    """
    items = ", ".join(f"{f.name!r}: r.{f.name}" for f in fields(cls))  # type: ignore[arg-type]
    code = f"lambda r: {{'kind': kind, {items}}}" if items else "lambda r: {'kind': kind}"
    return eval(code, {"kind": cls.KIND})  # built from the class's own fields


class _TopicRecord:
    """What every record on a gait/alert topic shares: its JSON form with a ``kind``.

    ``from_dict`` takes the fields the class knows and leaves defaulted ones that a
    record written by an older version lacks at their defaults.
    """

    __slots__ = ()
    KIND: ClassVar[str]

    def to_json(self) -> bytes:
        """Serialise for Kafka: the record's fields after ``"kind"`` (NaN, if any, as null)."""
        cls = type(self)
        as_dict = cls.__dict__.get("_as_dict")  # the class's own: a subclass has more fields
        if as_dict is None:
            as_dict = _dict_maker(cls)
            cls._as_dict = as_dict  # type: ignore[attr-defined]
        return _dumps(as_dict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Inverse of ``to_json`` after json parsing."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class StepRecord(_TopicRecord):
    """One detected step (an initial contact of a foot), at device time ``t_us``.

    The processor publishes the validated gait pipeline's steps (issue #3): initial
    contacts inside walking bouts, with their side, bout and spatial values (None when not
    available), the same steps ``justwalk evaluate gait`` scores.
    """

    KIND: ClassVar[str] = "step"

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    t_us: int
    step_index: int
    step_time_s: float | None
    """Time since the previous step of the same walking stretch; None for the first one."""
    side: str | None = None
    """"left" or "right"."""
    bout_index: int | None = None
    """Walking bout of the session the step belongs to (``BoutRecord.bout_index``)."""
    stride_time_s: float | None = None
    step_length_m: float | None = None
    stride_length_m: float | None = None
    stride_speed_mps: float | None = None


@dataclass(frozen=True, slots=True)
class GaitWindowRecord(_TopicRecord):
    """Gait over one event-time window [window_start_us, + window_s) (the ``gait_window`` point).

    Everything comes from the validated gait pipeline (``justwalk.gait.pipeline``, the
    pipeline ``justwalk evaluate gait`` scores): its steps in the window, the walking flag
    (at least 3 steps), cadence (mean of 120 / stride time over the strides ending in the
    window), step and stride time, variability, regularity, stride length, walking speed
    and the turns that ended in the window. Windows are aligned to multiples of the window
    since the epoch. Gait values are None when the patient was not walking in the window
    or the value could not be computed.
    """

    KIND: ClassVar[str] = "gait_window"

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    window_start_us: int
    window_s: float
    n_steps: int
    walking: bool
    cadence_spm: float | None
    mean_step_time_s: float | None
    stride_time_s: float | None = None
    stride_time_cv_pct: float | None = None
    step_time_asymmetry_pct: float | None = None
    step_regularity: float | None = None
    stride_regularity: float | None = None
    stride_length_m: float | None = None
    walking_speed_mps: float | None = None
    n_turns: int = 0
    """Turns that ended in the window."""


def finite_or_none(x: float) -> float | None:
    """``x`` as a plain float, or None when it is NaN or infinite (not available)."""
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True, slots=True)
class BoutRecord(_TopicRecord):
    """One walking bout, from its first to its last initial contact (issue #3).

    Published when the bout has ended. ``bout_index`` runs within the session. Gait values
    are None when not available (too few strides, no step length).
    """

    KIND: ClassVar[str] = "gait_bout"

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    bout_index: int
    start_us: int
    end_us: int
    duration_s: float
    n_steps: int
    cadence_spm: float | None
    step_time_s: float | None
    stride_time_s: float | None
    stride_time_cv_pct: float | None
    step_time_asymmetry_pct: float | None
    step_regularity: float | None
    stride_regularity: float | None
    stride_length_m: float | None
    walking_speed_mps: float | None
    n_turns: int
    turn_angle_deg: float
    """Sum of the absolute angles of the turns in the bout."""
    errors: dict[str, float | None] = field(default_factory=dict)
    """Expected absolute error of bout values (keys ``justwalk.mobility.BOUT_VALUES``,
    e.g. ``walking_speed_mps``): the evaluation's MAE at that value (issue #15)."""


@dataclass(frozen=True, slots=True)
class SessionRecord(_TopicRecord):
    """Running summary of one recording session, at device time ``start_us``.

    Published when the session starts, whenever a bout closes, at least every
    ``Settings.session_summary_every_s`` of device time while data arrives, and when the
    session's segment is flushed or the session ends (``ended``). Every summary of a
    session has the same time and tags, so InfluxDB keeps only the newest: the clinic's
    sessions table shows each session once, growing until it ends.
    """

    KIND: ClassVar[str] = "session"

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    start_us: int
    """Device time of the session's first sample."""
    end_us: int
    """Device time just after the session's last sample so far."""
    n_steps: int
    n_bouts: int
    walking_s: float
    """Summed duration of the session's walking bouts (first to last initial contact)."""
    ended: bool
    """The session's last chunk (end flag) was processed."""

    @property
    def duration_s(self) -> float:
        """Time from the first to the last sample so far."""
        return (self.end_us - self.start_us) / 1e6


EVENT_TURN = "turn"
EVENT_NEAR_FALL = "near_fall"
EVENT_FALL = "fall"


@dataclass(frozen=True, slots=True)
class GaitEventRecord(_TopicRecord):
    """One turn (issue #3), near-fall or fall (issue #4), from its start to its end.

    Turns carry ``turn_angle_deg`` (signed, positive to the left) and
    ``turn_peak_rate_dps``; near-falls and falls carry the detector's peak values, trunk
    tilts, confidence and the id of the alert raised for them. Fields that do not apply
    are None.
    """

    KIND: ClassVar[str] = "gait_event"

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    event_type: str
    """``"turn"``, ``"near_fall"`` or ``"fall"``."""
    start_us: int
    end_us: int
    duration_s: float
    turn_angle_deg: float | None = None
    turn_peak_rate_dps: float | None = None
    peak_acc_mps2: float | None = None
    peak_gyr_radps: float | None = None
    trunk_tilt_before_deg: float | None = None
    trunk_tilt_after_deg: float | None = None
    confidence: float | None = None
    alert_id: str | None = None


RISK_UPDATE = "update"
RISK_DAILY = "daily"
RISK_LEVEL_CUTOFFS_PTS = (30.0, 60.0)
"""Scores (points) from which the level is 'moderate' and 'high' (the dashboards' colours)."""


def risk_level(score_pts: float) -> str:
    """'low', 'moderate' or 'high' for a fall-risk score in points (0..100)."""
    moderate, high = RISK_LEVEL_CUTOFFS_PTS
    return "high" if score_pts >= high else "moderate" if score_pts >= moderate else "low"


@dataclass(frozen=True, slots=True)
class FallRiskRecord(_TopicRecord):
    """A patient's fall-risk score (issue #4; formula in ``justwalk.risk``).

    ``assessment`` is ``"update"`` (recomputed after a counted walking bout, near-fall or
    fall; ``t_us`` = end of that input) or ``"daily"`` (a clinic day's closing score;
    ``t_us`` = the last microsecond of that day, ``trend_r2`` set). The score is per
    patient; device and session are those of the chunk that produced it. ``score_pts`` is
    0..100 points, the sum of ``components_pts`` (keys ``justwalk.risk.COMPONENTS``);
    ``inputs`` the gait values behind them (None = no qualifying walking);
    ``trend_pts_per_day`` the slope of the daily scores over the last 7 days.
    """

    KIND: ClassVar[str] = "fall_risk"

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    assessment: str
    t_us: int
    day: str
    """ISO date of the clinic day the score belongs to."""
    score_pts: float
    components_pts: dict[str, float]
    inputs: dict[str, float | None]
    n_bouts: int
    n_near_falls: int
    n_falls: int
    trend_pts_per_day: float | None
    trend_r2: float | None
    n_trend_days: int
    horizon_d: int
    """Days of data the score looks back over (its longest window)."""
    model: str

    @property
    def level(self) -> str:
        """'low', 'moderate' or 'high' (``risk_level``)."""
        return risk_level(self.score_pts)


@dataclass(frozen=True, slots=True)
class DmoDailyRecord(_TopicRecord):
    """A patient's Mobilise-D daily mobility outcomes for one clinic day (issue #15).

    Published after every bout of the day (``final`` False) and at the day's end in the
    clinic's time zone (``final`` True; a late upload into a recently closed day republishes
    it final). ``day_start_us`` (local midnight) is the point's time, so each publication
    overwrites the day's point. ``values``: ``justwalk.mobility.DMOS`` names (None = not
    defined that day); ``errors``: the expected absolute error of each (None = unknown);
    ``n_implausible``: bouts with a value outside the cohort's plausibility limits. Per
    patient; device and session are those of the data that produced it.
    """

    KIND: ClassVar[str] = "dmo_daily"

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    day: str
    """ISO date of the clinic day."""
    day_start_us: int
    final: bool
    cohort: str
    n_implausible: int
    values: dict[str, float | None]
    errors: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class RejectRecord:
    """Input that was refused, as published to the rejects topic (the error stream).

    ``source`` is "gateway" (a device sent it) or "processor" (it reached Kafka but could
    not be processed; ``kafka_position`` is then "topic/partition/offset").
    """

    received_at_us: int
    source: str
    code: str
    reason: str
    device_id: str | None = None
    patient_id: str | None = None
    session_id: str | None = None
    sequence: int | None = None
    kafka_position: str | None = None

    def to_json(self) -> bytes:
        """Serialise for Kafka."""
        return orjson.dumps(self)


ALERT_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class AlertRecord(_TopicRecord):
    """One alert on the ``alerts`` topic: the single alert format of the whole system.

    ``alert_id`` is stable for the event it describes (derived from patient, session, type
    and the event's start time), so a processor that replays a chunk after a restart
    produces the same id and receivers can recognise duplicates. Times are device time,
    except ``raised_at_us`` (wall clock when the processor raised it, for latency).
    ``severity`` is "critical" (fall), "warning" (near-fall, rising fall risk) or "info".
    ``evidence`` holds the numbers that led to the alert (peak acceleration in g, angular
    rate in rad/s, trunk tilt before/after in degrees, confidence 0..1, ...).
    """

    alert_id: str
    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    type: str
    severity: str
    event_start_us: int
    event_end_us: int
    raised_at_us: int
    evidence: dict[str, float | str]
    version: int = ALERT_FORMAT_VERSION
    chunk_received_at_us: int | None = None
    """Wall-clock time the gateway received the chunk that completed the event (latency)."""

    KIND: ClassVar[str] = "alert"

    @staticmethod
    def make_id(patient_id: str, session_id: str, type_: str, event_start_us: int) -> str:
        """The stable id of an event's alert."""
        key = f"{patient_id}|{session_id}|{type_}|{event_start_us}".encode()
        return hashlib.sha256(key).hexdigest()[:32]


def decode_alert(data: bytes) -> AlertRecord:
    """Parse an alert from the alerts topic. Raises ValueError on anything unexpected."""
    try:
        d = json.loads(data)
        if d.get("kind") != AlertRecord.KIND:
            raise KeyError("kind")
        return AlertRecord.from_dict(d)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an alert: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class WalkTestRecord(_TopicRecord):
    """The result of one training session (walk test, guided or free walk), once, at its end.

    Time: ``start_us`` (device time of the session's start). ``db_session_id`` is the
    database's session (``justwalk.db``) the sink stores the result in. Values and their
    uncertainties: ``justwalk.training.WalkResult``; ``minutes`` repeats the per-minute
    values (``WalkMinuteRecord``) for the database.
    """

    KIND: ClassVar[str] = "walk_test"

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    db_session_id: int
    session_type: str
    status: str
    start_us: int
    end_us: int
    duration_s: float
    distance_m: float
    distance_uncertainty_m: float | None
    distance_source: str
    steps: int
    mean_speed_mps: float | None
    speed_uncertainty_mps: float | None
    mean_cadence_spm: float | None
    stride_time_cv_pct: float | None
    near_falls: int
    adherence_pct: float | None
    cadence_in_band_pct: float | None
    t25fw_time_s: float | None
    t25fw_time_uncertainty_s: float | None
    dwi_pct: float | None
    dwi_minute2_pct: float | None
    fatigability: bool | None
    minutes: list[dict[str, Any]]
    """``[{"minute", "distance_m", "steps", "speed_mps", "cadence_spm"}]``."""


@dataclass(frozen=True, slots=True)
class WalkMinuteRecord(_TopicRecord):
    """One minute of a training session, published when it is final.

    Time: the minute's start (``session start + (minute - 1) x 60 s``, device time).
    """

    KIND: ClassVar[str] = "walk_test_minute"

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    db_session_id: int
    session_type: str
    minute: int
    t_us: int
    duration_s: float
    distance_m: float
    distance_uncertainty_m: float | None
    steps: int
    speed_mps: float
    cadence_spm: float


@dataclass(frozen=True, slots=True)
class FeedbackRecord(_TopicRecord):
    """A feedback decision for the patient's device (``justwalk.device_protocol``).

    ``t_us``: device time the decision refers to; ``raised_at_us``: processor wall clock;
    ``chunk_received_at_us``: the gateway's receipt of the chunk that caused it (latency).
    """

    KIND: ClassVar[str] = "feedback"

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    feedback: str
    """``cadence_cue``, ``fatigue``, ``safety``, ``progress`` or ``test_end``."""
    t_us: int
    text: str
    values: dict[str, Any]
    raised_at_us: int
    chunk_received_at_us: int | None = None


Record = (StepRecord | GaitWindowRecord | BoutRecord | GaitEventRecord | FallRiskRecord
          | AlertRecord | SessionRecord | DmoDailyRecord | WalkTestRecord | WalkMinuteRecord)
_KINDS: dict[str, type[Record]] = {
    cls.KIND: cls
    for cls in (StepRecord, GaitWindowRecord, BoutRecord, GaitEventRecord, FallRiskRecord,
                AlertRecord, SessionRecord, DmoDailyRecord, WalkTestRecord, WalkMinuteRecord)
}


def decode_record(data: bytes) -> Record:
    """Parse a record from a gait.* topic. Raises ValueError on anything unexpected."""
    try:
        d = orjson.loads(data)
        cls = _KINDS[d["kind"]]
        return cls.from_dict(d)
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"not a gait record: {exc!r}") from exc
