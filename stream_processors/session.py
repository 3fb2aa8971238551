"""Turning IMU chunks into output records, one device session at a time (no I/O).

``SessionProcessor.process(state, chunk)`` runs the I/O-free cores on one chunk and labels
what they made final with the session's identity and running numbers; the runtime
(``stream_processors.runtime``) keeps the states and publishes the records. The wall clock
is injected; it only stamps ``raised_at_us`` on alerts (for latency), never decides
anything.

One step path. Per chunk the validated gait pipeline (``justwalk.gait.pipeline``, the code
``justwalk evaluate gait`` scores) detects the steps; its results become every gait record:
``step`` points, the ``gait_window`` point of each window (steps, walking, cadence,
variability, speed, ...), ``gait_bout`` points and turns. The fall monitor
(``justwalk.falls``) gets the steps the pipeline released in the same chunk instead of
detecting its own. The pipeline assumes contiguous samples: after a gap longer than
``MAX_GAP_S``, an overlap or a new sample rate, its open segment is flushed (bout and
windows closed) and a new one starts; bout and step numbers continue. A window is published
once, by the segment holding its first data (``Track.window_floor_us``).

Late chunks. A chunk whose sequence number lies in a gap of what the session has analysed
(an upload filling a stretch the device could not send live) is analysed on a late track
of its own (``session_state.Track``), so it never disturbs the live one: consecutive late
chunks continue it, and it is closed when it reaches data already analysed, when a late
chunk elsewhere arrives, at the session's end or its idle flush. A resend of analysed data
is a duplicate (no output). A chunk the processor cannot use is refused with
``ChunkRefused`` (code and reason; the runtime sends it to the rejects topic): one overlapping
analysed data (``timestamp_overlap``), one older than every remembered stretch
(``too_late``), one after the session's end (``session_ended``).

End of a session. A chunk flagged as its session's last (``justwalk.wire.ChunkFlags.LAST``)
is processed, then both tracks are closed: the open bouts and windows are published, and a
fall whose impact came less than the fall detector's 2 s look-ahead before the end is judged
on the data there is (``FallMonitor.flush``). The session is then ended and shrunk to its
counters; later chunks are refused, gap fills before the end are still analysed. ``flush``
(the idle timeout of a device that died without the flag) closes the tracks the same way
but leaves the session open, so later data continues it in a new segment.

Training. A training session (walk test, guided walk) started on the recording by a
control message runs in ``stream_processors.training`` on what each chunk released.

Per session a running summary (``SessionRecord``) is published at the start, at every bout,
every ``session_summary_every_s`` of device time and when the session is flushed or ends.
Per patient, ``FallRiskScorer`` turns bouts and fall events into fall-risk scores and risk
alerts; ``on_time`` closes clinic days.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from justwalk.falls import EventType, FallEvent, FallMonitor
from justwalk.gait.pipeline import BoutResult, GaitPipeline, PipelineOutput
from justwalk.records import (
    RISK_DAILY,
    RISK_UPDATE,
    AlertRecord,
    BoutRecord,
    DmoDailyRecord,
    FallRiskRecord,
    FeedbackRecord,
    GaitEventRecord,
    GaitWindowRecord,
    SessionRecord,
    StepRecord,
    WalkMinuteRecord,
    WalkTestRecord,
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
from justwalk.training import TrainingCore
from justwalk.training.control import TrainingStart, TrainingStop
from justwalk.wire import ImuChunk
from stream_processors import labels
from stream_processors.mobility import DmoState, MobilityOutcomes
from stream_processors.session_state import MAX_RUNS, Identity, SessionState, Track
from stream_processors.training import TrainingRunner

SEVERITY = {EventType.FALL: "critical", EventType.NEAR_FALL: "warning"}
RISK_MODEL = "justwalk-points-1"
"""Name and version of the fall-risk formula (``justwalk.risk``) in the ``fall_risk`` points."""
DEFAULT_SENSOR_HEIGHT_M = 1.0
MAX_GAP_S = 0.05
"""Longest hole in the samples the gait pipeline bridges (as the fall front end does)."""

__all__ = ["ChunkRefused", "Identity", "ProcessResult", "RiskResult", "SessionEndedError",
           "SessionProcessor", "SessionState", "risk_key", "state_key", "wall_clock_us"]


def wall_clock_us() -> int:
    """Wall-clock time, microseconds since the Unix epoch."""
    return time.time_ns() // 1000


def state_key(chunk: ImuChunk) -> str:
    """Key of a session's state: chunks of one session share it, sessions never do."""
    return f"{chunk.patient_id}|{chunk.device_id}|{chunk.session_id}"


