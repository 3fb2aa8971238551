"""Regression of fall and near-fall detection on the real SisFall recordings (and Mobilise-D
walking) in ../shared/data. The floors are the figures achieved when this was written
(``justwalk evaluate falls`` and ``justwalk evaluate falls --loso``); a change that loses
accuracy fails here."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from justwalk.evaluation import falls as ev
from justwalk.falls import FallDetector, NearFallDetector
from tests.test_falls_detectors import T0_US, feed

SISFALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "sisfall"
MOBILISED = SISFALL.parent / "mobilised"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not (SISFALL / "manifest.csv").is_file(), reason="no SisFall data"),
]


@pytest.fixture(scope="module")
def recordings():
    near, fall = NearFallDetector(), FallDetector()
    recs = ev.load_sisfall(SISFALL, near, fall)
    if (MOBILISED / "data").is_dir():
        recs += ev.load_mobilised(MOBILISED, near, fall)
    return recs


@pytest.fixture(scope="module")
def shipped_outcomes(recordings):
    """``decide_all`` with the shipped detectors, computed once for the tests that read it."""
    return ev.decide_all(recordings, NearFallDetector(), FallDetector())


@pytest.fixture(scope="module")
def held_out(recordings):
    """``ev.loso`` with the shipped detectors (the tuning grid runs once for the module)."""
    return ev.loso(recordings, NearFallDetector(), FallDetector())


@pytest.fixture(scope="module")
def tuner(recordings):
    """Every grid setting's predictions on every recording (``ev.Tuner``), computed once."""
    return ev.Tuner(recordings, NearFallDetector(), FallDetector())


def test_loader_converts_units_and_axes():
    from justwalk.evaluation import sisfall

    entry = next(e for e in sisfall.read_manifest(SISFALL) if e.file == "SA01/D18_SA01_R01.txt")
    rec = sisfall.load(SISFALL, entry, 100.0)
    assert rec.samples.shape == (1200, 6)
    mean = rec.samples[:100, :3].mean(axis=0)
    assert 9.0 < mean[0] < 10.6  # x up reads +1 g when upright (README: Y = -1.02 g)
    assert abs(mean[1]) < 1.0
    # lying on the back after a backward fall: z (forward) points up
    fall = next(e for e in sisfall.read_manifest(SISFALL) if e.file == "SA06/F02_SA06_R01.txt")
    lying = sisfall.load(SISFALL, fall, 100.0).samples[-200:, :3].mean(axis=0)
    assert lying[2] > 9.0 and abs(lying[0]) < 2.0


def _meets_issue_targets(m):
    assert m["near_fall_sensitivity"] >= 0.90
    assert m["near_fall_specificity"] >= 0.95
    assert m["fall_sensitivity"] >= 0.95
    assert m["fall_specificity"] >= 0.98
    assert m["false_alarms_per_hour_walking"] <= 0.5


def test_shipped_thresholds_on_shared_subjects(shipped_outcomes):
    m = ev.metrics(shipped_outcomes)
    _meets_issue_targets(m)
    # achieved: near-fall 1.000 / 1.000; fall 0.979 / 0.989 (misses SE06 F14, which ends
    # 52 deg from vertical, short of the 60 deg lying posture of Kangas et al.; SE06 D13,
    # lying down quickly, is a fall), no false alarm in walking, latency 2.07 s
    assert m["near_fall_sensitivity"] >= 1.0
    assert m["near_fall_specificity"] >= 1.0
    assert m["fall_sensitivity"] >= 0.978
    assert m["fall_specificity"] >= 0.989
    assert m["false_alarms_walking"] == 0
    assert m["median_detection_latency_s"] <= 2.2


def test_leave_one_subject_out(recordings, held_out):
    outcomes, chosen = held_out
    m = ev.metrics(outcomes)
    _meets_issue_targets(m)
    # achieved with the window constants tuned inside the folds too (near-fall
    # peak_half_window_s, perturbation_half_s, before_s; fall tilt_before_window_s):
    # near-fall 1.000 / 1.000, fall 0.957 / 0.989 (misses SE06 F13, a slow faint from a
    # chair at 1.74 g when the SE06 fold tunes the impact to 1.8 g, and SE06 F14; SE06 D13
    # is a fall), no false alarm while walking
    assert m["near_fall_sensitivity"] >= 1.0
    assert m["near_fall_specificity"] >= 1.0
    assert m["fall_sensitivity"] >= 0.957
    assert m["fall_specificity"] >= 0.989
    assert m["false_alarms_walking"] == 0
    assert [c.group for c in chosen] == sorted({r.group for r in recordings})
    windows = ("peak_half_window_s", "perturbation_half_s", "before_s")
    assert set(windows) <= set(ev.NEAR_FALL_GRID)
    assert "tilt_before_window_s" in ev.FALL_GRID


def test_shipped_defaults_are_the_settings_most_folds_chose(held_out):
    near, fall = NearFallDetector(), FallDetector()
    _, chosen = held_out
    most_near, most_fall = ev.most_chosen(chosen)
    assert most_near == {k: getattr(near, k) for k in ev.NEAR_FALL_GRID}
    assert most_fall == {k: getattr(fall, k) for k in ev.FALL_GRID}


