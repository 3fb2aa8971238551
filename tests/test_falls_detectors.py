"""Analytic tests of the fall core: synthetic falls, stumbles and walking; chunking; state.

Steps come from the gait pipeline, as in the stream processor: per chunk,
``GaitPipeline.process`` first, then ``FallMonitor.process`` with the steps it released."""

from __future__ import annotations

import json

import msgpack
import numpy as np
import pytest

from justwalk.falls import (
    GRAVITY_MPS2,
    EventType,
    FallDetector,
    FallEvent,
    FallMonitor,
    FallMonitorState,
    NearFallDetector,
)
from justwalk.gait.pipeline import GaitPipeline

FS = 100.0
T0_US = 1_700_000_000_000_000
G = GRAVITY_MPS2


def walking(duration_s: float, *, cadence_spm: float = 110.0, seed: int = 0) -> np.ndarray:
    """Upright walking: one vertical oscillation (+-0.3 g) per step, trunk rotation at the
    stride frequency (+-0.6 rad/s), a little noise. Columns: acc x/y/z, gyr x/y/z."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(duration_s * FS)) / FS
    f_step = cadence_spm / 60.0
    x = np.zeros((t.size, 6))
    x[:, 0] = G + 0.3 * G * np.sin(2 * np.pi * f_step * t)
    x[:, 2] = 0.1 * G * np.sin(2 * np.pi * f_step * t + 1.0)
    x[:, 3] = 0.6 * np.sin(np.pi * f_step * t)
    x[:, 4] = 0.3 * np.sin(2 * np.pi * f_step * t)
    x[:, :3] += rng.normal(0.0, 0.05, (t.size, 3))
    x[:, 3:] += rng.normal(0.0, 0.01, (t.size, 3))
    return x


def still(duration_s: float, *, tilt_deg: float = 0.0, seed: int = 1) -> np.ndarray:
    """Motionless trunk tilted forward by ``tilt_deg`` (90 = lying on the back)."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * FS)
    x = np.zeros((n, 6))
    a = np.radians(tilt_deg)
    x[:, 0] = G * np.cos(a)
    x[:, 2] = G * np.sin(a)
    x[:, :3] += rng.normal(0.0, 0.02, (n, 3))
    x[:, 3:] += rng.normal(0.0, 0.005, (n, 3))
    return x


def pulse(duration_s: float, acc_peak_mps2: float, gyr_peak_radps: float,
          *, tilt_deg: float = 0.0) -> np.ndarray:
    """A half-sine acceleration pulse along the trunk and an angular-rate burst."""
    n = round(duration_s * FS)
    s = np.sin(np.pi * (np.arange(n) + 0.5) / n)
    x = still(duration_s, tilt_deg=tilt_deg, seed=2)
    x[:, 0] += (acc_peak_mps2 - G) * s
    x[:, 4] += gyr_peak_radps * s
    return x


def fall_recording() -> tuple[np.ndarray, float]:
    """6 s walking, a 0.5 s fall forward with a 3 g impact, then 6 s lying still.
    Returns the samples and the impact time (s)."""
    walk = walking(6.0)
    n_fall = 50
    tilt = np.linspace(0.0, 90.0, n_fall)
    fall = np.zeros((n_fall, 6))
    fall[:, 0] = 0.6 * G * np.cos(np.radians(tilt))  # partly free falling
    fall[:, 2] = 0.6 * G * np.sin(np.radians(tilt))
    fall[:, 4] = np.radians(180.0)
    impact = still(0.1, tilt_deg=90.0, seed=5)
    s = np.sin(np.pi * (np.arange(10) + 0.5) / 10)
    impact[:, 2] += 2.0 * G * s  # the floor pushes on the back: along z, now vertical
    impact[:, 4] += 2.0 * s
    lying = still(6.0, tilt_deg=90.0)
    x = np.concatenate([walk, fall, impact, lying])
    return x, 6.0 + n_fall / FS + 0.05