def risk_key(chunk: ImuChunk) -> str:
    """Key of a patient's fall-risk state (the patient id, as the chunk topic's key)."""
    return chunk.patient_id


class ChunkRefused(Exception):
    """A chunk the processor cannot use; ``code`` and ``reason`` say why. Nothing changed."""

    code = "refused"

    def __init__(self, reason: str, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(f"{self.code}: {reason}")
        self.reason = reason


class SessionEndedError(ChunkRefused):
    """A chunk after its session's last one (code ``session_ended``); nothing changed."""

    code = "session_ended"


@dataclass(slots=True)
class ProcessResult:
    """Records made final by one chunk (or a flush), and the cores' results behind them.

    ``bout_results`` and ``fall_events`` feed the patient's fall-risk score.
    """

    steps: list[StepRecord] = field(default_factory=list)
    windows: list[GaitWindowRecord] = field(default_factory=list)
    bouts: list[BoutRecord] = field(default_factory=list)
    events: list[GaitEventRecord] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)
    sessions: list[SessionRecord] = field(default_factory=list)
    bout_results: list[BoutResult] = field(default_factory=list)
    fall_events: list[FallEvent] = field(default_factory=list)
    feedback: list[FeedbackRecord] = field(default_factory=list)
    walk_minutes: list[WalkMinuteRecord] = field(default_factory=list)
    walk_tests: list[WalkTestRecord] = field(default_factory=list)
    """The training session's decisions (``stream_processors.training``)."""
    duplicate: bool = False
    """The chunk was analysed before (a resend): nothing changed."""
    flushed: bool = False
    """A track was closed (the session's end, a flush): the session's bouts are final."""


