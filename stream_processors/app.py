"""The Faust stream processor: IMU chunks in; steps, windows, bouts, events, risk out.

    imu.chunks (key = patient id)  ->  [gait agent]  ->  gait.steps, gait.windows (cadence
                                         |               and gait metrics), gait.bouts,
                                         |               gait.events, gait.sessions,
                                         |               fall.risk, alerts
                                         +-- table "gait-state": one SessionState per
                                         |   (patient, device, session)
                                         +-- table "risk-state": one FallRiskState per
                                         |   patient
                                         +-- table "open-sessions": session key ->
                                             partition, for sessions with data not yet
                                             flushed (small; for the idle timeout)
                                         (all changelogged to Kafka, so a restarted worker
                                         resumes from them)

    timer (every few s) --> imu.session-control --> [idle agent]: flush a quiet session

The app is built by ``create_app(settings)``; nothing is created at import time. Event
time comes from the chunks (device clock); windows close on the device clock, with one
exception below.

End of a session: a chunk flagged as its session's last closes the session in the chunk's
own processing (``SessionProcessor.process``); its state is stored at once and dropped from
memory. A session whose device stops without the flag is flushed after
``Settings.session_idle_timeout_s`` without a chunk (wall clock, ``stream_processors.idle``).
Faust lets a table change only while an agent handles a message of a co-partitioned topic
(the changelog partition is the message's), so the timer does not flush: it sends a request
(key = patient id, value = session key) to ``topic_session_control``, on the partition of the
session's chunks, and the idle agent of the worker owning that partition flushes if the
session is still quiet, publishes the records, feeds the bouts to the fall-risk score and
stores both states before its offset is committed. A redelivered request, or one for a
session that got data meanwhile, finds nothing to flush, so a flush is published once (and
the records are idempotent in InfluxDB anyway). The two agents take turns (one lock), so a
chunk and a flush of the same session never interleave.

Chunks of one patient are on one partition (keyed by patient id), hence processed in
order by one worker; several workers share the partitions of a consumer group. Faust
writes a table entry to the changelog partition of the message being processed, so both
tables are co-partitioned with the chunks.

Delivery is at least once: Faust commits a chunk's offset after the agent has handled it,
and the outputs are idempotent (event-time timestamps), so a redelivered chunk is either
skipped (its sequence number is not new for the session's state) or recomputed to the
same records. Both states of a chunk are stored only after all its records were sent; a
chunk whose processing fails leaves both as they were.
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust

from justwalk.config import Settings
from justwalk.records import RejectRecord
from justwalk.wire import ChunkError, ImuChunk, decode_chunk, received_us_from_headers
from stream_processors.faust_tuning import bound_fetch_wait
from stream_processors.idle import IdleSessions
from stream_processors.live_state import LiveStates
from stream_processors.patient_profiles import load_patient_profiles
from stream_processors.risk_policies import load_risk_policies
from stream_processors.session import (
    ProcessResult,
    RiskResult,
    SessionEndedError,
    SessionProcessor,
    SessionState,
    risk_key,
    state_key,
    wall_clock_us,
)

log = logging.getLogger(__name__)

TABLE_NAME = "gait-state"
RISK_TABLE_NAME = "risk-state"
OPEN_TABLE_NAME = "open-sessions"


def idle_check_interval_s(timeout_s: float) -> float:
    """How often the timer looks for idle sessions: a quarter of the timeout, 0.5-30 s."""
    return min(max(timeout_s / 4, 0.5), 30.0)


def broker_urls(bootstrap: str) -> list[str]:
    """Faust broker URLs from a Kafka bootstrap list ("host:port,host:port")."""
    return [f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip()]


def _reject(code: str, reason: str, position: str, chunk: ImuChunk | None = None) -> bytes:
    return RejectRecord(
        received_at_us=time.time_ns() // 1000,
        source="processor",
        code=code,
        reason=reason,
        device_id=chunk.device_id if chunk else None,
        patient_id=chunk.patient_id if chunk else None,
        session_id=chunk.session_id if chunk else None,
        sequence=chunk.sequence if chunk else None,
        kafka_position=position,
    ).to_json()


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app for these settings."""
    bound_fetch_wait(settings.kafka_fetch_max_wait_ms)
    app = faust.App(
        settings.processor_group,
        broker=broker_urls(settings.kafka_bootstrap),
        store="memory://",
        datadir=str(settings.processor_data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_s,
        broker_rebalance_timeout=settings.kafka_rebalance_timeout_s,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
        stream_wait_empty=False,
    )
    chunks = app.topic(settings.topic_chunks, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    steps_topic = app.topic(settings.topic_steps, key_serializer="raw", value_serializer="raw")
    windows_topic = app.topic(settings.topic_windows, key_serializer="raw",
                              value_serializer="raw")
    rejects_topic = app.topic(settings.topic_rejects, key_serializer="raw",
                              value_serializer="raw")
    alerts_topic = app.topic(settings.topic_alerts, key_serializer="raw", value_serializer="raw")
    bouts_topic = app.topic(settings.topic_bouts, key_serializer="raw", value_serializer="raw")
    events_topic = app.topic(settings.topic_events, key_serializer="raw",
                             value_serializer="raw")
    risk_topic = app.topic(settings.topic_risk, key_serializer="raw", value_serializer="raw")
    sessions_topic = app.topic(settings.topic_sessions, key_serializer="raw",
                               value_serializer="raw")
    control_topic = app.topic(settings.topic_session_control, key_type=bytes, value_type=bytes,
                              key_serializer="raw", value_serializer="raw")
    table = app.Table(TABLE_NAME, key_type=str, value_type=str, default=None,
                      partitions=settings.topic_partitions)
    risk_table = app.Table(RISK_TABLE_NAME, key_type=str, value_type=str, default=None,
                           partitions=settings.topic_partitions)
    open_table = app.Table(OPEN_TABLE_NAME, key_type=str, value_type=str, default=None,
                           partitions=settings.topic_partitions)
    default_risk, clinic_risk = load_risk_policies(settings.risk_policies)
    processor = SessionProcessor(window_s=settings.cadence_window_s, risk=default_risk,
                                 clinic_risk=clinic_risk,
                                 sensor_height_m=settings.default_sensor_height_m,
                                 sensor_heights_m=load_patient_profiles(
                                     settings.patient_profiles),
                                 session_summary_every_s=settings.session_summary_every_s)

    sessions = LiveStates(table, new=processor.new_state,
                          load=lambda s: processor.load_state(s.encode()),
                          dump=lambda st: processor.dump_state(st).decode(),
                          snapshot_every=settings.processor_snapshot_every)
    risks = LiveStates(risk_table, new=processor.new_risk_state,
                       load=lambda s: processor.load_risk_state(s.encode()),
                       dump=lambda st: processor.dump_risk_state(st).decode(),
                       snapshot_every=settings.processor_snapshot_every)

    idle = IdleSessions(timeout_s=settings.session_idle_timeout_s, clock=wall_clock_us) \
        if settings.session_idle_timeout_s > 0 else None
    turn = asyncio.Lock()  # the chunk and idle agents take turns (see the module docstring)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget_states(app: faust.App, revoked: object, **kwargs: object) -> None:
        # Another worker may own these keys now; it resumes from the table.
        sessions.clear()
        risks.clear()
        if idle is not None:
            idle.clear()

    async def publish(patient_key: bytes, result: ProcessResult, risk: RiskResult) -> None:
        # in this order: alerts first (what a clinician waits for); the session summary
        # last, so a summary saying "ended" follows everything the session published
        batches = ((alerts_topic, (*result.alerts, *risk.alerts)), (events_topic, result.events),
                   (steps_topic, result.steps), (windows_topic, result.windows),
                   (windows_topic, result.metrics), (bouts_topic, result.bouts),
                   (risk_topic, risk.scores), (sessions_topic, result.sessions))
        for topic, records in batches:
            for record in records:
                await topic.send(key=patient_key, value=record.to_json())

    def store(key: str, rkey: str, state: SessionState, result: ProcessResult,
              risk: RiskResult, partition: int) -> None:
        """Both states, once their records were sent; then the open-sessions index."""
        if result.flushed:
            sessions.release(key)  # stored now; an ended or flushed session rests
        else:
            sessions.done(key)
        risks.done(rkey, force=bool(risk.scores or risk.alerts or result.flushed))
        track(key, state, partition)

    def track(key: str, state: SessionState, partition: int) -> None:
        """Keep ``open-sessions`` in step with the session's state (written on changes only)."""
        if state.is_open:
            if open_table.get(key) is None:
                open_table[key] = str(partition)
            return
        if open_table.get(key) is not None:
            del open_table[key]
        if idle is not None:
            idle.forget(key)

    async def gait_agent(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            msg = event.message
            where = f"{msg.topic}/{msg.partition}/{msg.offset}"
            try:
                chunk = decode_chunk(event.value)
            except ChunkError as exc:
                log.warning("rejected chunk at %s: %s", where, exc)
                await rejects_topic.send(key=event.key,
                                         value=_reject(exc.code, exc.reason, where))
                continue
            key, rkey = state_key(chunk), risk_key(chunk)
            async with turn:
                try:
                    state = sessions.get(key)
                    received_us = received_us_from_headers(msg.headers)
                    try:
                        result = processor.process(state, chunk, received_us)
                    except SessionEndedError as exc:
                        log.warning("rejected chunk at %s: %s", where, exc)
                        await rejects_topic.send(
                            key=event.key, value=_reject(exc.code, exc.reason, where, chunk))
                        continue
                    if result.duplicate:
                        continue
                    if idle is not None:
                        idle.seen(key)
                    risk_state = risks.get(rkey)
                    risk = processor.update_risk(risk_state, chunk, result, received_us)
                    await publish(chunk.patient_id.encode(), result, risk)
                    store(key, rkey, state, result, risk, msg.partition)
                except Exception as exc:
                    # A chunk that breaks the maths must not stop the other patients. The
                    # half-updated states are dropped; the next chunk resumes from the last
                    # snapshots (see stream_processors.live_state).
                    sessions.discard(key)
                    risks.discard(rkey)
                    log.exception("processing failed for patient %s session %s seq %d",
                                  chunk.patient_id, chunk.session_id, chunk.sequence)
                    await rejects_topic.send(
                        key=event.key,
                        value=_reject("processing_error", repr(exc), where, chunk),
                    )

    async def flush_if_idle(key: str, partition: int) -> None:
        state = sessions.get(key)
        if state.is_open and state.identity is not None:
            if idle is None or not idle.idle(key):
                return  # a chunk came meanwhile (the timer asks again), or no timeout
            rkey = state.identity["patient_id"]
            result = processor.flush(state)
            risk = processor.update_risk_on_flush(risks.get(rkey), state, result)
            await publish(rkey.encode(), result, risk)
            log.info("session %s quiet for %g s: flushed %d bouts, %d windows", key,
                     settings.session_idle_timeout_s, len(result.bouts), len(result.windows))
            store(key, rkey, state, result, risk, partition)
        else:
            track(key, state, partition)  # ended or flushed meanwhile (or a redelivery)

    async def idle_agent(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            key = event.value.decode()
            async with turn:
                try:
                    await flush_if_idle(key, event.message.partition)
                except Exception:
                    # As for a chunk: drop the half-updated states; the timer asks again.
                    sessions.discard(key)
                    risks.discard(key.split("|", 1)[0])
                    log.exception("idle flush failed for session %s", key)

    async def request_idle_flushes() -> None:
        assert idle is not None
        mine = {tp.partition for tp in app.consumer.assignment()
                if tp.topic == settings.topic_chunks}
        open_keys = {k: int(p) for k, p in list(open_table.items()) if int(p) in mine}
        for key in idle.due(open_keys):
            await control_topic.send(key=key.split("|", 1)[0].encode(), value=key.encode(),
                                     partition=open_keys[key])

    app.agent(chunks, name="gait")(gait_agent)
    app.agent(control_topic, name="idle")(idle_agent)
    if idle is not None:
        app.timer(interval=idle_check_interval_s(settings.session_idle_timeout_s),
                  name="idle-sessions")(request_idle_flushes)
    return app


def run_processor(settings: Settings, *, loglevel: str = "info") -> int:
    """Run one processor worker until SIGTERM/SIGINT (``justwalk processor``)."""
    import asyncio

    from faust.worker import Worker

    from justwalk.kafka_topics import ensure_topics

    asyncio.run(ensure_topics(settings))
    settings.processor_data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