def stumble_recording() -> tuple[np.ndarray, float]:
    """6 s walking, a 0.2 s perturbation (4.5 g, 4 rad/s), then 6 s walking again."""
    before = walking(6.0, seed=3)
    hit = pulse(0.2, 4.5 * G, 4.0)
    after = walking(6.0, seed=4)
    return np.concatenate([before, hit, after]), 6.1


def feed(monitor: FallMonitor, x: np.ndarray, sizes: list[int] | None = None, *,
         roundtrip: bool = False, fs: float = FS, only: EventType | None = None,
         flush: bool = False):
    """The processor's path: per chunk the gait pipeline, then the monitor with its steps.

    ``sizes`` cycle as chunk lengths (default: the whole recording at once); ``only`` keeps
    one event type; ``roundtrip`` serialises the state between chunks."""
    pipeline = GaitPipeline(sensor_height_m=1.0)
    gait = pipeline.initial_state(t0_us=T0_US, sample_rate_hz=fs)
    state = monitor.initial_state()
    events: list[FallEvent] = []
    i = 0
    k = 0
    while i < x.shape[0]:
        n = x.shape[0] - i if sizes is None else sizes[k % len(sizes)]
        t0 = T0_US + round(i * 1e6 / fs)
        chunk = x[i : i + n]
        steps = [s.t_us for s in pipeline.process(gait, chunk[:, :3], chunk[:, 3:]).steps]
        events += monitor.process(state, chunk, t0, fs, steps)
        if roundtrip:
            state = FallMonitorState.unpack(msgpack.unpackb(msgpack.packb(state.pack())))
        i += n
        k += 1
    if flush:
        events += monitor.flush(state)
    return [e for e in events if only is None or e.type is only], state


def steps_of(x: np.ndarray, fs: float = FS) -> list[int]:
    """Device times of the steps the gait pipeline releases over a whole recording."""
    pipeline = GaitPipeline(sensor_height_m=1.0)
    gait = pipeline.initial_state(t0_us=T0_US, sample_rate_hz=fs)
    return [s.t_us for s in pipeline.process(gait, x[:, :3], x[:, 3:]).steps]


def scan(det, x: np.ndarray):  # type: ignore[no-untyped-def]
    """Every judged candidate of a whole recording, with the gait pipeline's steps."""
    return det.scan(x, T0_US, FS, steps_of(x))


FALL = EventType.FALL
NEAR = EventType.NEAR_FALL


def test_impact_then_lying_still_is_one_fall():
    x, t_impact = fall_recording()
    events, _ = feed(FallMonitor(), x, only=FALL)
    assert len(events) == 1
    e = events[0]
    assert e.type is EventType.FALL
    assert abs((e.peak_us - T0_US) / 1e6 - t_impact) < 0.1
    assert e.peak_acc_mps2 == pytest.approx(3.0 * G, rel=0.05)
    assert e.trunk_tilt_after_deg == pytest.approx(90.0, abs=3.0)
    assert e.trunk_tilt_before_deg < 10.0
    assert e.start_us <= e.peak_us < e.end_us <= e.detected_us
    # bounded look-ahead: final 2 s (plus one block) after the impact
    assert (e.detected_us - e.peak_us) / 1e6 <= 2.2
    assert 0.5 <= e.confidence < 1.0
    assert FallEvent.from_dict(json.loads(json.dumps(e.to_dict()))) == e


def test_fall_is_not_a_near_fall():
    x, _ = fall_recording()
    events, _ = feed(FallMonitor(), x, only=NEAR)
    assert events == []


def test_lying_down_without_impact_is_not_a_fall():
    x = np.concatenate([still(4.0), still(6.0, tilt_deg=90.0)])
    events, _ = feed(FallMonitor(), x)
    assert events == []


def test_impact_that_ends_upright_is_not_a_fall():
    x = np.concatenate([still(4.0), pulse(0.1, 4.0 * G, 3.0), still(5.0)])
    events, _ = feed(FallMonitor(), x, only=FALL)
    assert events == []