@dataclass(frozen=True, slots=True)
class RiskResult:
    """What one chunk changed in the patient's fall risk: scores and risk alerts."""

    scores: list[FallRiskRecord] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)


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
                 session_summary_every_s: float = 60.0,
                 mobility: MobilityOutcomes | None = None) -> None:
        self.window_s = window_s
        self.window_us = round(window_s * 1e6)
        self.summary_every_us = round(session_summary_every_s * 1e6)
        self.max_gap_us = round(MAX_GAP_S * 1e6)
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
        self.mobility = mobility or MobilityOutcomes()
        """Daily DMOs and the expected error of bout values (``stream_processors.mobility``)."""
        self.training = TrainingRunner(TrainingCore(), clock)

    def pipeline_for(self, patient_id: str) -> GaitPipeline:
        """The gait pipeline with the sensor height of the patient's profile."""
        h = self.sensor_heights_m.get(patient_id)
        return self.pipeline if h is None else self._pipelines[h]

    def new_state(self) -> SessionState:
        """State for a session never seen before."""
        return SessionState()

    def new_risk_state(self) -> FallRiskState:
        """Fall-risk state for a patient never seen before."""
        return self.risk.initial_state()

    # ------------------------------------------------------------------ per session

    def process(self, state: SessionState, chunk: ImuChunk,
                received_at_us: int | None = None) -> ProcessResult:
        """Consume one chunk; ``state`` is updated in place (see the module docstring).

        Raises ``ChunkRefused`` (``SessionEndedError`` after the end) for a chunk the
        processor cannot use; the state is then unchanged.
        """
        late = self._classify(state, chunk)
        if late is None:
            return ProcessResult(duplicate=True)
        ident = _identity(chunk)
        state.identity = ident
        out = ProcessResult()
        due = state.start_us is None
        if due:
            state.start_us = chunk.t0_us
        state.end_us = max(state.end_us, chunk.end_us)
        if not late:
            if state.live is None:
                state.live = Track(self.falls.initial_state())
            self._feed(state, state.live, chunk, ident, out, received_at_us)
        else:
            self._feed(state, self._late_track(state, chunk, ident, out), chunk, ident, out,
                       received_at_us)
        if _insert_run(state.runs, chunk, self.max_gap_us) and late:
            assert state.late is not None
            self._close_track(state, state.late, ident, out)  # the gap is filled
            state.late = None
        if chunk.ends_session:
            for track in (state.live, state.late):
                if track is not None:
                    self._close_track(state, track, ident, out)
            state.ended, state.end_seq = True, chunk.sequence
            state.live = state.late = None
        self.training.after(state, out, received_at_us, closing=chunk.ends_session,
                            ended=chunk.ends_session)
        return self._summarised(state, out, due=due or out.flushed)

    def flush(self, state: SessionState) -> ProcessResult:
        """Close the session's open tracks now, as its last chunk would (the idle timeout).

        Emits the open bouts and the windows holding data; unlike the end flag, the session
        stays open: a later chunk starts a new segment, as after a gap. Nothing to close
        (no data since the last flush) gives an empty result.
        """
        ident = state.identity
        if not state.is_open or ident is None:
            return ProcessResult()
        out = ProcessResult()
        for track in (state.live, state.late):
            if track is not None and track.pipeline is not None:
                self._close_track(state, track, ident, out)
        state.late = None
        self.training.after(state, out, None, closing=True)
        return self._summarised(state, out, due=True)

    def control(self, state: SessionState, msg: TrainingStart | TrainingStop) -> ProcessResult:
        """A training session's start or stop on this recording (``stream_processors.training``)."""
        out = ProcessResult()
        if isinstance(msg, TrainingStart):
            self.training.start(state, msg, out)
        else:
            self.training.stop(state, msg, out)
        return out

    def abandon(self, state: SessionState, chunk: ImuChunk) -> None:
        """After a chunk broke the maths: drop the open tracks, count the chunk as analysed.

        The session goes on from its next chunk as after a gap (records already published
        stay); a resend of the broken chunk is a duplicate.
        """
        state.live = state.late = None
        _insert_run(state.runs, chunk, self.max_gap_us)

    # ------------------------------------------------------------------ helpers

    def _classify(self, state: SessionState, chunk: ImuChunk) -> bool | None:
        """None: analysed before; False: the live stream; True: a late chunk in a gap."""
        runs, seq = state.runs, chunk.sequence
        half = round(0.5e6 / chunk.sample_rate_hz)
        if state.ended and seq > state.end_seq:
            raise SessionEndedError(
                f"session {chunk.session_id!r} of device {chunk.device_id!r} ended with "
                f"chunk {state.end_seq}; chunk {seq} comes after it")
        if not runs or seq > runs[-1][1]:
            if runs and chunk.t0_us < runs[-1][3] - half:
                raise ChunkRefused(
                    f"chunk {seq} starts at {chunk.t0_us} us, before the end of the data "
                    f"analysed so far ({runs[-1][3]} us)", "timestamp_overlap")
            return False
        i = bisect.bisect_right(runs, seq, key=lambda r: r[0])
        if i == 0 and len(runs) >= MAX_RUNS:
            raise ChunkRefused(
                f"chunk {seq} is older than everything remembered of session "
                f"{chunk.session_id!r} (from chunk {runs[0][0]})", "too_late")
        pred = runs[i - 1] if i > 0 else None
        if pred is not None and seq <= pred[1]:
            return None
        succ = runs[i]
        if (pred is not None and chunk.t0_us < pred[3] - half) or chunk.end_us > succ[2] + half:
            raise ChunkRefused(
                f"chunk {seq} ({chunk.t0_us}..{chunk.end_us} us) overlaps data analysed "
                "under other sequence numbers", "timestamp_overlap")
        return True

    def _late_track(self, state: SessionState, chunk: ImuChunk, ident: Identity,
                    out: ProcessResult) -> Track:
        """The late track a late chunk continues, or a new one (closing the previous)."""
        track = state.late
        if track is not None and track.last_seq + 1 == chunk.sequence and abs(
                chunk.t0_us - track.end_us) <= self.max_gap_us:
            return track
        if track is not None:
            self._close_track(state, track, ident, out)
        i = bisect.bisect_right(state.runs, chunk.sequence, key=lambda r: r[0])
        floor = state.runs[i - 1][3] if i > 0 else 0
        track = state.late = Track(self.falls.initial_state(), window_floor_us=floor,
                                   window_ceil_us=state.runs[i][2])
        return track

    def _feed(self, state: SessionState, track: Track, chunk: ImuChunk, ident: Identity,
              out: ProcessResult, received_at_us: int | None) -> None:
        """Run the cores on one chunk of a track."""
        pipeline = self.pipeline_for(chunk.patient_id)
        fs = chunk.sample_rate_hz
        seg = track.pipeline
        if seg is not None and (seg.sample_rate_hz != fs or abs(
                chunk.t0_us - pipeline.time_us(seg, seg.n_seen)) > self.max_gap_us):
            self._close_segment(state, track, ident, out)
            seg = None
        if seg is None:
            seg = track.pipeline = pipeline.initial_state(t0_us=chunk.t0_us, sample_rate_hz=fs)
        po = pipeline.process(seg, chunk.acc_mps2, chunk.gyr_radps)
        self._collect(state, track, ident, po, out)
        events = self.falls.process(track.falls, chunk.samples, chunk.t0_us, fs,
                                    [s.t_us for s in po.steps])
        self._falls(ident, events, out, received_at_us)
        track.last_seq = chunk.sequence
        track.end_us = chunk.end_us

    def _close_segment(self, state: SessionState, track: Track, ident: Identity,
                       out: ProcessResult) -> None:
        """Flush the track's open pipeline segment (its bout and windows)."""
        assert track.pipeline is not None
        po = self.pipeline_for(ident["patient_id"]).flush(track.pipeline)
        self._collect(state, track, ident, po, out)
        track.pipeline = None
        track.bouts.clear()
        track.window_floor_us = track.end_us
        out.flushed = True

    def _close_track(self, state: SessionState, track: Track, ident: Identity,
                     out: ProcessResult) -> None:
        """Flush a track: its open segment, and falls judged on the data there is."""
        if track.pipeline is not None:
            self._close_segment(state, track, ident, out)
        self._falls(ident, self.falls.flush(track.falls), out, None)
        out.flushed = True

    def _collect(self, state: SessionState, track: Track, ident: Identity,
                 po: PipelineOutput, out: ProcessResult) -> None:
        """Label the pipeline's results with the session's identity and running numbers."""
        for s in po.steps:
            bout = track.bouts.get(s.bout_index)
            if bout is None:
                bout = track.bouts[s.bout_index] = state.n_bouts
                state.n_bouts += 1
            out.steps.append(labels.step(ident, state.n_steps, bout, s))
            state.n_steps += 1
        w_us = self.window_us
        out.windows += [labels.window(ident, w) for w in po.windows
                        if track.window_floor_us <= w.window_start_us
                        and w.window_start_us + w_us <= track.window_ceil_us]
        for b in po.bouts:
            number = track.bouts.pop(b.bout_index, None)
            if number is None:  # a bout whose steps were never published (not expected)
                number = state.n_bouts
                state.n_bouts += 1
            out.bouts.append(labels.bout(ident, number, b, self.mobility.bout_errors(b)))
            out.bout_results.append(b)
            state.walking_s += b.duration_s
            state.n_walking_bouts += 1
        if len(track.bouts) > 2:  # chains too short to be bouts: closed, never reported
            for k in sorted(track.bouts)[:-2]:
                del track.bouts[k]
        out.events += [labels.turn(ident, t) for t in po.turns]

    def _falls(self, ident: Identity, events: list[FallEvent], out: ProcessResult,
               received_at_us: int | None) -> None:
        for e in events:
            alert = self._alert(ident, e, received_at_us)
            out.alerts.append(alert)
            out.events.append(labels.fall_event(ident, e, alert.alert_id))
            out.fall_events.append(e)

    def _summarised(self, state: SessionState, out: ProcessResult, *,
                    due: bool) -> ProcessResult:
        """``out`` with the session's summary when one is due (``SessionRecord``).

        Due at the session's first chunk, when bouts closed, when a track was flushed or
        the session ended, and ``summary_every_us`` of device time after the previous one.
        """
        if not (due or out.bouts or state.end_us >= state.summary_due_us):
            return out
        assert state.identity is not None and state.start_us is not None
        state.summary_due_us = state.end_us + self.summary_every_us
        out.sessions.append(SessionRecord(
            **state.identity, start_us=state.start_us, end_us=state.end_us,
            n_steps=state.n_steps, n_bouts=state.n_walking_bouts,
            walking_s=round(state.walking_s, 6), ended=state.ended))
        return out

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
        return self._update_risk(state, session.identity, session.end_us, result, None)

    def _update_risk(self, state: FallRiskState, ident: Identity, t_us: int,
                     result: ProcessResult, received_at_us: int | None) -> RiskResult:
        scorer = self.clinic_risk.get(ident["clinic_id"], self.risk)
        if (not result.bout_results and not result.fall_events and state.day is not None
                and scorer.day_of(t_us) <= state.day):
            return RiskResult()  # most chunks: no input, the open day goes on (on_time no-op)
        inputs: list[tuple[int, BoutResult | FallEvent]] = [
            *((b.start_us, b) for b in result.bout_results),
            *((e.start_us, e) for e in result.fall_events)]
        inputs.sort(key=lambda x: x[0])
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

    def update_dmos(self, state: DmoState, risk: FallRiskState, ident: Identity, t_us: int,
                    result: ProcessResult) -> list[DmoDailyRecord]:
        """The patient's daily DMOs after ``result``'s bouts; event time ``t_us`` ends days."""
        scorer = self.clinic_risk.get(ident["clinic_id"], self.risk)
        return self.mobility.update(state, ident, result.bout_results, t_us,
                                    risk=(scorer, risk))

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


