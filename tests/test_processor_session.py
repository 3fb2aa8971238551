"""The processor's chunk -> records path, without a broker."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from justwalk.records import (
    AlertRecord,
    BoutRecord,
    FallRiskRecord,
    GaitEventRecord,
    GaitWindowRecord,
    SessionRecord,
    StepRecord,
    decode_record,
)
from justwalk.risk import COMPONENTS, US_PER_DAY, FallRiskScorer, RiskAlertPolicy
from justwalk.schema import record_to_line
from justwalk.simulator.gait_model import GaitProfile, SyntheticRecording, synthesize
from justwalk.wire import ChunkFlags, ImuChunk, Placement, decode_chunk, encode_chunk
from stream_processors.idle import IdleSessions
from stream_processors.session import (
    RiskResult,
    SessionEndedError,
    SessionProcessor,
    state_key,
)
from stream_processors.session_state import (
    PatientState,
    dump_patient,
    dump_session,
    load_patient,
    load_session,
)


def round_trip(state):
    """A session state through its stored binary form."""
    return load_session(dump_session(state))


def round_trip_risk(risk):
    """A patient's fall-risk state through its stored binary form."""
    return load_patient(dump_patient(PatientState(risk))).risk

T0 = 1_700_000_000_000_000


def chunks(cadence: float, seconds: float, *, per_chunk: int = 50):
    t = np.arange(0, seconds, 0.01)
    s = np.zeros((t.size, 6), np.float32)
    s[:, 0] = 9.81 + 1.5 * np.sin(2 * np.pi * cadence / 60 * t)
    for seq, k in enumerate(range(0, t.size, per_chunk)):
        c = ImuChunk("pt-001", "dev-001", "sess-1", seq, T0 + k * 10_000, 100.0,
                     Placement.LOWER_BACK, s[k : k + per_chunk], clinic_id="clinic-a")
        yield decode_chunk(encode_chunk(c))  # through the wire, as in the processor


def test_records_carry_identity_and_event_time():
    proc = SessionProcessor(window_s=5.0)
    state = proc.new_state()
    steps, windows = [], []
    for c in chunks(110, 30):
        r = proc.process(state, c)
        steps += r.steps
        windows += r.windows
    assert len(windows) == 5
    assert all(isinstance(w, GaitWindowRecord) for w in windows)
    assert [w.window_start_us for w in windows] == [T0 + i * 5_000_000 for i in range(5)]
    for w in windows[1:]:
        assert abs(w.cadence_spm - 110) < 0.5
    assert all(isinstance(s, StepRecord) and s.clinic_id == "clinic-a" for s in steps)
    assert [s.step_index for s in steps] == list(range(len(steps)))
    # the JSON contract round-trips and maps to InfluxDB lines
    assert decode_record(steps[3].to_json()) == steps[3]
    assert decode_record(windows[2].to_json()) == windows[2]
    line = record_to_line(windows[2])
    assert line.startswith("gait_window,clinic_id=clinic-a,device_id=dev-001,patient_id=pt-001 ")
    assert line.endswith(f" {(T0 + 10_000_000) * 1000}")


def test_redelivered_chunks_are_skipped_and_state_survives_serialisation():
    proc = SessionProcessor(window_s=5.0)
    all_chunks = list(chunks(95, 20))
    reference = proc.new_state()
    ref_out = [proc.process(reference, c) for c in all_chunks]

    state = proc.new_state()
    outs = []
    for i, c in enumerate(all_chunks):
        state = round_trip(state)
        outs.append(proc.process(state, c))
        if i % 5 == 4:  # a redelivery of the last three chunks after a "restart"
            for old in all_chunks[i - 2 : i + 1]:
                assert proc.process(state, old).duplicate
    assert outs == ref_out
    assert state_key(all_chunks[0]) == "pt-001|dev-001|sess-1"