def test_stumble_during_walking_with_recovery_is_a_near_fall():
    x, t_peak = stumble_recording()
    events, _ = feed(FallMonitor(), x)
    assert [e.type for e in events] == [EventType.NEAR_FALL]
    e = events[0]
    assert abs((e.peak_us - T0_US) / 1e6 - t_peak) < 0.15
    assert e.peak_acc_mps2 == pytest.approx(4.5 * G, rel=0.05)
    assert e.peak_gyr_radps == pytest.approx(4.0, rel=0.1)
    assert (e.detected_us - e.peak_us) / 1e6 <= 3.7


def test_same_perturbation_from_standing_is_not_a_near_fall():
    # a jump-like landing with no walking before it
    x = np.concatenate([still(6.0), pulse(0.2, 4.5 * G, 4.0), still(6.0)])
    events, _ = feed(FallMonitor(), x, only=NEAR)
    assert events == []


@pytest.mark.parametrize("cadence", [80.0, 110.0, 150.0])
def test_walking_alone_gives_nothing(cadence):
    events, _ = feed(FallMonitor(), walking(120.0, cadence_spm=cadence, seed=int(cadence)))
    assert events == []


def test_simulated_walking_gives_nothing():
    gm = pytest.importorskip("justwalk.simulator.gait_model")
    rec = gm.synthesize(gm.GaitProfile(), 300.0, FS, np.random.default_rng(7))
    events, _ = feed(FallMonitor(), np.asarray(rec.samples, dtype=np.float64))
    assert events == []


def _both() -> np.ndarray:
    s, _ = stumble_recording()
    f, _ = fall_recording()
    return np.concatenate([s, walking(3.0, seed=9), f])


@pytest.mark.parametrize("sizes", [[1], [7], [10], [33, 1, 250], [1024], [3, 5, 8, 13, 21]])
def test_chunking_does_not_change_events(sizes):
    x = _both()
    whole, _ = feed(FallMonitor(), x)
    assert [e.type for e in whole] == [EventType.NEAR_FALL, EventType.FALL]
    chunked, _ = feed(FallMonitor(), x, sizes)
    assert chunked == whole


def test_state_round_trip_is_exact_and_resumes():
    x = _both()
    whole, end_state = feed(FallMonitor(), x)
    resumed, resumed_state = feed(FallMonitor(), x, [37, 120, 5], roundtrip=True)
    assert resumed == whole
    packed = msgpack.packb(end_state.pack())
    assert msgpack.packb(FallMonitorState.unpack(msgpack.unpackb(packed)).pack()) == packed
    assert msgpack.packb(resumed_state.pack()) == packed


def test_packed_state_is_small_mid_walk():
    _, state = feed(FallMonitor(), walking(300.0), [50])
    assert state.front.n_steps >= 10  # mid-walk: a full ring and recent steps
    size = len(msgpack.packb(state.pack()))
    assert 2_000 < size <= 5_000


def test_a_state_of_another_format_is_refused_clearly():
    from justwalk.state_format import StateFormatError

    _, state = feed(FallMonitor(), walking(10.0), [50])
    packed = state.pack()
    with pytest.raises(StateFormatError, match="version 99"):
        FallMonitorState.unpack([99, *packed[1:]])
    with pytest.raises(StateFormatError):
        FallMonitorState.unpack(packed[:-1])
    with pytest.raises(StateFormatError):
        FallMonitorState.unpack([*packed[:8], packed[8][:-4], *packed[9:]])


def test_gap_restarts_without_false_events():
    mon = FallMonitor()
    state = mon.initial_state()
    x = walking(10.0)
    steps = steps_of(x)
    assert len(steps) > 10
    assert mon.process(state, x, T0_US, FS, steps) == []
    later = 60_000_000  # 50 s after the end: a new segment, and a new gait segment
    assert mon.process(state, x, T0_US + later, FS, [t + later for t in steps]) == []
    assert state.front.segment == 2


def test_rejects_bad_input():
    mon = FallMonitor()
    with pytest.raises(ValueError, match="shape"):
        mon.process(mon.initial_state(), np.zeros((10, 3)), T0_US, FS, [])
    with pytest.raises(ValueError, match="finite"):
        mon.process(mon.initial_state(), np.full((10, 6), np.nan), T0_US, FS, [])
    with pytest.raises(ValueError, match="increasing"):
        mon.process(mon.initial_state(), still(1.0), T0_US, FS, [T0_US + 20, T0_US + 10])


