"""Training sessions started and stopped by the device: checked, recorded, passed on in order.

A ``session_start`` text message (``justwalk.device_protocol``) is checked against the
database (``justwalk.db``): the device's patient must be a patient of the device's clinic,
a named prescription must be that patient's, active and of the session's type. The session
is recorded (``Repository.start_session``, started at the message's device time, as the
processor ends it at device time), then a ``training_start`` control message
(``justwalk.training.control``) carrying its plan (the prescription's band, feedback
settings, duration) is appended to the chunk topic under the patient's key, behind the
chunks the device sent before it, so the processor meets start, chunks and stop in the
order the device sent them, live and on a replay. A start repeated after an
``unavailable`` answer (the control message may not have been stored) re-sends the control
message for the recorded session; the processor ignores a second start. A stop needs the
recorded session of this device; the processor scores what it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.publisher import Publisher
from ingest.registry import DeviceEntry
from justwalk.db.repository import Conflict, InputError, NotFound, Repository
from justwalk.device_protocol import (
    ProtocolError,
    SessionStart,
    SessionStop,
    parse_device_text,
    session_error_message,
    session_started_message,
    session_stopped_message,
)
from justwalk.training import Plan, SessionKind
from justwalk.training.control import TrainingStart, TrainingStop, encode

log = logging.getLogger(__name__)

MAX_CLOCK_AHEAD = timedelta(minutes=5)
"""A start stamped further ahead of the gateway's clock is refused (a device clock off)."""


def plan_of(kind: str, prescription: dict[str, Any] | None,
            course_length_m: float | None) -> Plan:
    """The plan of a session: the prescription's settings (``prescription_view``), if any."""
    if prescription is None:
        return Plan(kind=SessionKind(kind), course_length_m=course_length_m)
    band = prescription["cadence_band_spm"] or [None, None]
    return Plan(kind=SessionKind(kind), duration_s=prescription["duration_s"],
                target_distance_m=prescription["target_distance_m"],
                cadence_low_spm=band[0], cadence_high_spm=band[1],
                cadence_cue=prescription["feedback_cadence_cue"],
                metronome_spm=prescription["feedback_metronome_spm"],
                rest_suggestion=prescription["feedback_rest_suggestion"],
                progress_every_s=prescription["feedback_progress_every_s"],
                course_length_m=course_length_m)


class TrainingGate:
    """Answers the devices' session messages (``repo`` None: no database, all refused)."""

    def __init__(self, repo: Repository | None, publisher: Publisher, topic: str, *,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.repo = repo
        self.publisher = publisher
        self.topic = topic
        self.now = now

    async def handle(self, entry: DeviceEntry, text: str) -> str:
        """The answer (a JSON text message) to one text message of the device."""
        msg: SessionStart | SessionStop | None = None
        try:
            msg = parse_device_text(text)
            if self.repo is None:
                raise ProtocolError("training_unavailable", "this gateway has no database; "
                                    "training sessions cannot be started or stopped")
            if isinstance(msg, SessionStart):
                return await self._start(self.repo, entry, msg)
            return await self._stop(self.repo, entry, msg)
        except ProtocolError as exc:
            log.info("device %s: %s refused: %s", entry.device_id, "session message",
                     exc)
            return session_error_message(None if msg is None else msg.session_id, exc.code,
                                         exc.reason)

    async def _start(self, repo: Repository, entry: DeviceEntry, msg: SessionStart) -> str:
        rx = None
        if msg.prescription_id is not None:
            try:
                rx = await asyncio.to_thread(repo.prescription, entry.clinic_id,
                                             msg.prescription_id)
            except NotFound:
                rx = None
            if rx is None or rx["patient_id"] != entry.patient_id:
                raise ProtocolError("unknown_prescription", f"patient {entry.patient_id!r} "
                                    f"has no prescription {msg.prescription_id}")
            if not rx["active"] or rx["session_type"] != msg.session_type:
                state = "active" if rx["active"] else "inactive"
                raise ProtocolError("prescription_mismatch", f"prescription "
                                    f"{msg.prescription_id} is an {state} "
                                    f"{rx['session_type']}, not an active {msg.session_type}")
        plan = plan_of(msg.session_type, rx, msg.course_length_m)
        started_at = datetime.fromtimestamp(msg.t_us / 1e6, UTC)  # device time, as the end
        if started_at > self.now() + MAX_CLOCK_AHEAD:
            raise ProtocolError("bad_request", f"session_start: t_us {msg.t_us} is "
                                f"{started_at.isoformat()}, in the future")
        row: dict[str, Any] | None
        try:
            row = await asyncio.to_thread(
                repo.start_session, entry.clinic_id, entry.patient_id,
                device_id=entry.device_id, device_session_id=msg.session_id,
                session_type=msg.session_type, started_at=started_at,
                prescription_id=msg.prescription_id, course_length_m=msg.course_length_m)
        except NotFound as exc:
            raise ProtocolError("unknown_patient", f"{exc.args[0]}: the device's patient is "
                                "not in the clinic's database") from None
        except InputError as exc:
            raise ProtocolError("bad_request", str(exc)) from None
        except Conflict:
            row = await asyncio.to_thread(repo.device_session, entry.device_id, msg.session_id)
            if row is None or row["status"] != "running" or row["session_type"] != \
                    msg.session_type or row["prescription_id"] != msg.prescription_id:
                raise ProtocolError("session_exists", f"recording {msg.session_id!r} of "
                                    f"device {entry.device_id!r} has a training session "
                                    "already; start a new recording") from None
        assert row is not None
        start = TrainingStart(entry.clinic_id, entry.patient_id, entry.device_id,
                              msg.session_id, int(row["session_id"]), msg.t_us, plan)
        await self._send(entry, *encode(start))
        log.info("device %s (patient %s) started %s session %d", entry.device_id,
                 entry.patient_id, msg.session_type, row["session_id"])
        return session_started_message(msg.session_id, int(row["session_id"]), plan.to_dict())

    async def _stop(self, repo: Repository, entry: DeviceEntry, msg: SessionStop) -> str:
        row = await asyncio.to_thread(repo.device_session, entry.device_id, msg.session_id)
        if row is None:
            raise ProtocolError("unknown_session", f"device {entry.device_id!r} started no "
                                f"training session on recording {msg.session_id!r}")
        await self._send(entry, *encode(TrainingStop(entry.clinic_id, entry.patient_id,
                                                     entry.device_id, msg.session_id,
                                                     msg.t_us)))
        return session_stopped_message(msg.session_id)

    async def _send(self, entry: DeviceEntry, value: bytes,
                    headers: list[tuple[str, bytes]]) -> None:
        try:
            delivery = await self.publisher.send(self.topic, entry.patient_id.encode(), value,
                                                 headers)
            await delivery
        except Exception as exc:
            log.error("could not store a training control message of device %s: %r",
                      entry.device_id, exc)
            raise ProtocolError("unavailable", "the message could not be stored now; send "
                                "it again") from None