def test_a_fall_raises_one_critical_alert_with_a_stable_id():
    from tests.test_falls_detectors import fall_recording

    samples, impact_s = fall_recording()
    now = iter(range(10**12, 10**13, 1000))
    proc = SessionProcessor(window_s=5.0, clock=lambda: next(now))

    def run():
        state = proc.new_state()
        alerts = []
        for seq, k in enumerate(range(0, len(samples), 50)):
            c = ImuChunk("pt-009", "dev-009", "sess-9", seq, T0 + k * 10_000, 100.0,
                         Placement.LOWER_BACK, samples[k : k + 50].astype(np.float32),
                         clinic_id="clinic-b")
            alerts += proc.process(state, decode_chunk(encode_chunk(c))).alerts
        return alerts

    first, replay = run(), run()
    assert [a.type for a in first] == ["fall"]
    alert = first[0]
    assert alert.severity == "critical" and alert.clinic_id == "clinic-b"
    assert abs(alert.evidence["peak_us"] - (T0 + impact_s * 1e6)) < 200_000
    assert alert.evidence["trunk_tilt_after_deg"] > 60
    # the same event replayed gives the same id (receivers de-duplicate on it)
    assert [a.alert_id for a in replay] == [alert.alert_id]
    assert replay[0].raised_at_us != alert.raised_at_us


# -- the validated gait pipeline (issue #3) and the fall-risk score (issue #4) ---------------

WALK = (2.0, 50.0)
"""Walking interval (s) of the simulated recording; standing before and after."""


@pytest.fixture(scope="module")
def walk() -> SyntheticRecording:
    profile = GaitProfile(cadence_spm=100.0, step_time_cv=0.02, walking_s=(WALK,))
    return synthesize(profile, 60.0, 100.0, np.random.default_rng(7))


def sim_chunks(samples: np.ndarray, *, t0_us: int = T0, patient: str = "pt-001",
               session: str = "sess-1", first_seq: int = 0, skip_s: tuple[float, float] = (0, 0),
               clinic: str = "clinic-a"):
    """0.5 s chunks through the wire; chunks starting inside ``skip_s`` are dropped (a gap)."""
    for seq, k in enumerate(range(0, len(samples), 50)):
        if skip_s[0] <= k / 100 < skip_s[1]:
            continue
        c = ImuChunk(patient, "dev-001", session, first_seq + seq, t0_us + k * 10_000, 100.0,
                     Placement.LOWER_BACK, samples[k : k + 50].astype(np.float32),
                     clinic_id=clinic)
        yield decode_chunk(encode_chunk(c))


def run_all(proc: SessionProcessor, chunks, received_at_us: int | None = None):
    state, risk = proc.new_state(), proc.new_risk_state()
    results, risks = [], []
    for c in chunks:
        r = proc.process(state, c, received_at_us)
        results.append(r)
        risks.append(proc.update_risk(risk, c, r, received_at_us))
    return results, risks, state, risk


def records(results, risks) -> dict[str, list]:
    out: dict[str, list] = {k: [] for k in ("steps", "windows", "bouts", "events",
                                            "alerts", "sessions", "scores", "risk_alerts")}
    for r in results:
        for k in ("steps", "windows", "bouts", "events", "alerts", "sessions"):
            out[k] += getattr(r, k)
    for r in risks:
        out["scores"] += r.scores
        out["risk_alerts"] += r.alerts
    return out