@pytest.mark.parametrize("subject", ["SA06", "SE06"])
def test_a_fold_is_tuned_on_the_other_subjects_only(recordings, tuner, subject):
    near, fall = NearFallDetector(), FallDetector()
    fold = next(f for f in ev.folds(recordings) if f.group == subject)
    assert all(recordings[i].group != subject for i in fold.train)
    train = [recordings[i] for i in fold.train]
    assert tuner.choose(fold.train) == ev.tune(train, near, fall)


def test_evaluation_equals_streaming_events(recordings, shipped_outcomes):
    """The evaluation's offline decisions are the events ``FallMonitor`` reported chunk by
    chunk with the gait pipeline's steps, on every recording."""
    assert ev.streaming_mismatches(shipped_outcomes) == []
    assert sum(len(r.streamed) for r in recordings) > 50


def test_command_prints_exactly_the_issue_keys(capsys):
    assert ev.main(["--json", "--data", str(SISFALL)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == list(ev.JSON_KEYS)
    assert out["fall_sensitivity"] >= 0.978


def _stream(x, sizes: int | None = None, *, flush: bool = False,  # type: ignore[no-untyped-def]
            roundtrip: bool = False) -> list:  # type: ignore[type-arg]
    """``FallMonitor`` events of a recording on the processor's path, in chunks of ``sizes``
    samples (default: all at once)."""
    from justwalk.falls import FallMonitor

    return feed(FallMonitor(), x, None if sizes is None else [sizes], flush=flush,
                roundtrip=roundtrip)[0]


@functools.cache
def _sisfall_samples() -> tuple[tuple[str, str | None, np.ndarray], ...]:
    """Every SisFall recording as (file, event class, samples), loaded once."""
    from justwalk.evaluation import sisfall

    return tuple((e.file, ev._CATEGORY_CLASS.get(e.category),
                  sisfall.load(SISFALL, e, 100.0).samples)
                 for e in sisfall.read_manifest(SISFALL))


@functools.cache
def _in_processor_chunks(file: str) -> list:  # type: ignore[type-arg]
    """The events of recording ``file`` in 0.5 s chunks (the processor's), computed once for
    the tests that compare with them."""
    (x,) = [x for f, _, x in _sisfall_samples() if f == file]
    return _stream(x, 50)


@pytest.mark.parametrize(("sizes", "roundtrip"), [(None, False), (100, False), (37, True)])
def test_chunking_does_not_change_the_events_of_real_recordings(sizes, roundtrip) -> None:
    """On every SisFall recording the events with the gait pipeline's steps are those of
    0.5 s chunks (the processor's), whatever the chunk size and with the state packed and
    unpacked between chunks: every step a near-fall verdict reads is released before it."""
    n_events = 0
    for file, _, x in _sisfall_samples():
        got = _stream(x, sizes, roundtrip=roundtrip)
        assert got == _in_processor_chunks(file), file
        n_events += len(got)
    assert n_events > 50


def _sisfall(category: str) -> list:  # type: ignore[type-arg]
    return [x for _, c, x in _sisfall_samples() if c == category]


def test_a_fall_is_not_lost_when_the_data_ends_before_its_look_ahead() -> None:
    """Every real fall cut 1.5 s after its impact (the device stopped): ``flush`` reports it.

    Measured when written: cut at +1.2 s 39 of 46 falls, +1.5 s 42, +1.9 s 45, at +1.0 s
    none (less than ``min_flush_after_s``); before ``flush`` existed, none of them. Cut
    1.2-1.9 s after each of the 886 impacts >= 1.6 g of the activities of daily living:
    1 false fall.
    """
    from justwalk.falls import EventType, FallMonitor

    mon = FallMonitor()
    found, n = 0, 0
    for file, category, x in _sisfall_samples():
        if category != ev.FALL:
            continue
        full = [e for e in _in_processor_chunks(file) if e.type == EventType.FALL]
        if not full:
            continue
        n += 1
        cut = round((full[0].peak_us - T0_US) / 1e4) + 150
        before, st = feed(mon, x[:cut], [50], only=EventType.FALL)
        assert before == []  # the look-ahead (2 s) is not complete
        flushed = mon.flush(st)
        if flushed:
            found += 1
            (e,) = flushed
            assert e.type == EventType.FALL and e.peak_us == full[0].peak_us
            assert e.detected_us >= e.peak_us + 1_400_000  # decided where the data ended
            assert mon.flush(st) == []  # judged once
        # less than min_flush_after_s after the impact: nothing to judge yet
        _, st = feed(mon, x[:cut - 80], [50])
        assert mon.flush(st) == []
    assert n >= 45
    assert found >= 41


def test_flush_of_walking_or_of_nothing_gives_nothing() -> None:
    from justwalk.falls import FallMonitor

    mon = FallMonitor()
    assert mon.flush(mon.initial_state()) == []
    for x in _sisfall(ev.WALKING)[:10]:
        _, st = feed(mon, x, [50])
        assert mon.flush(st) == []
