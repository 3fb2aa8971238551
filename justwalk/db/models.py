"""The database's tables: clinics, their API tokens, patients, prescriptions and sessions.

Patients are pseudonymous ids (the ids the devices are registered to, ``justwalk.wire``'s
``ID_PATTERN``), unique across the installation as in the device registry and the stream
processor; nothing identifying is stored. Units are in the column names, SI inside.

Session types (``SessionType``): free walk, guided walk and the standard walk tests, Timed
25-Foot Walk (T25FW, time over 7.62 m), 2-Minute and 6-Minute Walk Tests (2MWT, 6MWT; per
minute values in ``session_minutes``, the Distance Walked Index in ``session_results``).
The schema is changed only through Alembic migrations (``justwalk/db/migrations``);
``tests/test_db_migrations.py`` checks that they and these models agree.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

ID_LENGTH = 64
NOTE_MAX_CHARS = 2000


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and returned timezone-aware (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None,
                             dialect: Dialect) -> datetime | None:
        """UTC-aware, whatever the backend returned."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SessionType(enum.StrEnum):
    """What a session (and a prescription) is."""

    FREE_WALK = "free_walk"
    GUIDED_WALK = "guided_walk"
    T25FW = "t25fw"
    """Timed 25-Foot Walk: time over 7.62 m."""
    TWO_MWT = "2mwt"
    """2-Minute Walk Test."""
    SIX_MWT = "6mwt"
    """6-Minute Walk Test."""


class Pace(enum.StrEnum):
    """The pace a prescription asks for."""

    COMFORTABLE = "comfortable"
    FAST = "fast"
    """As fast as safely possible (the T25FW's instruction)."""


class WalkingAid(enum.StrEnum):
    """The walking aid a patient uses (EDSS-style categories)."""

    NONE = "none"
    CANE = "cane"
    TWO_CANES = "two_canes"
    CRUTCHES = "crutches"
    WALKER = "walker"
    ROLLATOR = "rollator"


class SessionStatus(enum.StrEnum):
    """Where a session stands."""

    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED_EARLY = "stopped_early"
    """Stopped by the device before a test's duration or distance was reached."""
    DISCONNECTED = "disconnected"
    """The device went away mid-session; what arrived is kept."""


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    # VARCHAR holding the values (not the member names), the same on SQLite and PostgreSQL.
    return Enum(cls, name=name, native_enum=False, create_constraint=True, length=16,
                values_callable=lambda members: [m.value for m in members],
                validate_strings=True)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with stable constraint names (migrations refer to them)."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON()}


def _now() -> datetime:
    return datetime.now(UTC)


class Clinic(Base):
    """A clinic; it sees and changes only its own patients."""

    __tablename__ = "clinics"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=_now)

    patients: Mapped[list[Patient]] = relationship(back_populates="clinic")


class ApiToken(Base):
    """A clinic's bearer token for the HTTP API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=_now)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Patient(Base):
    """A pseudonymous patient profile: no names or other identifying data."""

    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.id"), index=True)
    sensor_height_m: Mapped[float | None] = mapped_column(Float, default=None)
    """Lower-back sensor above the ground (inverted-pendulum length); None: the default."""
    walking_aid: Mapped[WalkingAid] = mapped_column(_enum(WalkingAid, "walking_aid"),
                                                    default=WalkingAid.NONE)
    reference_ranges: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Personal reference ranges, ``{metric: {"low": x, "high": y}}``
    (``justwalk.db.inputs.REFERENCE_METRICS``)."""
    alert_thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Personal alert thresholds, ``{name: value}`` (``justwalk.db.inputs.ALERT_THRESHOLDS``)."""
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)

    clinic: Mapped[Clinic] = relationship(back_populates="patients")
    prescriptions: Mapped[list[Prescription]] = relationship(
        back_populates="patient", order_by="Prescription.id")


class Prescription(Base):
    """Walking practice a therapist prescribes, with the real-time feedback it gets."""

    __tablename__ = "prescriptions"
    __table_args__ = (
        CheckConstraint("cadence_low_spm IS NULL OR cadence_high_spm IS NULL "
                        "OR cadence_low_spm <= cadence_high_spm", name="cadence_band"),
        CheckConstraint("end_date IS NULL OR start_date <= end_date", name="dates"),
        CheckConstraint("times_per_week >= 1 AND times_per_week <= 21", name="frequency"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    session_type: Mapped[SessionType] = mapped_column(_enum(SessionType, "session_type"))
    pace: Mapped[Pace] = mapped_column(_enum(Pace, "pace"), default=Pace.COMFORTABLE)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    """Walking time asked for (fixed 120 s / 360 s for the 2MWT / 6MWT; none for T25FW)."""
    target_distance_m: Mapped[float | None] = mapped_column(Float, default=None)
    times_per_week: Mapped[int] = mapped_column(Integer)
    cadence_low_spm: Mapped[float | None] = mapped_column(Float, default=None)
    cadence_high_spm: Mapped[float | None] = mapped_column(Float, default=None)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    therapist_note: Mapped[str] = mapped_column(Text, default="")
    # Real-time feedback during the prescribed sessions (issue #16 item 3).
    feedback_cadence_cue: Mapped[bool] = mapped_column(Boolean, default=True)
    """Cue the patient when the cadence leaves the band."""
    feedback_metronome_spm: Mapped[float | None] = mapped_column(Float, default=None)
    """Tempo of the metronome the device plays (rhythmic auditory cueing); None: off."""
    feedback_rest_suggestion: Mapped[bool] = mapped_column(Boolean, default=True)
    """Suggest a rest when speed or cadence decline signals fatigue."""
    feedback_progress_every_s: Mapped[float] = mapped_column(Float, default=60.0)
    """How often the device is told the session's time, distance and steps."""
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)

    patient: Mapped[Patient] = relationship(back_populates="prescriptions")