def test_a_simulated_walk_gives_one_bout_and_window_metrics_near_the_truth(walk):
    proc = SessionProcessor(window_s=5.0)
    out = records(*run_all(proc, sim_chunks(walk.samples))[:2])
    truth_ic = walk.truth.step_times_s
    truth_cadence = 60.0 / float(np.mean(np.diff(truth_ic)))

    [bout] = out["bouts"]
    assert isinstance(bout, BoutRecord) and bout.bout_index == 0
    assert (bout.clinic_id, bout.patient_id, bout.session_id) == ("clinic-a", "pt-001", "sess-1")
    assert abs(bout.start_us - (T0 + truth_ic[0] * 1e6)) < 300_000
    # the stopping step is not part of the bout (as in the INDIP reference bouts)
    assert abs(bout.end_us - (T0 + truth_ic[-2] * 1e6)) < 300_000
    assert abs(bout.duration_s - (truth_ic[-2] - truth_ic[0])) < 0.5
    assert abs(bout.n_steps - truth_ic.size) <= 2
    assert abs(bout.cadence_spm - truth_cadence) < 2.0
    assert abs(bout.stride_time_s - 120.0 / truth_cadence) < 0.03
    assert abs(bout.step_time_s - 60.0 / truth_cadence) < 0.02
    assert 0.0 <= bout.stride_time_cv_pct < 5.0  # 2 % step-time CV in the profile
    assert 0.0 <= bout.step_time_asymmetry_pct < 5.0  # no asymmetry in the profile
    assert 0.8 < bout.step_regularity <= 1.0 and 0.8 < bout.stride_regularity <= 1.0
    assert 0.5 < bout.stride_length_m < 2.0 and 0.3 < bout.walking_speed_mps < 2.0
    assert abs(bout.walking_speed_mps - bout.stride_length_m * bout.cadence_spm / 120) < 0.01
    assert (bout.n_turns, bout.turn_angle_deg) == (0, 0.0)
    assert out["events"] == [] and out["alerts"] == []  # straight, clean walking

    # the 5 s windows: one gait_window record each, from the same pipeline as the bout
    windows = out["windows"]
    assert all(isinstance(w, GaitWindowRecord) for w in windows)
    starts = [w.window_start_us for w in windows]
    assert starts == [T0 + i * 5_000_000 for i in range(len(starts))]
    inside = [w for w in windows
              if T0 + (WALK[0] + 1) * 1e6 <= w.window_start_us <= T0 + (WALK[1] - 6) * 1e6]
    assert len(inside) >= 8 and all(w.walking for w in inside)
    for w in inside:
        assert abs(w.cadence_spm - truth_cadence) < 4.0, w
        assert abs(120.0 / w.stride_time_s - w.cadence_spm) < 2.0, w
        assert abs(w.walking_speed_mps - bout.walking_speed_mps) < 0.15, w
        assert abs(w.stride_length_m - bout.stride_length_m) < 0.15, w
    standing = [w for w in windows if w.window_start_us >= T0 + WALK[1] * 1e6]
    assert standing and all(not w.walking and w.cadence_spm is None
                            and w.walking_speed_mps is None for w in standing)

    # the JSON contract round-trips and maps onto the schema's measurements
    for r in (bout, inside[0], standing[0]):
        assert decode_record(r.to_json()) == r
    line = record_to_line(bout)
    assert line.startswith("gait_bout,clinic_id=clinic-a,device_id=dev-001,patient_id=pt-001 ")
    assert f"cadence_spm={bout.cadence_spm!r}" in line and 'session_id="sess-1"' in line
    assert line.endswith(f" {bout.start_us * 1000}")
    line = record_to_line(inside[0])
    assert line.startswith("gait_window,") and f"cadence_spm={inside[0].cadence_spm!r}" in line
    assert f"walking_speed_mps={inside[0].walking_speed_mps!r}" in line
    assert line.endswith(f" {inside[0].window_start_us * 1000}")
    assert "cadence_spm" not in record_to_line(standing[0])


