"""Turning IMU chunks into output records, one device session at a time (no I/O).

The Faust app (``stream_processors.app``) keeps one serialised ``SessionState`` per
(patient, device, session) and one serialised ``FallRiskState`` per patient in two
changelogged tables, and for every chunk calls ``SessionProcessor.process`` (session
state) and then ``SessionProcessor.update_risk`` (patient state). Everything here is plain
Python so the whole path from chunk to records is tested without a broker. The wall clock
is injected; it only stamps ``raised_at_us`` on alerts (for latency measurement), never
decides anything.

Per session three I/O-free cores run side by side on the same samples:

- ``GaitStream`` (issue #2): 5 s cadence windows (``gait_window``);
- ``GaitPipeline`` (issue #3): steps with side and stride values, walking bouts, turns and
  the full gait metrics of the same windows (``step``, ``gait_bout``, ``gait_event`` turns,
  the other ``gait_window`` fields): the code path ``justwalk evaluate gait`` scores, with
  the sensor height of the patient's profile. It assumes contiguous samples: after a gap
  longer than the step detector's (50 ms), an overlap or a new sample rate, the open
  segment is flushed (its bout and windows are closed) and a new one starts; bout and step
  numbers continue across segments;
- ``FallMonitor`` (issue #4): near-falls and falls (``alert``, ``gait_event``).

Per session, a running summary (``SessionRecord``: duration, steps, bouts, walking time,
ended) is published at the start, at every bout, every ``session_summary_every_s`` of
device time and when the session is flushed or ends; it feeds the clinic's sessions table.

Per patient, ``FallRiskScorer`` (issue #4) turns the session's bouts and fall events into
fall-risk scores and risk alerts; ``on_time(chunk.t0_us)`` closes clinic days.

End of a session. A chunk flagged as its session's last (``justwalk.wire.ChunkFlags.LAST``)
is processed, then the session is closed: ``GaitPipeline.flush`` closes the open bout and
windows, the cadence windows holding data are emitted (as at a gap), and a fall whose impact
came less than the fall detector's 2 s look-ahead before the end is judged on the data there
is (``FallMonitor.flush``; at least 1 s after the impact), all in that chunk's
``ProcessResult``, so its bouts and falls reach the fall-risk score like any other. The
state is then marked ended and shrunk to the counters; a later chunk of the session raises
``SessionEndedError`` (code ``session_ended``): a session's results are final once it ended,
and a device that records again starts a new session id. A device that dies without the
flag is caught by the app's idle timeout, which calls ``flush``: the same closing, but the
session stays open, so data that arrives later (a device back in range uploading what it
buffered) continues it in a new segment, as after a gap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

import numpy as np
import orjson

from justwalk.falls import EventType, FallEvent, FallMonitor, FallMonitorState
from justwalk.gait import GaitStream, GaitStreamState
from justwalk.gait.cadence import WindowCadence, window_cadence
from justwalk.gait.pipeline import (
    BoutResult,
    GaitPipeline,
    PipelineOutput,
    PipelineState,
    StepResult,
    TurnResult,
    WindowResult,
)
from justwalk.records import (
    EVENT_TURN,
    RISK_DAILY,
    RISK_UPDATE,
    AlertRecord,
    BoutRecord,
    FallRiskRecord,
    GaitEventRecord,
    GaitMetricsRecord,
    GaitWindowRecord,
    SessionRecord,
    StepRecord,
    finite_or_none,
)
from justwalk.risk import (
    US_PER_DAY,
    BoutSummary,
    DailyRiskScore,
    FallRiskScorer,
    FallRiskState,
    RiskScore,
    RiskUpdate,
)
from justwalk.wire import ImuChunk

SEVERITY = {EventType.FALL: "critical", EventType.NEAR_FALL: "warning"}
RISK_MODEL = "justwalk-points-1"
"""Name and version of the fall-risk formula (``justwalk.risk``) in the ``fall_risk`` points."""
DEFAULT_SENSOR_HEIGHT_M = 1.0


def wall_clock_us() -> int:
    """Wall-clock time, microseconds since the Unix epoch."""
    return time.time_ns() // 1000


@dataclass
class SessionState:
    """Everything the processor remembers about one device session."""

    gait: GaitStreamState
    falls: FallMonitorState
    last_seq: int = -1
    """Sequence number of the last chunk processed (duplicate protection)."""
    pipeline: PipelineState | None = None
    """The gait pipeline's contiguous segment (None before the first chunk)."""
    bout_base: int = 0
    """Bout number of the current segment's first bout (bouts of earlier segments)."""
    n_bouts: int = 0
    """One more than the highest bout number published (later segments number on from
    there; numbers of step chains too short to be bouts are skipped)."""
    n_steps: int = 0
    """Steps published so far in the session (the next step's ``step_index``)."""
    identity: Identity | None = None
    """Whose session it is (from its chunks), for records made without a chunk (``flush``)."""
    ended: bool = False
    """The session's last chunk was processed; later chunks are refused."""
    start_us: int | None = None
    """Device time of the session's first sample (None before its first chunk)."""
    end_us: int = 0
    """Device time just after the session's newest sample."""
    walking_s: float = 0.0
    """Summed duration of the bouts published so far."""
    n_walking_bouts: int = 0
    """Bouts published so far."""
    summary_due_us: int = 0
    """Device time from which the next periodic session summary is due."""

    @property
    def is_open(self) -> bool:
        """True while a segment holds data not yet flushed (what the idle timeout watches)."""
        return self.pipeline is not None and not self.ended

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"gait": self.gait.to_dict(), "falls": self.falls.to_dict(),
                "last_seq": self.last_seq,
                "pipeline": None if self.pipeline is None else self.pipeline.to_dict(),
                "bout_base": self.bout_base, "n_bouts": self.n_bouts,
                "n_steps": self.n_steps, "identity": self.identity, "ended": self.ended,
                "start_us": self.start_us, "end_us": self.end_us, "walking_s": self.walking_s,
                "n_walking_bouts": self.n_walking_bouts, "summary_due_us": self.summary_due_us}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionState:
        """Inverse of ``to_dict`` (a state stored by an older version lacks newer keys)."""
        pipeline = d.get("pipeline")
        ident = d.get("identity")
        return cls(GaitStreamState.from_dict(d["gait"]), FallMonitorState.from_dict(d["falls"]),
                   int(d["last_seq"]),
                   None if pipeline is None else PipelineState.from_dict(pipeline),
                   int(d.get("bout_base", 0)), int(d.get("n_bouts", 0)),
                   int(d.get("n_steps", 0)),
                   None if ident is None else Identity(
                       clinic_id=ident["clinic_id"], patient_id=ident["patient_id"],
                       device_id=ident["device_id"], session_id=ident["session_id"]),
                   bool(d.get("ended", False)), d.get("start_us"), int(d.get("end_us", 0)),
                   float(d.get("walking_s", 0.0)), int(d.get("n_walking_bouts", 0)),
                   int(d.get("summary_due_us", 0)))