def test_works_at_other_sample_rates():
    x, t_impact = fall_recording()
    from scipy import signal

    x200 = signal.resample_poly(x, 2, 1, axis=0)
    events, _ = feed(FallMonitor(), x200, [100], fs=200.0)
    assert len(events) == 1 and events[0].type is EventType.FALL
    assert abs((events[0].peak_us - T0_US) / 1e6 - t_impact) < 0.1


@pytest.mark.parametrize("det", [NearFallDetector(), FallDetector()])
def test_decision_params_do_not_change_features(det):
    """The evaluation re-decides stored candidates for any value of ``decision_params``.

    ``candidate_params`` also select the candidates: smaller values find a superset."""
    x = np.concatenate([_both(), _double_peak_stumble()])
    params = {k: v for k, v in vars(det).items() if not k.startswith("_")}
    base = scan(det, x)
    assert base
    for name in det.decision_params:
        other = type(det)(**{**params, name: params[name] * 0.5})
        cands = scan(other, x)
        gate = max(det.gate_acc_mps2, other.gate_acc_mps2)
        mine = {c.peak: c.features for c in base if c.peak.acc_mps2 >= gate}
        theirs = {c.peak: c.features for c in cands if c.peak.acc_mps2 >= gate}
        if name in det.candidate_params:
            assert set(mine) <= set(theirs), name
            assert all(theirs[k] == v for k, v in mine.items()), name
        else:
            assert mine == theirs, name
    assert "peak_half_window_s" in NearFallDetector.candidate_params


def _double_peak_stumble() -> np.ndarray:
    """A stumble whose 3.5 g trip is followed 0.6 s later by a 4.5 g recovery step."""
    return np.concatenate([walking(6.0, seed=11), pulse(0.2, 3.5 * G, 3.0),
                           walking(0.4, seed=12), pulse(0.2, 4.5 * G, 4.0),
                           walking(6.0, seed=13)])


@pytest.mark.parametrize("half_s", [0.3, 0.5, 0.7, 1.0])
def test_a_short_half_window_scan_redecided_for_a_longer_one_is_the_longer_one(half_s):
    """Candidates scanned with a short ``peak_half_window_s`` and decided for a longer one
    (their ``peak_dominance_blocks``) are exactly those the longer one scans itself."""
    x = np.concatenate([_both(), _double_peak_stumble()])
    short = NearFallDetector(peak_half_window_s=0.3, gate_acc_mps2=1.1 * G)
    det = NearFallDetector(peak_half_window_s=half_s, gate_acc_mps2=1.1 * G)
    own = scan(det, x)
    redecided = [c for c in scan(short, x)
                 if c.features.peak_dominance_blocks >= round(half_s / 0.1)]
    assert [(c.peak, c.features) for c in redecided] == [(c.peak, c.features) for c in own]
    assert ([c.peak for c in own if det.decide(c.features)]
            == [c.peak for c in redecided if det.decide(c.features)])


def test_stumble_after_standing_still_is_not_a_near_fall():
    # 2.2 s of standing inside the 3.5 s walking window: walking has not been continuous
    x = np.concatenate([still(5.0), walking(1.8, cadence_spm=150.0, seed=5),
                        pulse(0.2, 4.5 * G, 4.0), walking(6.0, seed=4)])
    det = NearFallDetector(min_gait_acc_mps2=0.0)  # isolate the continuity criterion
    (c,) = [c for c in scan(det, x)
            if c.features.peak_acc_mps2 > 4.0 * G]
    assert c.features.max_step_gap_s > 2.0
    assert not det.decide(c.features)
    assert NearFallDetector(min_gait_acc_mps2=0.0, max_step_gap_s=10.0).decide(c.features)