def test_fall_risk_scores_follow_bouts_and_falls_and_close_days(walk):
    from tests.test_falls_detectors import fall_recording

    proc = SessionProcessor(window_s=5.0)
    results, risks, _, risk_state = run_all(proc, sim_chunks(walk.samples))
    out = records(results, risks)
    [bout] = out["bouts"]
    [score] = out["scores"]  # one counted bout, nothing else changed the score
    assert isinstance(score, FallRiskRecord) and score.assessment == "update"
    assert score.t_us == bout.end_us and score.n_bouts == 1
    assert score.inputs["walking_speed_mps"] == pytest.approx(bout.walking_speed_mps)
    assert score.score_pts == pytest.approx(sum(score.components_pts.values()))
    assert set(score.components_pts) == set(COMPONENTS)
    assert (score.n_falls, score.components_pts["falls"]) == (0, 0.0)
    assert decode_record(score.to_json()) == score
    line = record_to_line(score)
    assert line.startswith("fall_risk,clinic_id=clinic-a,patient_id=pt-001 ")  # per patient
    assert f"risk_score={score.score_pts / 100!r}" in line and 'assessment="update"' in line
    assert line.endswith(f" {score.t_us * 1000}")

    # a fall later that day, in another session of the same patient: the patient's state
    fall, _ = fall_recording()
    later = T0 + 120_000_000
    state = proc.new_state()
    fall_scores, fall_events = [], []
    for c in sim_chunks(fall, t0_us=later, session="sess-2"):
        r = proc.process(state, c)
        fall_events += r.events
        fall_scores += proc.update_risk(risk_state, c, r).scores
    [event] = fall_events
    assert isinstance(event, GaitEventRecord) and event.event_type == "fall"
    assert event.alert_id == AlertRecord.make_id("pt-001", "sess-2", "fall", event.start_us)
    assert decode_record(event.to_json()) == event
    assert record_to_line(event).startswith("gait_event,")
    assert 'event_type="fall"' in record_to_line(event)
    [after] = [s for s in fall_scores if s.n_falls == 1]
    assert after.n_bouts == 1 and after.session_id == "sess-2"
    assert after.score_pts == pytest.approx(score.score_pts + 20.0)  # a fall: 20 points

    # the first chunk of the next day closes this one
    next_day = (T0 // US_PER_DAY + 1) * US_PER_DAY + 3_600_000_000
    [c] = list(sim_chunks(walk.samples[:50], t0_us=next_day, session="sess-3"))
    r = proc.process(proc.new_state(), c)
    [daily] = proc.update_risk(risk_state, c, r).scores
    assert daily.assessment == "daily" and daily.score_pts == pytest.approx(after.score_pts)
    assert daily.t_us == (T0 // US_PER_DAY + 1) * US_PER_DAY - 1  # the day's last us
    assert daily.day == "2023-11-14" and decode_record(daily.to_json()) == daily
    assert 'assessment="daily"' in record_to_line(daily)


def test_a_risk_over_the_clinic_threshold_raises_one_alert_with_the_chunks_receipt(walk):
    proc = SessionProcessor(window_s=5.0, clock=lambda: 42,
                            risk=FallRiskScorer(policy=RiskAlertPolicy(threshold=1.0,
                                                                       hysteresis=0.5)))
    results, risks, _, _ = run_all(proc, sim_chunks(walk.samples), received_at_us=7)
    out = records(results, risks)
    [alert] = out["risk_alerts"]
    assert (alert.type, alert.severity, alert.patient_id) == ("fall_risk", "warning", "pt-001")
    assert alert.chunk_received_at_us == 7 and alert.raised_at_us == 42
    assert alert.evidence["score"] == round(out["scores"][0].score_pts, 1)
    # with the default policy (50 points) the same walk raises nothing
    default = records(*run_all(SessionProcessor(window_s=5.0), sim_chunks(walk.samples))[:2])
    assert default["risk_alerts"] == []


def test_states_round_trip_between_chunks_and_replays_are_skipped(walk):
    proc = SessionProcessor(window_s=5.0, clock=lambda: 0)
    all_chunks = list(sim_chunks(walk.samples))
    reference = records(*run_all(proc, all_chunks)[:2])
    assert reference["bouts"] and reference["scores"] and reference["windows"]

    state, risk = proc.new_state(), proc.new_risk_state()
    results, risks = [], []
    for i, c in enumerate(all_chunks):
        # as the app does: both states from their tables before every chunk
        state = round_trip(state)
        risk = round_trip_risk(risk)
        r = proc.process(state, c)
        results.append(r)
        risks.append(proc.update_risk(risk, c, r))
        if i % 7 == 6:  # a redelivery of the last three chunks after a "restart"
            for old in all_chunks[i - 2 : i + 1]:
                dup = proc.process(state, old)
                assert dup.duplicate
                assert proc.update_risk(risk, old, dup) == RiskResult()
    assert records(results, risks) == reference
    assert dump_session(round_trip(state)) == dump_session(state)


def test_a_gap_restarts_the_pipeline_and_bout_numbers_continue(walk):
    proc = SessionProcessor(window_s=5.0)
    out = records(*run_all(proc, sim_chunks(walk.samples, skip_s=(20.0, 23.0)))[:2])
    bouts = out["bouts"]
    assert [b.bout_index for b in bouts] == [0, 1]
    assert bouts[0].end_us < T0 + 20_000_000 < T0 + 23_000_000 <= bouts[1].start_us
    assert all(abs(b.cadence_spm - 100.0) < 3.0 for b in bouts)


def test_each_clinic_gets_its_own_risk_threshold(walk, tmp_path):
    from stream_processors.risk_policies import RiskPolicyError, load_risk_policies

    path = tmp_path / "risk_policies.json"
    path.write_text(json.dumps({"default": {"threshold": 50},
                                "clinics": {"clinic-low": {"threshold": 1.0,
                                                           "hysteresis": 0.5}}}))
    default, clinics = load_risk_policies(path)
    proc = SessionProcessor(window_s=5.0, risk=default, clinic_risk=clinics)
    low = records(*run_all(proc, sim_chunks(walk.samples, clinic="clinic-low"))[:2])
    other = records(*run_all(proc, sim_chunks(walk.samples, clinic="clinic-b"))[:2])
    assert len(low["risk_alerts"]) == 1 and other["risk_alerts"] == []
    # no file: defaults for everyone; a bad key is named
    assert load_risk_policies(tmp_path / "missing.json")[1] == {}
    path.write_text(json.dumps({"clinics": {"clinic-x": {"treshold": 3}}}))
    with pytest.raises(RiskPolicyError, match=r"clinics.clinic-x: unknown keys \['treshold'\]"):
        load_risk_policies(path)


# -- end of a session: the last-chunk flag and the idle timeout ------------------------------

def cut_while_walking(walk, seconds: float = 30.0, *, last: bool = True, **kw):
    """The walk's first ``seconds`` (the patient still walking) as chunks; the last flagged."""
    out = list(sim_chunks(walk.samples[: round(seconds * 100)], **kw))
    if last:
        out[-1] = decode_chunk(encode_chunk(
            dataclasses.replace(out[-1], flags=ChunkFlags.LAST)))
    return out


def test_the_last_chunk_flushes_the_open_bout_exactly_once(walk):
    proc = SessionProcessor(window_s=5.0, clock=lambda: 0)
    # without the flag the walk's bout stays open: nothing ends it
    open_results, _, open_state, _ = run_all(proc, cut_while_walking(walk, last=False))
    assert records(open_results, [])["bouts"] == [] and open_state.is_open

    chunks = cut_while_walking(walk)
    results, risks, state, risk = run_all(proc, chunks)
    out = records(results, risks)
    [bout] = out["bouts"]
    assert results[-1].bouts == [bout] and results[-1].flushed  # made by the last chunk
    assert not any(r.flushed for r in results[:-1])
    assert bout.end_us <= chunks[-1].end_us and abs(bout.cadence_spm - 100.0) < 3.0
    # the bout reached the fall-risk score like any other
    [score] = out["scores"]
    assert score.n_bouts == 1 and score.t_us == bout.end_us
    # every window holding data was published: the last one is the partial window at the end
    starts = [w.window_start_us for w in out["windows"]]
    assert starts == [T0 + i * 5_000_000 for i in range(6)]
    assert state.ended and not state.is_open

    # a redelivery of the last chunk (after a restart: the state from its snapshot) does
    # not flush again
    state = round_trip(state)
    dup = proc.process(state, chunks[-1])
    assert dup.duplicate and proc.update_risk(risk, chunks[-1], dup) == RiskResult()
    # the ended state keeps the counters only, not the signal history
    assert len(dump_session(state)) < len(dump_session(open_state)) / 5
    assert (state.n_bouts, state.n_steps) == (1, len(out["steps"]))


def test_a_chunk_after_the_end_is_refused_and_changes_nothing(walk):
    proc = SessionProcessor(window_s=5.0)
    chunks = cut_while_walking(walk, 10.0)
    _, _, state, _ = run_all(proc, chunks)
    before = dump_session(state)
    [late] = list(sim_chunks(walk.samples[:50], t0_us=chunks[-1].end_us,
                             first_seq=chunks[-1].sequence + 1))
    with pytest.raises(SessionEndedError) as e:
        proc.process(state, late)
    assert e.value.code == "session_ended"
    assert "'sess-1'" in e.value.reason and f"chunk {late.sequence}" in e.value.reason
    assert dump_session(state) == before
    # a new session of the same device starts afresh
    [fresh] = list(sim_chunks(walk.samples[:50], t0_us=chunks[-1].end_us, session="sess-2"))
    assert not proc.process(proc.new_state(), fresh).duplicate


def test_flush_closes_an_idle_session_like_the_flag_and_the_session_goes_on(walk):
    proc = SessionProcessor(window_s=5.0, clock=lambda: 0)
    flagged = records(*run_all(proc, cut_while_walking(walk))[:2])

    results, risks, state, risk = run_all(proc, cut_while_walking(walk, last=False))
    assert state.is_open
    state = round_trip(state)  # e.g. on another worker after a restart
    flushed = proc.flush(state)
    assert flushed.flushed and not state.is_open and not state.ended
    scores = proc.update_risk_on_flush(risk, state, flushed)
    out = records([*results, flushed], [*risks, scores])
    # the same records as the end flag, but the session stays open
    assert out["sessions"][-1] == dataclasses.replace(flagged["sessions"][-1], ended=False)
    assert {**out, "sessions": []} == {**flagged, "sessions": []}
    # nothing left to flush: a second request (a redelivery) publishes nothing
    again = proc.flush(state)
    assert (again.bouts, again.windows, again.flushed) == ([], [], False)
    assert proc.update_risk_on_flush(risk, state, again) == RiskResult()

    # the device comes back (after a pause) and walks on, then stands: the session goes on
    later = list(sim_chunks(walk.samples[3000:], t0_us=T0 + 40_000_000, first_seq=100))
    more = records([proc.process(state, c) for c in later], [])
    assert state.is_open and [b.bout_index for b in more["bouts"]] == [1]
    assert more["steps"][0].step_index == len(out["steps"])


def test_session_summaries_grow_with_the_session_and_the_last_says_it_ended(walk):
    proc = SessionProcessor(window_s=5.0, session_summary_every_s=20.0)
    chunks = list(sim_chunks(walk.samples))
    chunks[-1] = decode_chunk(encode_chunk(dataclasses.replace(chunks[-1], flags=ChunkFlags.LAST)))
    results, _, state, _ = run_all(proc, chunks)
    out = records(results, [])
    summaries = out["sessions"]
    # at the start, every 20 s of device time, at the bout, and at the end; never more than
    # one per chunk
    assert all(len(r.sessions) <= 1 for r in results)
    assert results[0].sessions and results[-1].sessions
    with_bouts = [i for i, r in enumerate(results) if r.bouts]
    assert with_bouts and all(results[i].sessions for i in with_bouts)
    assert 4 <= len(summaries) <= 60.0 / 20.0 + 1 + len(with_bouts) + 1
    # one session: every summary is the same InfluxDB point (time, tags), rewritten
    assert {(s.start_us, s.patient_id, s.device_id, s.session_id) for s in summaries} == {
        (T0, "pt-001", "dev-001", "sess-1")}
    assert len({record_to_line(s).rsplit(" ", 1)[1] for s in summaries}) == 1
    first, last = summaries[0], summaries[-1]
    assert (first.n_steps, first.n_bouts, first.walking_s, first.ended) == (0, 0, 0.0, False)
    assert first.end_us == chunks[0].end_us
    assert [s.ended for s in summaries] == [False] * (len(summaries) - 1) + [True]
    assert last.end_us == chunks[-1].end_us and last.duration_s == pytest.approx(60.0)
    assert last.n_steps == len(out["steps"]) and last.n_bouts == len(out["bouts"]) == 1
    assert last.walking_s == pytest.approx(sum(b.duration_s for b in out["bouts"]))
    assert last.walking_s == pytest.approx(WALK[1] - WALK[0], abs=2.0)
    assert [s.n_steps for s in summaries] == sorted(s.n_steps for s in summaries)
    # through the topic and into the session point of the schema
    assert decode_record(last.to_json()) == last
    line = record_to_line(last)
    assert line.startswith("session,clinic_id=clinic-a,device_id=dev-001,patient_id=pt-001 ")
    assert "ended=true" in line and f"n_steps={last.n_steps}i" in line
    assert isinstance(last, SessionRecord) and state.ended


def test_idle_sessions_with_an_injected_clock():
    now = [0]
    idle = IdleSessions(timeout_s=120.0, clock=lambda: now[0])
    idle.seen("a")
    now[0] = 60_000_000
    idle.seen("b")
    assert idle.due(["a", "b"]) == []
    now[0] = 120_000_000
    assert idle.idle("a") and not idle.idle("b")
    assert idle.due(["a", "b"]) == ["a"]
    now[0] += 10_000_000
    assert idle.due(["a", "b"]) == []  # asked for "a" already, within one timeout
    now[0] = 180_000_000
    assert idle.due(["a", "b"]) == ["b"]
    idle.seen("a")  # data came after all
    assert not idle.idle("a")
    # a session not seen since this worker took over counts from the first question
    assert idle.due(["c"]) == [] and not idle.idle("c")
    now[0] += 120_000_000
    assert idle.due(["c"]) == ["c"]
    idle.forget("c")
    idle.clear()
    assert idle.last_seen_us == {} and idle.requested_us == {}
    with pytest.raises(ValueError, match="positive"):
        IdleSessions(timeout_s=0, clock=lambda: 0)


@pytest.mark.realdata
@pytest.mark.parametrize("how", ["last chunk", "idle flush"])
def test_a_fall_just_before_the_data_ends_still_raises_its_alert(how):
    """A real SisFall fall whose device stops 1.5 s after the impact, before the fall
    detector's 2 s look-ahead: the end flag and the idle flush judge it on the data there is
    (``FallMonitor.flush``); before, the fall was dropped."""
    from pathlib import Path

    from justwalk.evaluation import sisfall

    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "sisfall"
    if not (root / "manifest.csv").is_file():
        pytest.skip("no SisFall data")
    entry = next(e for e in sisfall.read_manifest(root) if e.file.startswith("SA01/F01_"))
    samples = sisfall.load(root, entry, 100.0).samples
    whole = SessionProcessor(window_s=5.0, clock=lambda: 0)
    proc_alerts = SessionProcessor(window_s=5.0, clock=lambda: 0)
    whole_alerts = records(*run_all(whole, sim_chunks(samples, patient="pt-077"))[:2])["alerts"]
    assert [a.type for a in whole_alerts] == ["fall"]
    cut = round((whole_alerts[0].evidence["peak_us"] - T0) / 1e4) + 150
    chunks = list(sim_chunks(samples[:cut], patient="pt-077"))
    if how == "last chunk":
        chunks[-1] = decode_chunk(encode_chunk(dataclasses.replace(chunks[-1],
                                                                   flags=ChunkFlags.LAST)))
    results, risks, state, risk = run_all(proc_alerts, chunks)
    if how == "idle flush":
        assert records(results, risks)["alerts"] == []  # the stream alone did not decide
        flushed = proc_alerts.flush(state)
        results.append(flushed)
        risks.append(proc_alerts.update_risk_on_flush(risk, state, flushed))
    out = records(results, risks)
    assert [a.type for a in out["alerts"]] == ["fall"]
    alert = out["alerts"][0]
    assert alert.alert_id == whole_alerts[0].alert_id  # the same fall as with all the data
    assert (alert.patient_id, alert.session_id, alert.clinic_id) == ("pt-077", "sess-1",
                                                                    "clinic-a")
    assert [e.event_type for e in out["events"] if e.event_type == "fall"] == ["fall"]
    # and the fall reaches the patient's fall-risk score
    assert out["scores"] and out["scores"][-1].n_falls == 1