class SessionEndedError(Exception):
    """A chunk of a session that already ended (code ``session_ended``); nothing changed."""

    code = "session_ended"

    def __init__(self, reason: str) -> None:
        super().__init__(f"{self.code}: {reason}")
        self.reason = reason


def state_key(chunk: ImuChunk) -> str:
    """Key of a session's state: chunks of one session share it, sessions never do."""
    return f"{chunk.patient_id}|{chunk.device_id}|{chunk.session_id}"


def risk_key(chunk: ImuChunk) -> str:
    """Key of a patient's fall-risk state (the patient id, as the chunk topic's key)."""
    return chunk.patient_id


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """Records made final by one chunk, and whether the chunk was a duplicate.

    ``bout_results`` and ``fall_events`` are the core's own results behind ``bouts`` and
    the near-fall/fall ``events``: the inputs of the patient's fall-risk score.
    """

    steps: list[StepRecord]
    windows: list[GaitWindowRecord]
    alerts: list[AlertRecord] = field(default_factory=list)
    duplicate: bool = False
    flushed: bool = False
    """The session's open segment was closed (its last chunk, or ``flush``): the state
    should be stored now, and the session's bout and windows are final."""
    metrics: list[GaitMetricsRecord] = field(default_factory=list)
    bouts: list[BoutRecord] = field(default_factory=list)
    events: list[GaitEventRecord] = field(default_factory=list)
    bout_results: list[BoutResult] = field(default_factory=list)
    fall_events: list[FallEvent] = field(default_factory=list)
    sessions: list[SessionRecord] = field(default_factory=list)
    """The session's running summary, when one is due (see ``SessionRecord``)."""


