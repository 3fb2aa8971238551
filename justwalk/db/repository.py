"""The one interface to the database: clinics, tokens, patients, prescriptions, sessions.

Every method runs in its own transaction and returns JSON-ready dicts
(``justwalk.db.views``). Methods that take a ``clinic_id`` see only that clinic's patients:
another clinic's patient is reported as not found, exactly like one that does not exist.
``clinic_id=None`` is the operator's view (the CLI), across clinics. Input is validated by
``justwalk.db.inputs``; violations raise :class:`InputError`, :class:`NotFound` or
:class:`Conflict`, each with a message for the user.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import selectinload, sessionmaker

from justwalk.db.inputs import InputError, check_id, patient_values, prescription_values
from justwalk.db.models import (
    ApiToken,
    Clinic,
    Patient,
    Prescription,
    Session,
    SessionMinute,
    SessionResult,
    SessionStatus,
    SessionType,
)
from justwalk.db.views import patient_view, prescription_view, session_view

__all__ = ["Conflict", "InputError", "NotFound", "Repository", "hash_token"]

TOKEN_BYTES = 32


class NotFound(LookupError):
    """No such clinic, patient, prescription or session (or not the caller's)."""


class Conflict(ValueError):
    """The change contradicts what is stored (an id already taken, ...)."""


def hash_token(token: str) -> str:
    """SHA-256 of an API token, lowercase hex (all the database keeps of it)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _today() -> date:
    return datetime.now(UTC).date()


class Repository:
    """Clinics' data in the database of ``engine`` (schema at the newest migration)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # ----------------------------------------------------------------------- clinics

    def add_clinic(self, clinic_id: str) -> None:
        """Register a clinic."""
        check_id(clinic_id, "clinic_id")
        with self._sessions.begin() as s:
            if s.get(Clinic, clinic_id) is not None:
                raise Conflict(f"clinic {clinic_id!r} exists already")
            s.add(Clinic(id=clinic_id))

    def clinics(self) -> list[str]:
        """All clinic ids, sorted."""
        with self._sessions() as s:
            return list(s.scalars(select(Clinic.id).order_by(Clinic.id)))

    def issue_token(self, clinic_id: str, label: str = "") -> str:
        """A new API token of the clinic; returned once, only its hash is stored."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._sessions.begin() as s:
            _clinic(s, clinic_id)
            s.add(ApiToken(clinic_id=clinic_id, token_sha256=hash_token(token), label=label))
        return token

    def revoke_tokens(self, clinic_id: str) -> int:
        """Revoke every token of the clinic; how many were live."""
        with self._sessions.begin() as s:
            _clinic(s, clinic_id)
            live = list(s.scalars(select(ApiToken).where(
                ApiToken.clinic_id == clinic_id, ApiToken.revoked_at.is_(None))))
            for token in live:
                token.revoked_at = datetime.now(UTC)
            return len(live)

    def authenticate(self, token: str) -> str | None:
        """The clinic whose live token ``token`` is, or None.

        Looked up by digest (timing reveals nothing usable about the token); the final
        comparison is constant-time all the same, as in the gateway's device registry.
        """
        if not token:
            return None
        digest = hash_token(token)
        with self._sessions() as s:
            row = s.execute(select(ApiToken.token_sha256, ApiToken.clinic_id).where(
                ApiToken.token_sha256 == digest, ApiToken.revoked_at.is_(None))).first()
        if row is None or not hmac.compare_digest(row[0], digest):
            return None
        return str(row[1])

    # ---------------------------------------------------------------------- patients

    def create_patient(self, clinic_id: str, patient_id: str,
                       data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A new patient of ``clinic_id`` with the profile ``data`` (``inputs``)."""
        check_id(patient_id, "patient_id")
        values = patient_values(data or {})
        with self._sessions.begin() as s:
            _clinic(s, clinic_id)
            if s.get(Patient, patient_id) is not None:
                raise Conflict(f"patient id {patient_id!r} is taken; choose another "
                               "pseudonymous id")
            patient = Patient(id=patient_id, clinic_id=clinic_id, **values)
            s.add(patient)
            try:
                s.flush()
            except IntegrityError:  # created concurrently
                raise Conflict(f"patient id {patient_id!r} is taken") from None
            return patient_view(patient)

    def patients(self, clinic_id: str | None) -> list[dict[str, Any]]:
        """The clinic's patients (every clinic's with None), by id."""
        query = select(Patient).order_by(Patient.id)
        if clinic_id is not None:
            query = query.where(Patient.clinic_id == clinic_id)
        with self._sessions() as s:
            return [patient_view(p) for p in s.scalars(query)]

    def patient(self, clinic_id: str | None, patient_id: str) -> dict[str, Any]:
        """One patient's profile."""
        with self._sessions() as s:
            return patient_view(_patient(s, clinic_id, patient_id))

    def update_patient(self, clinic_id: str | None, patient_id: str,
                       data: Mapping[str, Any]) -> dict[str, Any]:
        """Change the fields of the profile that ``data`` gives."""
        values = patient_values(data)
        with self._sessions.begin() as s:
            patient = _patient(s, clinic_id, patient_id)
            for name, value in values.items():
                setattr(patient, name, value)
            s.flush()
            return patient_view(patient)

    def import_sensor_heights(self, clinic_id: str,
                              heights: Mapping[str, float | None]) -> tuple[int, int]:
        """Profiles of today's JSON file into the clinic: (created, updated). All or nothing.

        A patient without a height (None) is created without one, or left as it is.
        """
        created = updated = 0
        with self._sessions.begin() as s:
            _clinic(s, clinic_id)
            for patient_id, height in heights.items():
                check_id(patient_id, "patient_id")
                values = {} if height is None else patient_values({"sensor_height_m": height})
                patient = s.get(Patient, patient_id)
                if patient is None:
                    s.add(Patient(id=patient_id, clinic_id=clinic_id, **values))
                    created += 1
                elif patient.clinic_id != clinic_id:
                    raise Conflict(f"patient {patient_id!r} belongs to clinic "
                                   f"{patient.clinic_id!r}, not {clinic_id!r}; nothing imported")
                elif values:
                    patient.sensor_height_m = values["sensor_height_m"]
                    updated += 1
        return created, updated

    def sensor_heights(self) -> dict[str, float]:
        """Sensor height (m) per patient id, for those whose profile gives one."""
        with self._sessions() as s:
            rows = s.execute(select(Patient.id, Patient.sensor_height_m).where(
                Patient.sensor_height_m.is_not(None)))
            return {pid: float(h) for pid, h in rows if h is not None}

    # ----------------------------------------------------------------- prescriptions

    def create_prescription(self, clinic_id: str | None, patient_id: str,
                            data: Mapping[str, Any], *,
                            today: date | None = None) -> dict[str, Any]:
        """A new prescription for the patient (``inputs.prescription_values``)."""
        values = prescription_values(data, today=today or _today())
        with self._sessions.begin() as s:
            _patient(s, clinic_id, patient_id)
            rx = Prescription(patient_id=patient_id, **values)
            s.add(rx)
            s.flush()
            return prescription_view(rx)

    def prescriptions(self, clinic_id: str | None, patient_id: str, *,
                      active_only: bool = False) -> list[dict[str, Any]]:
        """The patient's prescriptions, oldest first."""
        with self._sessions() as s:
            _patient(s, clinic_id, patient_id)
            query = select(Prescription).where(Prescription.patient_id == patient_id)
            if active_only:
                query = query.where(Prescription.active.is_(True))
            return [prescription_view(rx) for rx in s.scalars(query.order_by(Prescription.id))]

    def prescription(self, clinic_id: str | None, prescription_id: int) -> dict[str, Any]:
        """One prescription."""
        with self._sessions() as s:
            return prescription_view(_prescription(s, clinic_id, prescription_id))

    def update_prescription(self, clinic_id: str | None, prescription_id: int,
                            data: Mapping[str, Any]) -> dict[str, Any]:
        """Change the fields ``data`` gives, checked with the ones it leaves."""
        with self._sessions.begin() as s:
            rx = _prescription(s, clinic_id, prescription_id)
            current = {c.key: getattr(rx, c.key) for c in Prescription.__table__.columns}
            for name, value in prescription_values(data, current=current).items():
                setattr(rx, name, value)
            s.flush()
            return prescription_view(rx)

    # ---------------------------------------------------------------------- sessions

    def start_session(self, clinic_id: str | None, patient_id: str, *, device_id: str,
                      device_session_id: str, session_type: SessionType | str,
                      started_at: datetime, prescription_id: int | None = None,
                      course_length_m: float | None = None) -> dict[str, Any]:
        """Record a session the device started (a prescribed one names its prescription)."""
        check_id(device_id, "device_id")
        check_id(device_session_id, "device_session_id")
        try:
            kind = SessionType(session_type)
        except ValueError:
            raise InputError(f"session_type: {session_type!r} is not one of "
                             f"{[m.value for m in SessionType]}") from None
        with self._sessions.begin() as s:
            _patient(s, clinic_id, patient_id)
            if prescription_id is not None:
                rx = s.get(Prescription, prescription_id)
                if rx is None or rx.patient_id != patient_id:
                    raise NotFound(f"patient {patient_id!r} has no prescription "
                                   f"{prescription_id}")
                if not rx.active:
                    raise Conflict(f"prescription {prescription_id} is not active")
                if rx.session_type is not kind:
                    raise Conflict(f"prescription {prescription_id} is a "
                                   f"{rx.session_type.value}, not a {kind.value}")
            if s.scalar(select(func.count()).select_from(Session).where(
                    Session.device_id == device_id,
                    Session.device_session_id == device_session_id)):
                raise Conflict(f"device {device_id!r} already started session "
                               f"{device_session_id!r}")
            session = Session(patient_id=patient_id, prescription_id=prescription_id,
                              session_type=kind, device_id=device_id,
                              device_session_id=device_session_id,
                              started_at=_utc(started_at, "started_at"),
                              course_length_m=course_length_m)
            s.add(session)
            s.flush()
            return session_view(session)

    def finish_session(self, session_id: int, *, status: SessionStatus, ended_at: datetime,
                       result: Mapping[str, Any] | None = None,
                       minutes: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """Close a session with what it measured; a session is finished once.

        ``result`` and ``minutes`` hold ``SessionResult`` and ``SessionMinute`` fields.
        """
        with self._sessions.begin() as s:
            session = s.get(Session, session_id)
            if session is None:
                raise NotFound(f"no session {session_id}")
            if session.status is not SessionStatus.RUNNING:
                raise Conflict(f"session {session_id} is {session.status.value} already")
            if status is SessionStatus.RUNNING:
                raise InputError("a finished session cannot be running")
            session.status, session.ended_at = status, _utc(ended_at, "ended_at")
            if result is not None:
                s.add(SessionResult(session_id=session_id, **result))
            s.add_all(SessionMinute(session_id=session_id, **m) for m in minutes)
            s.flush()
            s.refresh(session)
            return session_view(session)

    def device_session(self, device_id: str,
                       device_session_id: str) -> dict[str, Any] | None:
        """The session a device started under ``device_session_id``, or None."""
        with self._sessions() as s:
            session = s.scalar(select(Session).options(
                selectinload(Session.result), selectinload(Session.minutes)).where(
                Session.device_id == device_id,
                Session.device_session_id == device_session_id))
            return None if session is None else session_view(session)

    def sessions(self, clinic_id: str | None, patient_id: str | None = None, *,
                 limit: int = 100) -> list[dict[str, Any]]:
        """Sessions, newest first: of one patient, or of the clinic (every clinic: None)."""
        query = (select(Session).options(selectinload(Session.result),
                                         selectinload(Session.minutes))
                 .order_by(Session.started_at.desc(), Session.id.desc()).limit(limit))
        with self._sessions() as s:
            if patient_id is not None:
                _patient(s, clinic_id, patient_id)
                query = query.where(Session.patient_id == patient_id)
            elif clinic_id is not None:
                query = query.join(Patient).where(Patient.clinic_id == clinic_id)
            return [session_view(x) for x in s.scalars(query)]

    def sessions_between(self, clinic_id: str | None, patient_id: str, start: datetime,
                         end: datetime) -> list[dict[str, Any]]:
        """The patient's sessions started in [start, end), oldest first (for reports)."""
        query = (select(Session).options(selectinload(Session.result),
                                         selectinload(Session.minutes))
                 .where(Session.patient_id == patient_id,
                        Session.started_at >= _utc(start, "start"),
                        Session.started_at < _utc(end, "end"))
                 .order_by(Session.started_at, Session.id))
        with self._sessions() as s:
            _patient(s, clinic_id, patient_id)
            return [session_view(x) for x in s.scalars(query)]


def _utc(t: datetime, name: str) -> datetime:
    if t.tzinfo is None:
        raise InputError(f"{name}: {t.isoformat()} has no time zone (timestamps must be "
                         "timezone-aware)")
    return t.astimezone(UTC)


def _clinic(s: OrmSession, clinic_id: str) -> Clinic:
    clinic = s.get(Clinic, clinic_id)
    if clinic is None:
        raise NotFound(f"unknown clinic {clinic_id!r} (add it with `justwalk db clinic add`)")
    return clinic


def _patient(s: OrmSession, clinic_id: str | None, patient_id: str) -> Patient:
    patient = s.get(Patient, patient_id)
    if patient is None or (clinic_id is not None and patient.clinic_id != clinic_id):
        raise NotFound(f"no patient {patient_id!r}")
    return patient


def _prescription(s: OrmSession, clinic_id: str | None, prescription_id: int) -> Prescription:
    rx = s.get(Prescription, prescription_id)
    if rx is None or (clinic_id is not None and rx.patient.clinic_id != clinic_id):
        raise NotFound(f"no prescription {prescription_id}")
    return rx
