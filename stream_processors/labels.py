"""The cores' results as output records: identity, running numbers, None for not available."""

from __future__ import annotations

from justwalk.falls import FallEvent
from justwalk.gait.pipeline import BoutResult, StepResult, TurnResult, WindowResult
from justwalk.records import (
    EVENT_TURN,
    BoutRecord,
    GaitEventRecord,
    GaitWindowRecord,
    StepRecord,
    finite_or_none,
)
from stream_processors.session_state import Identity


def step(ident: Identity, index: int, bout_index: int, s: StepResult) -> StepRecord:
    """One released step: ``index`` in the session, in bout ``bout_index``."""
    return StepRecord(
        **ident, t_us=s.t_us, step_index=index, step_time_s=finite_or_none(s.step_time_s),
        side=s.side, bout_index=bout_index, stride_time_s=finite_or_none(s.stride_time_s),
        step_length_m=finite_or_none(s.step_length_m),
        stride_length_m=finite_or_none(s.stride_length_m),
        stride_speed_mps=finite_or_none(s.stride_speed_mps))


def window(ident: Identity, w: WindowResult) -> GaitWindowRecord:
    """One window: steps and the walking flag always, gait values only while walking."""
    p = w.params
    walking = w.walking

    def v(x: float) -> float | None:
        return finite_or_none(x) if walking else None

    return GaitWindowRecord(
        **ident, window_start_us=w.window_start_us, window_s=w.window_s, n_steps=p.n_steps,
        walking=walking, cadence_spm=v(p.cadence_spm), mean_step_time_s=v(p.step_time_s),
        stride_time_s=v(p.stride_time_s), stride_time_cv_pct=v(p.stride_time_cv_pct),
        step_time_asymmetry_pct=v(p.step_time_asymmetry_pct),
        step_regularity=v(p.step_regularity), stride_regularity=v(p.stride_regularity),
        stride_length_m=v(p.stride_length_m), walking_speed_mps=v(p.walking_speed_mps),
        n_turns=w.n_turns)


def bout(ident: Identity, index: int, b: BoutResult,
         errors: dict[str, float | None] | None = None) -> BoutRecord:
    """One closed walking bout, numbered ``index`` in the session, with its values' errors."""
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
        n_turns=b.n_turns, turn_angle_deg=b.turn_angle_deg, errors=dict(errors or {}))


def turn(ident: Identity, t: TurnResult) -> GaitEventRecord:
    """One turn."""
    return GaitEventRecord(
        **ident, event_type=EVENT_TURN, start_us=t.start_us, end_us=t.end_us,
        duration_s=t.duration_s, turn_angle_deg=finite_or_none(t.angle_deg),
        turn_peak_rate_dps=finite_or_none(t.peak_rate_dps))


def fall_event(ident: Identity, e: FallEvent, alert_id: str) -> GaitEventRecord:
    """One near-fall or fall, with the id of the alert raised for it."""
    return GaitEventRecord(
        **ident, event_type=e.type.value, start_us=e.start_us, end_us=e.end_us,
        duration_s=(e.end_us - e.start_us) / 1e6,
        peak_acc_mps2=finite_or_none(e.peak_acc_mps2),
        peak_gyr_radps=finite_or_none(e.peak_gyr_radps),
        trunk_tilt_before_deg=finite_or_none(e.trunk_tilt_before_deg),
        trunk_tilt_after_deg=finite_or_none(e.trunk_tilt_after_deg),
        confidence=finite_or_none(e.confidence), alert_id=alert_id)