@dataclass(frozen=True, slots=True)
class RiskResult:
    """What one chunk changed in the patient's fall risk: scores and risk alerts."""

    scores: list[FallRiskRecord] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)


class Identity(TypedDict):
    """The identity every record carries."""

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str


def _identity(chunk: ImuChunk) -> Identity:
    return {"clinic_id": chunk.clinic_id, "patient_id": chunk.patient_id,
            "device_id": chunk.device_id, "session_id": chunk.session_id}


class SessionProcessor:
    """Applies the gait, fall and fall-risk cores to chunks and labels their output.

    ``sensor_heights_m`` maps patient ids to their profile's sensor height;
    ``sensor_height_m`` is used for every other patient.
    """

    def __init__(self, *, window_s: float, clock: Callable[[], int] = wall_clock_us,
                 sensor_height_m: float = DEFAULT_SENSOR_HEIGHT_M,
                 sensor_heights_m: Mapping[str, float] | None = None,
                 risk: FallRiskScorer | None = None,
                 clinic_risk: Mapping[str, FallRiskScorer] | None = None,
                 session_summary_every_s: float = 60.0) -> None:
        self.gait = GaitStream(window_s=window_s)
        self.summary_every_us = round(session_summary_every_s * 1e6)
        self.pipeline = GaitPipeline(sensor_height_m=sensor_height_m, window_s=window_s)
        """The gait pipeline of patients without a profile."""
        self.sensor_heights_m = dict(sensor_heights_m or {})
        self._pipelines = {h: GaitPipeline(sensor_height_m=h, window_s=window_s)
                           for h in set(self.sensor_heights_m.values())}
        self.falls = FallMonitor()
        self.risk = risk or FallRiskScorer()
        """The default fall-risk scorer; ``clinic_risk`` overrides it per clinic."""
        self.clinic_risk = dict(clinic_risk or {})
        self.clock = clock

    def pipeline_for(self, patient_id: str) -> GaitPipeline:
        """The gait pipeline with the sensor height of the patient's profile."""
        h = self.sensor_heights_m.get(patient_id)
        return self.pipeline if h is None else self._pipelines[h]

    # ------------------------------------------------------------------ state

    def new_state(self) -> SessionState:
        """State for a session never seen before."""
        return SessionState(self.gait.initial_state(), self.falls.initial_state())

    @staticmethod
    def dump_state(state: SessionState) -> bytes:
        """Serialise a state for the table (exact round trip: shortest float repr)."""
        return orjson.dumps(state.to_dict())

    @staticmethod
    def load_state(data: bytes) -> SessionState:
        """Inverse of ``dump_state``."""
        return SessionState.from_dict(orjson.loads(data))

    def new_risk_state(self) -> FallRiskState:
        """Fall-risk state for a patient never seen before."""
        return self.risk.initial_state()

    @staticmethod
    def dump_risk_state(state: FallRiskState) -> bytes:
        """Serialise a patient's fall-risk state for its table."""
        return orjson.dumps(state.to_dict())

    @staticmethod
    def load_risk_state(data: bytes) -> FallRiskState:
        """Inverse of ``dump_risk_state``."""
        return FallRiskState.from_dict(orjson.loads(data))

    # ------------------------------------------------------------------ per session

    def process(self, state: SessionState, chunk: ImuChunk,
                received_at_us: int | None = None) -> ProcessResult:
        """Consume one chunk; ``state`` is updated in place unless the chunk is a duplicate.

        A chunk whose sequence number is not after the last one processed for its session
        was seen before (a redelivery after a restart): it is skipped, so replays do not
        produce different results. A chunk flagged as the session's last also closes the
        session (see the module docstring); a new chunk of an ended session raises
        ``SessionEndedError`` and changes nothing.
        """
        if chunk.sequence <= state.last_seq:
            return ProcessResult([], [], duplicate=True)
        if state.ended:
            raise SessionEndedError(
                f"session {chunk.session_id!r} of device {chunk.device_id!r} ended with "
                f"chunk {state.last_seq}; chunk {chunk.sequence} comes after it")
        ident = _identity(chunk)
        state.identity = ident
        starts = state.start_us is None
        if starts:
            state.start_us = chunk.t0_us
        state.end_us = max(state.end_us, chunk.end_us)
        out = self.gait.process(state.gait, chunk.acc_mps2, chunk.t0_us, chunk.sample_rate_hz)
        cadence = out.windows
        pipeline_outs = self._run_pipeline(state, chunk)
        events = self.falls.process(state.falls, chunk.samples, chunk.t0_us,
                                    chunk.sample_rate_hz)
        state.last_seq = chunk.sequence
        if chunk.ends_session:
            cadence = cadence + self._close_windows(state.gait)
            pipeline_outs.append(self._close_segment(state, chunk.patient_id))
            events = events + self.falls.flush(state.falls)
        result = self._records(state, ident, cadence, pipeline_outs,
                               [self._alert(ident, e, received_at_us) for e in events], events,
                               flushed=chunk.ends_session)
        if chunk.ends_session:
            self._end(state)
        return self._summarised(state, result, due=starts)

    def flush(self, state: SessionState) -> ProcessResult:
        """Close the session's open segment now, as its last chunk would (the idle timeout).

        Emits the open bout and the windows holding data; unlike the end flag, the session
        stays open: a later chunk starts a new segment, as after a gap. Nothing to close
        (no data since the last flush, or an ended session) gives an empty result.
        """
        if not state.is_open or state.identity is None:
            return ProcessResult([], [])
        cadence = self._close_windows(state.gait)
        outs = [self._close_segment(state, state.identity["patient_id"])]
        events = self.falls.flush(state.falls)
        result = self._records(state, state.identity, cadence, outs,
                               [self._alert(state.identity, e, None) for e in events], events,
                               flushed=True)
        return self._summarised(state, result, due=True)

    def _summarised(self, state: SessionState, result: ProcessResult, *,
                    due: bool) -> ProcessResult:
        """``result`` with the session's summary when one is due (``SessionRecord``).

        Due at the session's first chunk (``due``), when bouts closed, when the segment was
        flushed or the session ended, and ``summary_every_us`` of device time after the
        previous summary.
        """
        if not (due or result.bouts or result.flushed or state.end_us >= state.summary_due_us):
            return result
        assert state.identity is not None and state.start_us is not None
        state.summary_due_us = state.end_us + self.summary_every_us
        summary = SessionRecord(
            **state.identity, start_us=state.start_us, end_us=state.end_us,
            n_steps=state.n_steps, n_bouts=state.n_walking_bouts,
            walking_s=round(state.walking_s, 6), ended=state.ended)
        return replace(result, sessions=[summary])

    def _end(self, state: SessionState) -> None:
        """Mark the session ended and drop the signal history only an open one needs."""
        state.ended = True
        state.pipeline = None
        state.gait = self.gait.initial_state()
        state.falls = self.falls.initial_state()

    def _close_windows(self, g: GaitStreamState) -> list[WindowCadence]:
        """Emit the cadence windows holding data and restart step detection.

        What ``GaitStream`` does at a gap in the data (it has no flush of its own): every
        window that began before the end of the data is final; the next data, if any,
        starts a new detector segment and counts from the next window.
        """
        windows: list[WindowCadence] = []
        if g.open_window_us is not None:
            steps_us = np.asarray(g.recent_steps_us, dtype=np.int64)
            while g.open_window_us < g.last_end_us:
                windows.append(window_cadence(steps_us, g.open_window_us, self.gait.window_us,
                                              max_step_time_s=self.gait.max_step_time_s))
                g.open_window_us += self.gait.window_us
        g.detector = self.gait.detector.initial_state()
        g.recent_steps_us = []
        return windows

    def _close_segment(self, state: SessionState, patient_id: str
                       ) -> tuple[int, PipelineOutput]:
        """Flush the gait pipeline's open segment; (bout base, output).

        Bout numbers of a later segment continue after the flushed ones.
        """
        assert state.pipeline is not None
        flushed = self.pipeline_for(patient_id).flush(state.pipeline)
        out = (state.bout_base, flushed)
        state.bout_base = max([state.n_bouts, *(state.bout_base + b.bout_index + 1
                                                for b in flushed.bouts)])
        state.pipeline = None
        return out

    def _records(self, state: SessionState, ident: Identity, cadence: list[WindowCadence],
                 pipeline_outs: list[tuple[int, PipelineOutput]], alerts: list[AlertRecord],
                 events: list[FallEvent], *, flushed: bool) -> ProcessResult:
        """Label the cores' results with the session's identity and running numbers."""
        windows = [
            GaitWindowRecord(
                **ident,
                window_start_us=w.window_start_us,
                window_s=self.gait.window_s,
                n_steps=w.n_steps,
                walking=w.walking,
                cadence_spm=w.cadence_spm,
                mean_step_time_s=w.mean_step_time_s,
            )
            for w in cadence
        ]
        steps: list[StepRecord] = []
        metrics: list[GaitMetricsRecord] = []
        bouts: list[BoutRecord] = []
        turns: list[GaitEventRecord] = []
        bout_results: list[BoutResult] = []
        for base, po in pipeline_outs:
            for s in po.steps:
                steps.append(_step(ident, state.n_steps, base + s.bout_index, s))
                state.n_steps += 1
            metrics += [_metrics(ident, w) for w in po.windows]
            for b in po.bouts:
                bouts.append(_bout(ident, base + b.bout_index, b))
                state.n_bouts = max(state.n_bouts, base + b.bout_index + 1)
                state.walking_s += b.duration_s
                state.n_walking_bouts += 1
            bout_results += po.bouts
            turns += [_turn(ident, t) for t in po.turns]
        fall_records = [_fall_event(ident, e, a.alert_id)
                        for e, a in zip(events, alerts, strict=True)]
        return ProcessResult(steps, windows, alerts, metrics=metrics, bouts=bouts,
                             events=turns + fall_records, bout_results=bout_results,
                             fall_events=events, flushed=flushed)

    def _run_pipeline(self, state: SessionState, chunk: ImuChunk
                      ) -> list[tuple[int, PipelineOutput]]:
        """Feed the gait pipeline, restarting it on a discontinuity; (bout base, output)."""
        outs: list[tuple[int, PipelineOutput]] = []
        pipeline = self.pipeline_for(chunk.patient_id)
        seg = state.pipeline
        if seg is not None:
            expected_us = pipeline.time_us(seg, seg.n_seen)
            if (seg.sample_rate_hz != chunk.sample_rate_hz or abs(chunk.t0_us - expected_us)
                    > self.gait.detector.max_gap_s * 1e6):
                outs.append(self._close_segment(state, chunk.patient_id))
                seg = None
        if seg is None:
            seg = state.pipeline = pipeline.initial_state(
                t0_us=chunk.t0_us, sample_rate_hz=chunk.sample_rate_hz)
        outs.append((state.bout_base, pipeline.process(seg, chunk.acc_mps2, chunk.gyr_radps)))
        return outs

    def _alert(self, ident: Identity, event: FallEvent,
               received_at_us: int | None) -> AlertRecord:
        return AlertRecord(
            alert_id=AlertRecord.make_id(ident["patient_id"], ident["session_id"],
                                         event.type.value, event.start_us),
            **ident,
            type=event.type.value,
            severity=SEVERITY[event.type],
            event_start_us=event.start_us,
            event_end_us=event.end_us,
            raised_at_us=self.clock(),
            evidence={
                "peak_acc_g": round(event.peak_acc_mps2 / 9.80665, 3),
                "peak_gyr_radps": round(event.peak_gyr_radps, 3),
                "trunk_tilt_before_deg": round(event.trunk_tilt_before_deg, 1),
                "trunk_tilt_after_deg": round(event.trunk_tilt_after_deg, 1),
                "confidence": round(event.confidence, 3),
                "peak_us": event.peak_us,
                "detected_us": event.detected_us,
            },
            chunk_received_at_us=received_at_us,
        )

    # ------------------------------------------------------------------ per patient

    def update_risk(self, state: FallRiskState, chunk: ImuChunk, result: ProcessResult,
                    received_at_us: int | None = None) -> RiskResult:
        """Feed one chunk's bouts and fall events, then its time, to the patient's score.

        ``state`` (the patient's, shared by all their sessions) is updated in place. Inputs
        go in start-time order, then ``on_time(chunk.t0_us)`` closes past clinic days. Risk
        alerts carry the chunk's identity and ``received_at_us``, like fall alerts.
        """
        if result.duplicate:
            return RiskResult()
        return self._update_risk(state, _identity(chunk), chunk.t0_us, result, received_at_us)

    def update_risk_on_flush(self, state: FallRiskState, session: SessionState,
                             result: ProcessResult) -> RiskResult:
        """Feed the bouts ``flush(session)`` closed to the patient's score (``state``).

        The records carry the session's identity; the score's time is the end of the
        session's data.
        """
        if session.identity is None or not (result.bout_results or result.fall_events):
            return RiskResult()
        return self._update_risk(state, session.identity, session.gait.last_end_us, result,
                                 None)

    def _update_risk(self, state: FallRiskState, ident: Identity, t_us: int,
                     result: ProcessResult, received_at_us: int | None) -> RiskResult:
        inputs: list[tuple[int, BoutResult | FallEvent]] = [
            *((b.start_us, b) for b in result.bout_results),
            *((e.start_us, e) for e in result.fall_events)]
        inputs.sort(key=lambda x: x[0])
        scorer = self.clinic_risk.get(ident["clinic_id"], self.risk)
        updates: list[RiskUpdate] = []
        for _, item in inputs:
            if isinstance(item, BoutResult):
                updates.append(scorer.on_bout(state, BoutSummary.from_bout_result(item)))
            else:
                updates.append(scorer.on_event(state, item))
        updates.append(scorer.on_time(state, t_us))
        scores: list[FallRiskRecord] = []
        alerts: list[AlertRecord] = []
        for u in updates:
            scores += [self._daily_record(ident, d) for d in u.daily]
            if u.score is not None:
                scores.append(self._score_record(ident, u.score))
            alerts += [a.to_record(**ident, raised_at_us=self.clock(),
                                   chunk_received_at_us=received_at_us) for a in u.alerts]
        return RiskResult(scores, alerts)

    @property
    def risk_horizon_d(self) -> int:
        """Days the score looks back over (its longest window)."""
        return max(self.risk.gait_window_days, self.risk.event_window_days)

    def _score_record(self, ident: Identity, s: RiskScore) -> FallRiskRecord:
        return FallRiskRecord(
            **ident, assessment=RISK_UPDATE, t_us=s.t_us, day=s.day, score_pts=s.score,
            components_pts=dict(s.components), inputs=dict(s.inputs), n_bouts=s.n_bouts,
            n_near_falls=s.n_near_falls, n_falls=s.n_falls,
            trend_pts_per_day=s.trend_per_day, trend_r2=None, n_trend_days=s.n_trend_days,
            horizon_d=self.risk_horizon_d, model=RISK_MODEL)

    def _daily_record(self, ident: Identity, d: DailyRiskScore) -> FallRiskRecord:
        return FallRiskRecord(
            **ident, assessment=RISK_DAILY, t_us=d.day_start_us + US_PER_DAY - 1, day=d.day,
            score_pts=d.score, components_pts=dict(d.components), inputs=dict(d.inputs),
            n_bouts=d.n_bouts, n_near_falls=d.n_near_falls, n_falls=d.n_falls,
            trend_pts_per_day=d.trend_per_day, trend_r2=d.trend_r2,
            n_trend_days=d.n_trend_days, horizon_d=self.risk_horizon_d, model=RISK_MODEL)


