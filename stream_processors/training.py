"""The training core (``justwalk.training``) inside the processor: one session per recording.

A training session starts and stops with control messages on the chunk topic
(``justwalk.training.control``), in order with the recording's chunks, and lives in the
recording's ``SessionState`` (``training``), so it is stored, restored and replayed with
it. After each chunk the steps and fall events the chunk released go to the core, then
the recording's device time; the end flag and the idle flush close the session (a device
that went quiet: ``disconnected``). Its decisions become records: ``FeedbackRecord`` (to
the device, through the gateway), ``WalkMinuteRecord`` and, once, ``WalkTestRecord``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from justwalk.falls import EventType
from justwalk.records import EVENT_TURN, FeedbackRecord, WalkMinuteRecord, WalkTestRecord
from justwalk.training import Step, TrainingCore, TrainingOutput, WalkResult
from justwalk.training.control import TrainingStart, TrainingStop
from justwalk.training.scores import relative_distance_uncertainty
from stream_processors.session_state import Identity, SessionState

if TYPE_CHECKING:
    from stream_processors.session import ProcessResult

log = logging.getLogger(__name__)

_EVENTS = {EventType.NEAR_FALL: "near_fall", EventType.FALL: "fall"}


def _nan(x: float | None) -> float:
    return math.nan if x is None else x


class TrainingRunner:
    """Runs each recording's training session and labels what it decides."""

    def __init__(self, core: TrainingCore, clock: Callable[[], int]) -> None:
        self.core = core
        self.clock = clock

    def start(self, state: SessionState, msg: TrainingStart, out: ProcessResult) -> None:
        """Start ``msg``'s session on the recording (a second start is ignored)."""
        if state.training is not None:
            log.warning("recording %s has training session %d; start of %d ignored",
                        msg.session_key, state.training_db_id, msg.db_session_id)
            return
        if state.identity is None:
            state.identity = Identity(clinic_id=msg.clinic_id, patient_id=msg.patient_id,
                                      device_id=msg.device_id, session_id=msg.session_id)
        state.training = self.core.start(msg.plan, msg.start_us)
        state.training_db_id = msg.db_session_id
        t = self.core.on_time(state.training, state.end_us)
        if state.ended:
            t.extend(self.core.close(state.training, ended=True))
        self._label(state, t, out, None)

    def stop(self, state: SessionState, msg: TrainingStop, out: ProcessResult) -> None:
        """The device's stop."""
        if state.training is None:
            log.warning("stop of recording %s without a training session", msg.session_key)
            return
        self._label(state, self.core.stop(state.training, msg.stop_us), out, None)

    def after(self, state: SessionState, out: ProcessResult, received_at_us: int | None, *,
              closing: bool, ended: bool = False) -> None:
        """Feed what one chunk (or flush) released.

        ``closing``: the recording's data ended (``ended``: by its last chunk; else the
        device went quiet).
        """
        training = state.training
        if training is None or training.done:
            return
        items: list[tuple[int, int, Step | str | float]] = [
            (s.t_us, 1, Step(s.t_us, _nan(s.step_time_s), _nan(s.step_length_m),
                             _nan(s.stride_time_s))) for s in out.steps]
        items += [(e.start_us, 0, _EVENTS[e.type]) for e in out.fall_events
                  if e.type in _EVENTS]
        items += [(e.start_us, 2, e.turn_angle_deg) for e in out.events
                  if e.event_type == EVENT_TURN and e.turn_angle_deg is not None]
        items.sort(key=lambda x: (x[0], x[1]))
        t = TrainingOutput()
        for t_us, _, item in items:
            if isinstance(item, Step):
                t.extend(self.core.on_step(training, item))
            elif isinstance(item, str):
                t.extend(self.core.on_fall_event(training, t_us, item))
            else:
                t.extend(self.core.on_turn(training, t_us, item))
        t.extend(self.core.on_time(training, state.end_us))
        if closing:
            t.extend(self.core.close(training, ended=ended))
        self._label(state, t, out, received_at_us)

    def _label(self, state: SessionState, t: TrainingOutput, out: ProcessResult,
               received_at_us: int | None) -> None:
        ident, training = state.identity, state.training
        assert ident is not None and training is not None
        kind = training.plan.kind.value
        now = self.clock()
        out.feedback += [FeedbackRecord(**ident, feedback=f.kind, t_us=f.t_us, text=f.text,
                                        values=f.values, raised_at_us=now,
                                        chunk_received_at_us=received_at_us)
                         for f in t.feedback]
        rel = relative_distance_uncertainty(
            training.sum_len_m / training.n_len if training.n_len else math.nan)
        out.walk_minutes += [WalkMinuteRecord(
            **ident, db_session_id=state.training_db_id, session_type=kind, minute=m.minute,
            t_us=training.start_us + (m.minute - 1) * 60_000_000, duration_s=m.duration_s,
            distance_m=m.distance_m,
            distance_uncertainty_m=None if rel is None else round(m.distance_m * rel, 4),
            steps=m.steps, speed_mps=m.speed_mps, cadence_spm=m.cadence_spm)
            for m in t.minutes]
        if t.result is not None:
            out.walk_tests.append(walk_test_record(ident, state.training_db_id, t.result))


def walk_test_record(ident: Identity, db_session_id: int, r: WalkResult) -> WalkTestRecord:
    """The record of a session's result."""
    return WalkTestRecord(
        **ident, db_session_id=db_session_id, session_type=r.kind.value,
        status=r.status.value, start_us=r.start_us, end_us=r.end_us, duration_s=r.duration_s,
        distance_m=r.distance_m, distance_uncertainty_m=r.distance_uncertainty_m,
        distance_source=r.distance_source, steps=r.steps, mean_speed_mps=r.mean_speed_mps,
        speed_uncertainty_mps=r.speed_uncertainty_mps, mean_cadence_spm=r.mean_cadence_spm,
        stride_time_cv_pct=r.stride_time_cv_pct, near_falls=r.near_falls,
        adherence_pct=r.adherence_pct, cadence_in_band_pct=r.cadence_in_band_pct,
        t25fw_time_s=r.t25fw_time_s, t25fw_time_uncertainty_s=r.t25fw_time_uncertainty_s,
        dwi_pct=r.dwi_pct, dwi_minute2_pct=r.dwi_minute2_pct, fatigability=r.fatigability,
        minutes=[{"minute": m.minute, "distance_m": m.distance_m, "steps": m.steps,
                  "speed_mps": m.speed_mps, "cadence_spm": m.cadence_spm}
                 for m in r.minutes])