def _insert_run(runs: list[list[int]], chunk: ImuChunk, max_gap_us: int) -> bool:
    """Record an analysed chunk in ``runs``; True if it reached the run after it.

    Runs touch when their sequence numbers follow on, or their device times do (within
    ``max_gap_us``). At most ``MAX_RUNS`` are kept (the oldest are forgotten).
    """
    seq = chunk.sequence
    new = [seq, seq, chunk.t0_us, chunk.end_us]
    if runs and seq > runs[-1][1]:  # the common case: the live stream going on
        last = runs[-1]
        if last[1] + 1 == seq or abs(chunk.t0_us - last[3]) <= max_gap_us:
            last[1], last[3] = seq, chunk.end_us
        else:
            runs.append(new)
        if len(runs) > MAX_RUNS:
            del runs[0]
        return False
    i = bisect.bisect_right(runs, seq, key=lambda r: r[0])
    runs.insert(i, new)
    succ = runs[i + 1] if i + 1 < len(runs) else None
    reached = succ is not None and (succ[0] == seq + 1
                                    or abs(succ[2] - chunk.end_us) <= max_gap_us)
    if reached:
        assert succ is not None
        new[1], new[3] = succ[1], succ[3]
        del runs[i + 1]
    if i > 0 and (runs[i - 1][1] + 1 == seq or abs(chunk.t0_us - runs[i - 1][3]) <= max_gap_us):
        runs[i - 1][1], runs[i - 1][3] = new[1], new[3]
        del runs[i]
    if len(runs) > MAX_RUNS:
        del runs[0]
    return reached