# ---------------------------------------------------------------------- core -> records


def _step(ident: Identity, index: int, bout_index: int, s: StepResult) -> StepRecord:
    return StepRecord(
        **ident, t_us=s.t_us, step_index=index, step_time_s=finite_or_none(s.step_time_s),
        side=s.side, bout_index=bout_index, stride_time_s=finite_or_none(s.stride_time_s),
        step_length_m=finite_or_none(s.step_length_m),
        stride_length_m=finite_or_none(s.stride_length_m),
        stride_speed_mps=finite_or_none(s.stride_speed_mps))


def _metrics(ident: Identity, w: WindowResult) -> GaitMetricsRecord:
    p = w.params

    def v(x: float) -> float | None:
        return finite_or_none(x) if w.walking else None

    return GaitMetricsRecord(
        **ident, window_start_us=w.window_start_us, window_s=w.window_s,
        stride_time_s=v(p.stride_time_s), stride_time_cv_pct=v(p.stride_time_cv_pct),
        step_time_asymmetry_pct=v(p.step_time_asymmetry_pct),
        step_regularity=v(p.step_regularity), stride_regularity=v(p.stride_regularity),
        stride_length_m=v(p.stride_length_m), walking_speed_mps=v(p.walking_speed_mps),
        n_turns=w.n_turns)