class Session(Base):
    """One walking session of a patient, started and stopped by the device."""

    __tablename__ = "sessions"
    __table_args__ = (UniqueConstraint("device_id", "device_session_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    prescription_id: Mapped[int | None] = mapped_column(ForeignKey("prescriptions.id"),
                                                        default=None, index=True)
    session_type: Mapped[SessionType] = mapped_column(_enum(SessionType, "session_type"))
    device_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    device_session_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    """The session id the device's chunks carry (``justwalk.wire``)."""
    status: Mapped[SessionStatus] = mapped_column(_enum(SessionStatus, "session_status"),
                                                  default=SessionStatus.RUNNING)
    started_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    course_length_m: Mapped[float | None] = mapped_column(Float, default=None)
    """A measured course length, where the clinic has one (walk tests)."""

    result: Mapped[SessionResult | None] = relationship(back_populates="session")
    minutes: Mapped[list[SessionMinute]] = relationship(order_by="SessionMinute.minute")


class SessionResult(Base):
    """What a finished session measured, each distance with its uncertainty."""

    __tablename__ = "session_results"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    duration_s: Mapped[float] = mapped_column(Float)
    distance_m: Mapped[float | None] = mapped_column(Float, default=None)
    distance_uncertainty_m: Mapped[float | None] = mapped_column(Float, default=None)
    """Uncertainty of ``distance_m`` (from the IMU stride lengths' error, or the course)."""
    steps: Mapped[int] = mapped_column(Integer, default=0)
    mean_speed_mps: Mapped[float | None] = mapped_column(Float, default=None)
    mean_cadence_spm: Mapped[float | None] = mapped_column(Float, default=None)
    stride_time_cv_pct: Mapped[float | None] = mapped_column(Float, default=None)
    """Variability: coefficient of variation of the stride times."""
    near_falls: Mapped[int] = mapped_column(Integer, default=0)
    adherence_pct: Mapped[float | None] = mapped_column(Float, default=None)
    """How much of the prescription the session fulfilled."""
    t25fw_time_s: Mapped[float | None] = mapped_column(Float, default=None)
    dwi_pct: Mapped[float | None] = mapped_column(Float, default=None)
    """Distance Walked Index, (last minute - minute 1) / minute 1 x 100."""
    dwi_minute2_pct: Mapped[float | None] = mapped_column(Float, default=None)
    """The same with minute 2 as the baseline."""
    fatigability: Mapped[bool | None] = mapped_column(Boolean, default=None)
    """DWI <= -15 %: walking-related fatigability."""

    session: Mapped[Session] = relationship(back_populates="result")


class SessionMinute(Base):
    """One minute of a timed walk test (2MWT, 6MWT)."""

    __tablename__ = "session_minutes"
    __table_args__ = (CheckConstraint("minute >= 1", name="minute"),)

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    minute: Mapped[int] = mapped_column(Integer, primary_key=True)
    distance_m: Mapped[float] = mapped_column(Float)
    steps: Mapped[int] = mapped_column(Integer)
    speed_mps: Mapped[float] = mapped_column(Float)
    cadence_spm: Mapped[float] = mapped_column(Float)
