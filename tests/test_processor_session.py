"""The processor's chunk -> records path, without a broker."""

from __future__ import annotations

import numpy as np

from justwalk.records import GaitWindowRecord, StepRecord, decode_record
from justwalk.schema import record_to_line
from justwalk.wire import ImuChunk, Placement, decode_chunk, encode_chunk
from stream_processors.session import SessionProcessor, state_key

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
        state = proc.load_state(proc.dump_state(state))
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