def _bout(ident: Identity, index: int, b: BoutResult) -> BoutRecord:
    p = b.params
    return BoutRecord(
        **ident, bout_index=index, start_us=b.start_us, end_us=b.end_us,
        duration_s=b.duration_s, n_steps=p.n_steps,
        cadence_spm=finite_or_none(p.cadence_spm), step_time_s=finite_or_none(p.step_time_s),
        stride_time_s=finite_or_none(p.stride_time_s),
        stride_time_cv_pct=finite_or_none(p.stride_time_cv_pct),
        step_time_asymmetry_pct=finite_or_none(p.step_time_asymmetry_pct),
        step_regularity=finite_or_none(p.step_regularity),
        stride_regularity=finite_or_none(p.stride_regularity),
        stride_length_m=finite_or_none(p.stride_length_m),
        walking_speed_mps=finite_or_none(p.walking_speed_mps),
        n_turns=b.n_turns, turn_angle_deg=b.turn_angle_deg)


def _turn(ident: Identity, t: TurnResult) -> GaitEventRecord:
    return GaitEventRecord(
        **ident, event_type=EVENT_TURN, start_us=t.start_us, end_us=t.end_us,
        duration_s=t.duration_s, turn_angle_deg=finite_or_none(t.angle_deg),
        turn_peak_rate_dps=finite_or_none(t.peak_rate_dps))


def _fall_event(ident: Identity, e: FallEvent, alert_id: str) -> GaitEventRecord:
    return GaitEventRecord(
        **ident, event_type=e.type.value, start_us=e.start_us, end_us=e.end_us,
        duration_s=(e.end_us - e.start_us) / 1e6,
        peak_acc_mps2=finite_or_none(e.peak_acc_mps2),
        peak_gyr_radps=finite_or_none(e.peak_gyr_radps),
        trunk_tilt_before_deg=finite_or_none(e.trunk_tilt_before_deg),
        trunk_tilt_after_deg=finite_or_none(e.trunk_tilt_after_deg),
        confidence=finite_or_none(e.confidence), alert_id=alert_id)