def test_stumble_after_a_trunk_flexion_is_not_a_near_fall():
    # 1.5 s of walking bent 40 deg forward (a transfer, not steady gait) in the window
    a = np.radians(40.0)
    bent = walking(1.5, seed=6)
    bent[:, [0, 2]] = np.stack([bent[:, 0] * np.cos(a) - bent[:, 2] * np.sin(a),
                                bent[:, 0] * np.sin(a) + bent[:, 2] * np.cos(a)], axis=1)
    x = np.concatenate([walking(6.0, seed=3), bent, walking(2.0, seed=7),
                        pulse(0.2, 4.5 * G, 4.0), walking(6.0, seed=4)])
    assert feed(FallMonitor(), x, only=NEAR)[0] == []
    # The gait pass also drops most steps of the bent walk (its transfer gate), which makes
    # the rhythm irregular; a lenient rhythm threshold isolates the posture criterion.
    det = NearFallDetector(max_step_interval_cv=1.0)
    (c,) = [c for c in scan(det, x) if c.features.peak_acc_mps2 > 4.0 * G]
    assert c.features.tilt_range_before_deg > 30.0
    assert not det.decide(c.features)
    assert NearFallDetector(max_step_interval_cv=1.0, max_tilt_range_deg=90.0).decide(
        c.features)


def _bend_then_fall(bend: bool) -> np.ndarray:
    f, _ = fall_recording()
    return np.concatenate([still(4.0), still(1.0, tilt_deg=90.0 if bend else 0.0, seed=3),
                           still(1.5), f[550:]])


def test_lying_posture_held_shortly_before_the_impact_is_no_fall():
    # a deep bend (90 deg) 2-3 s before an impact that ends at 90 deg: not a new posture
    assert [e.type for e in feed(FallMonitor(), _bend_then_fall(False), only=FALL)[0]] == [
        EventType.FALL]
    assert feed(FallMonitor(), _bend_then_fall(True), only=FALL)[0] == []


def test_fall_at_the_start_of_a_stream_is_detected():
    f, _ = fall_recording()
    events, _ = feed(FallMonitor(), f[590:], only=FALL)  # nothing known before the impact
    assert [e.type for e in events] == [EventType.FALL]


@pytest.mark.parametrize("det", [NearFallDetector(), FallDetector()])
def test_accepts_on_arrays_equals_decide_per_candidate(det):
    import dataclasses

    x = np.concatenate([_both(), walking(20.0, seed=4)])
    low = type(det)(**{**{k: v for k, v in vars(det).items() if not k.startswith("_")},
                       **({"gate_acc_mps2": 1.1 * G} if isinstance(det, NearFallDetector)
                          else {"min_impact_acc_mps2": 1.1 * G})})
    feats = [c.features for c in scan(low, x)]
    assert len(feats) > 3
    cls = type(feats[0])
    cols = cls(**{f.name: np.array([getattr(v, f.name) for v in feats], dtype=float)
                  for f in dataclasses.fields(cls)})
    decided = [det.decide(f) for f in feats]
    assert True in decided and False in decided
    assert list(np.asarray(det.accepts(cols))) == decided


def test_a_state_saved_with_another_ring_size_resumes_exactly():
    """A release that sizes the ring differently continues an older state: the ring keeps
    the newest rows (``BlockFrontEnd.fit``), and the events are unchanged."""
    from justwalk.falls import BlockFrontEnd

    x = np.concatenate([_both(), _double_peak_stumble()])
    whole, _ = feed(FallMonitor(), x)
    big = FallMonitor()
    big.front = BlockFrontEnd(history_s=big.front.history_s, piece_s=3.0)
    for first, then in ((big, FallMonitor()), (FallMonitor(), big)):
        pipeline = GaitPipeline(sensor_height_m=1.0)
        gait = pipeline.initial_state(t0_us=T0_US, sample_rate_hz=FS)
        state = first.initial_state()
        events: list[FallEvent] = []
        for i in range(0, x.shape[0], 50):
            mon = first if i < 1500 else then
            if i == 1500:
                state = FallMonitorState.unpack(msgpack.unpackb(msgpack.packb(state.pack())))
            c = x[i : i + 50]
            steps = [s.t_us for s in pipeline.process(gait, c[:, :3], c[:, 3:]).steps]
            events += mon.process(state, c, T0_US + i * 10_000, FS, steps)
        assert state.front.rows.shape[0] == then.front.capacity(FS)
        assert events == whole
