"""The processor's runtime: chunk messages in, records out, states kept per input partition.

``ProcessorRuntime`` is what the Kafka wiring (``stream_processors.app``) drives, and what
the in-memory tests drive directly: ``assign(partition, restored)`` when a partition comes
(``restored`` = the stored states, key -> bytes), ``on_message`` for each input message in
offset order, ``checkpoint(partitions)`` for the states to store, ``revoke`` when a
partition goes, ``idle_markers`` / ``expired`` on timers. Records go out through a
``Sender``; nothing here knows Kafka.

State and offsets. Every state carries the input offset of the last message applied to it
(``applied_offset``). A message at or below it is already in the state: after a crash the
input is replayed from the last committed offset, and each state skips what it holds, so
every message is applied exactly once to every state it concerns, whatever mix of states
the crash left stored. Replayed messages that a state does not hold are recomputed to the
same records (the cores are deterministic, records idempotent in InfluxDB). The wiring
keeps the checkpoint order that makes this true (Quix Streams' order: outputs first, then
states, then offsets): flush the records sent so far; store the patient (fall-risk) states
and flush; store the session states and flush; commit the offsets. A stored session state
therefore never holds a chunk whose records, or whose effect on the patient's fall risk,
could be lost.

Idle sessions. A device that dies without the end flag leaves its session open; the wall
clock notices (``stream_processors.idle``), but a flush decided by the wall clock would not
replay the same way. So the timer only appends a *flush marker* to the session's input
partition (a message with the ``jw-control`` header, ``stream_processors.control``) naming
the offset of the session's last applied chunk; when the marker is consumed, in order with
the chunks, the session is flushed if that is still its last chunk. A replay meets the
marker at the same place and decides the same.

Training control. The gateway appends a training session's start and stop to the chunk
topic (``jw-control: training_start`` / ``training_stop``, ``justwalk.training.control``);
like flush markers they are applied once, in order with the chunks, to the recording's state.

Retention. A session that ended (or stayed quiet) more than ``retention_s`` ago in device
time is deleted (a tombstone is stored), so the state table does not grow forever; the
gateway refuses uploads older than its ``max_upload_age_s``, which the retention exceeds.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from justwalk.records import DmoDailyRecord, RejectRecord
from justwalk.state_format import StateFormatError
from justwalk.training import control as training_control
from justwalk.wire import (
    KAFKA_HEADER_CONTROL,
    KAFKA_HEADER_RECEIVED_US,
    ChunkError,
    ImuChunk,
    clinic_from_headers,
    decode_chunk,
    header_value,
    received_us_from_headers,
)
from stream_processors import control
from stream_processors.idle import IdleSessions
from stream_processors.session import (
    ChunkRefused,
    ProcessResult,
    RiskResult,
    SessionProcessor,
    risk_key,
    state_key,
)
from stream_processors.session_state import (
    PatientState,
    SessionState,
    dump_patient,
    dump_session,
    load_patient,
    load_session,
)

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


def received_header(received_us: int | None) -> Headers | None:
    """The receipt-time header for the records of a chunk received at ``received_us``."""
    if received_us is None:
        return None
    return [(KAFKA_HEADER_RECEIVED_US, str(received_us).encode("ascii"))]
SESSION_PREFIX = "s|"
PATIENT_PREFIX = "p|"
"""Keys of the state table: ``s|patient|device|session`` and ``p|patient``."""


WAITS_KEPT = 100_000
"""Chunks whose wait before processing ``ProcessorRuntime.waits_us`` keeps (the latest)."""


class Sender(Protocol):
    """Where records go (a Kafka producer in production, a list in tests)."""

    async def send(self, topic: str, key: bytes, value: bytes | None, *,
                   partition: int | None = None, headers: Headers | None = None) -> None:
        """Queue one record (delivery is confirmed by the wiring's flush)."""
        ...


@dataclass(frozen=True, slots=True)
class OutputTopics:
    """The topics the runtime writes."""

    steps: str
    windows: str
    bouts: str
    events: str
    alerts: str
    risk: str
    sessions: str
    rejects: str
    chunks: str
    """The input topic itself, for flush markers."""
    training: str = "training.results"
    """Training results and minutes (``WalkTestRecord``, ``WalkMinuteRecord``)."""
    feedback: str = "training.feedback"
    """Feedback for the devices (``FeedbackRecord``)."""


@dataclass(slots=True)
class PartitionStates:
    """The states of one input partition: decoded while in use, packed otherwise."""

    packed: dict[str, bytes] = field(default_factory=dict)
    sessions: dict[str, SessionState] = field(default_factory=dict)
    patients: dict[str, PatientState] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    """Keys changed since the last checkpoint (a key in neither dict: deleted)."""
    end_us: dict[str, int] = field(default_factory=dict)
    """Device time of the newest data of every session (for retention)."""
    next_offset: int | None = None
    """Offset after the last input message handled (what a checkpoint commits)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What to store for one partition: patient states first, then sessions, then the offset.

    A value of None is a tombstone (the key is deleted).
    """

    partition: int
    patients: list[tuple[str, bytes, int]]
    """(key, state, applied offset)."""
    sessions: list[tuple[str, bytes | None, int]]
    next_offset: int | None


def latest_states(stored: Iterable[tuple[str, bytes | None, int]]) -> dict[str, bytes]:
    """The states to resume from, from the stored records (key, state, applied offset).

    ``stored`` is in the order the records were stored. Per key the one with the highest
    applied offset wins (a late write of a worker that lost the partition cannot roll a
    state back); None deletes the key.
    """
    latest: dict[str, tuple[int, bytes]] = {}
    for key, data, applied in stored:
        if data is None:
            latest.pop(key, None)
        elif applied >= latest.get(key, (-2, b""))[0]:
            latest[key] = (applied, data)
    return {k: v for k, (_, v) in latest.items()}


class ProcessorRuntime:
    """Chunks to records for the partitions this worker owns; see the module docstring."""

    def __init__(self, processor: SessionProcessor, sender: Sender, topics: OutputTopics, *,
                 clock: Callable[[], int], idle_timeout_s: float = 0.0,
                 retention_s: float = 31 * 86400.0) -> None:
        self.processor = processor
        self.sender = sender
        self.topics = topics
        self.clock = clock
        self.idle = IdleSessions(timeout_s=idle_timeout_s, clock=clock) \
            if idle_timeout_s > 0 else None
        self.retention_us = round(retention_s * 1e6)
        self.parts: dict[int, PartitionStates] = {}
        self.messages_ = 0
        self.rejected_ = 0
        self.records_ = 0
        self.waits_us: deque[int] = deque(maxlen=WAITS_KEPT)
        """Gateway receipt -> the runtime took the chunk, of the latest chunks (us)."""

    # ------------------------------------------------------------------ partitions

    def assign(self, partition: int, restored: Mapping[str, bytes]) -> None:
        """Take a partition with its stored states (key -> bytes, the latest of each)."""
        ps = PartitionStates(packed=dict(restored))
        for key, data in restored.items():
            if key.startswith(SESSION_PREFIX):
                try:
                    state = load_session(data)
                except StateFormatError as exc:
                    log.error("stored state %s cannot be read (%s); it starts afresh", key, exc)
                    del ps.packed[key]
                    continue
                ps.end_us[key] = state.end_us
                if state.is_open:
                    ps.sessions[key] = state
                    del ps.packed[key]
                    if self.idle is not None:
                        self.idle.seen(key)
        self.parts[partition] = ps
        log.info("partition %d: %d states restored, %d open sessions", partition,
                 len(restored), len(ps.sessions))

    def revoke(self, partition: int) -> None:
        """Drop a partition (after its last checkpoint)."""
        ps = self.parts.pop(partition, None)
        if ps is not None and self.idle is not None:
            for key in ps.sessions:
                self.idle.forget(key)

    @property
    def partitions(self) -> list[int]:
        """The partitions owned now."""
        return sorted(self.parts)

    # ------------------------------------------------------------------ messages

    async def on_message(self, partition: int, offset: int, key: bytes | None,
                         value: bytes | None, headers: Headers | None) -> None:
        """Handle one input message (in offset order within its partition)."""
        ps = self.parts.get(partition)
        if ps is None:
            return  # not ours (any more): its new owner handles it
        ps.next_offset = offset + 1
        self.messages_ += 1
        where = f"{partition}/{offset}"
        kind = header_value(headers, KAFKA_HEADER_CONTROL)
        if kind is not None:
            await self._on_control(ps, offset, kind, value, where)
            return
        clinic = clinic_from_headers(headers)
        try:
            if value is None:
                raise ChunkError("empty", "the message has no value")
            if clinic is None:
                raise ChunkError("missing_clinic", "the message has no valid clinic header "
                                 "(chunks reach the processor through the gateway)")
            chunk = decode_chunk(value, clinic_id=clinic)
        except ChunkError as exc:
            await self._reject(key, exc.code, exc.reason, where)
            return
        received_us = received_us_from_headers(headers)
        if received_us is not None:
            self.waits_us.append(self.clock() - received_us)
        skey = SESSION_PREFIX + state_key(chunk)
        session = self._session(ps, skey)
        result: ProcessResult | None = None
        if offset > session.applied_offset:
            session.applied_offset = offset
            ps.dirty.add(skey)
            try:
                result = self.processor.process(session, chunk, received_us)
            except ChunkRefused as exc:
                await self._reject(key, exc.code, exc.reason, where, chunk)
            except Exception as exc:
                # A chunk that breaks the maths must not stop the other patients: the
                # session goes on from its next chunk as after a gap.
                log.exception("processing failed for patient %s session %s seq %d",
                              chunk.patient_id, chunk.session_id, chunk.sequence)
                self.processor.abandon(session, chunk)
                await self._reject(key, "processing_error", repr(exc), where, chunk)
            self._after(ps, skey, session)
        pkey = PATIENT_PREFIX + risk_key(chunk)
        patient = self._patient(ps, pkey)
        risk = RiskResult()
        dmos: list[DmoDailyRecord] = []
        if offset > patient.applied_offset:
            patient.applied_offset = offset
            ps.dirty.add(pkey)
            if result is not None and not result.duplicate:
                risk = self.processor.update_risk(patient.risk, chunk, result, received_us)
                assert session.identity is not None  # set by the chunk just processed
                dmos = self.processor.update_dmos(patient.dmo, patient.risk, session.identity,
                                                  chunk.t0_us, result)
        if result is not None:
            await self._publish(chunk.patient_id.encode(), result, risk,
                                received_header(received_us), dmos)

    async def _on_control(self, ps: PartitionStates, offset: int, kind: bytes,
                          value: bytes | None, where: str) -> None:
        if kind in training_control.TRAINING_KINDS:
            await self._on_training(ps, offset, kind, value, where)
            return
        try:
            marker = control.decode_flush(kind, value)
        except ValueError as exc:
            log.warning("ignoring control message at %s: %s", where, exc)
            return
        skey = marker.session_key
        session = self._session_if_any(ps, skey)
        if session is None or offset <= session.applied_offset:
            return
        if session.applied_offset != marker.upto_offset or not session.is_open:
            return  # data came after the marker was sent, or nothing to flush
        session.applied_offset = offset
        ps.dirty.add(skey)
        result = self.processor.flush(session)
        ident = session.identity
        assert ident is not None
        pkey = PATIENT_PREFIX + ident["patient_id"]
        patient = self._patient(ps, pkey)
        risk = RiskResult()
        dmos: list[DmoDailyRecord] = []
        if offset > patient.applied_offset:
            patient.applied_offset = offset
            ps.dirty.add(pkey)
            risk = self.processor.update_risk_on_flush(patient.risk, session, result)
            dmos = self.processor.update_dmos(patient.dmo, patient.risk, ident,
                                              session.end_us, result)
        log.info("session %s quiet: flushed %d bouts, %d windows", skey[2:], len(result.bouts),
                 len(result.windows))
        self._after(ps, skey, session)
        await self._publish(ident["patient_id"].encode(), result, risk, None, dmos)

    async def _on_training(self, ps: PartitionStates, offset: int, kind: bytes,
                           value: bytes | None, where: str) -> None:
        """A training session's start or stop, in order with its recording's chunks."""
        try:
            msg = training_control.decode(kind, value)
        except ValueError as exc:
            log.warning("ignoring control message at %s: %s", where, exc)
            return
        skey = SESSION_PREFIX + msg.session_key
        session = self._session(ps, skey)
        if offset <= session.applied_offset:
            return
        session.applied_offset = offset
        ps.dirty.add(skey)
        result = self.processor.control(session, msg)
        self._after(ps, skey, session)
        await self._publish(msg.patient_id.encode(), result, RiskResult(), None)

    def _after(self, ps: PartitionStates, skey: str, session: SessionState) -> None:
        ps.end_us[skey] = session.end_us
        if self.idle is not None:
            if session.is_open:
                self.idle.seen(skey)
            else:
                self.idle.forget(skey)

    def _session(self, ps: PartitionStates, skey: str) -> SessionState:
        state = self._session_if_any(ps, skey)
        if state is None:
            state = ps.sessions[skey] = self.processor.new_state()
        return state

    def _session_if_any(self, ps: PartitionStates, skey: str) -> SessionState | None:
        state = ps.sessions.get(skey)
        if state is None:
            data = ps.packed.pop(skey, None)
            if data is not None:
                state = ps.sessions[skey] = load_session(data)
        return state

    def _patient(self, ps: PartitionStates, pkey: str) -> PatientState:
        state = ps.patients.get(pkey)
        if state is None:
            data = ps.packed.pop(pkey, None)
            state = PatientState(self.processor.new_risk_state()) if data is None \
                else load_patient(data)
            ps.patients[pkey] = state
        return state

    async def _publish(self, key: bytes, result: ProcessResult, risk: RiskResult,
                       headers: Headers | None, dmos: Sequence[DmoDailyRecord] = ()) -> None:
        # alerts first (what a clinician waits for); the session summary last, so a summary
        # saying "ended" follows everything the session published. Records carry the
        # gateway's receipt time of the chunk that made them (the sink measures latency).
        t = self.topics
        send = self.sender.send
        n = 0
        for topic, records in ((t.feedback, result.feedback), (t.alerts, result.alerts),
                               (t.alerts, risk.alerts), (t.training, result.walk_minutes),
                               (t.training, result.walk_tests),
                               (t.events, result.events), (t.steps, result.steps),
                               (t.windows, result.windows), (t.bouts, result.bouts),
                               (t.risk, risk.scores), (t.risk, dmos),
                               (t.sessions, result.sessions)):
            for record in records:
                await send(topic, key, record.to_json(), headers=headers)
            n += len(records)
        self.records_ += n

    async def _reject(self, key: bytes | None, code: str, reason: str, where: str,
                      chunk: ImuChunk | None = None) -> None:
        self.rejected_ += 1
        log.warning("rejected message at %s: %s: %s", where, code, reason)
        record = RejectRecord(
            received_at_us=self.clock(), source="processor", code=code, reason=reason,
            device_id=chunk.device_id if chunk else None,
            patient_id=chunk.patient_id if chunk else None,
            session_id=chunk.session_id if chunk else None,
            sequence=chunk.sequence if chunk else None, kafka_position=where)
        await self.sender.send(self.topics.rejects, key or b"", record.to_json())

    # ------------------------------------------------------------------ timers

    def idle_markers(self) -> list[tuple[int, bytes, bytes, Headers]]:
        """Flush markers due for quiet sessions.

        Each is (partition, key, value, headers), to append to the input topic.
        """
        if self.idle is None:
            return []
        out: list[tuple[int, bytes, bytes, Headers]] = []
        for partition, ps in self.parts.items():
            open_keys = [k for k, s in ps.sessions.items() if s.is_open]
            for skey in self.idle.due(open_keys):
                session = ps.sessions[skey]
                patient = session.identity["patient_id"] if session.identity else ""
                value, headers = control.encode_flush(skey, session.applied_offset)
                out.append((partition, patient.encode(), value, headers))
        return out

    def expire(self, now_us: int) -> int:
        """Delete sessions whose newest data is older than the retention; how many."""
        n = 0
        horizon = now_us - self.retention_us
        for ps in self.parts.values():
            for skey in [k for k, end in ps.end_us.items() if end < horizon]:
                state = ps.sessions.get(skey)
                if state is not None and state.is_open:
                    continue  # flushed first (idle timeout), deleted afterwards
                ps.sessions.pop(skey, None)
                ps.packed.pop(skey, None)
                del ps.end_us[skey]
                ps.dirty.add(skey)
                if self.idle is not None:
                    self.idle.forget(skey)
                n += 1
        return n

    # ------------------------------------------------------------------ checkpoints

    def rebase(self) -> tuple[int, int]:
        """Make every state start over on a new input log; (sessions, patients) affected.

        For a broker that lost the input topic and the state topic: the offsets the states
        hold belong to a log that is gone, and a recreated log numbers its messages from 0
        again. Every state forgets its applied offset (a chunk the session has analysed
        already is still recognised as a duplicate by its sequence number) and is marked
        changed, so the next checkpoint stores all of them; nothing is committed
        (``next_offset`` None).
        """
        n_sessions = n_patients = 0
        for ps in self.parts.values():
            for key in list(ps.packed):
                data = ps.packed.pop(key)
                if key.startswith(SESSION_PREFIX):
                    ps.sessions[key] = load_session(data)
                else:
                    ps.patients[key] = load_patient(data)
            for key, session in ps.sessions.items():
                session.applied_offset = -1
                ps.dirty.add(key)
                n_sessions += 1
            for key, patient in ps.patients.items():
                patient.applied_offset = -1
                ps.dirty.add(key)
                n_patients += 1
            ps.next_offset = None
        return n_sessions, n_patients

    def checkpoint(self, partitions: Iterable[int]) -> list[Checkpoint]:
        """Pack every changed state of ``partitions``.

        See the module docstring for the order in which to store them. Sessions no longer
        open stay packed in memory.
        """
        out = []
        for partition in partitions:
            ps = self.parts.get(partition)
            if ps is None:
                continue
            patients: list[tuple[str, bytes, int]] = []
            sessions: list[tuple[str, bytes | None, int]] = []
            for key in ps.dirty:
                if key.startswith(PATIENT_PREFIX):
                    p = ps.patients[key]
                    patients.append((key, dump_patient(p), p.applied_offset))
                    continue
                s = ps.sessions.get(key)
                if s is None:
                    sessions.append((key, None, -1))  # deleted
                    continue
                data = dump_session(s)
                sessions.append((key, data, s.applied_offset))
                if not s.is_open:
                    del ps.sessions[key]
                    ps.packed[key] = data
            ps.dirty.clear()
            out.append(Checkpoint(partition, patients, sessions, ps.next_offset))
        return out
