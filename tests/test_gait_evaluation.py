"""The ``justwalk evaluate gait`` harness on data it has not seen (issue #3: ``--data DIR``).

The command will run on other Mobilise-D folders, possibly the full TVS: one unreadable
recording must not stop it, and the leave-one-participant-out (LOPO) grid must scale with
the data, not with data x participants. The real recordings are read in place (symlinked
into a temporary folder, never copied).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import justwalk.evaluation.gait as ev
from justwalk.evaluation.gait_reference import Counts, _reference, load_trials

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mobilised"
LAB = DATA / "data" / "lab"

needs_data = pytest.mark.skipif(not LAB.exists(), reason=f"{LAB} not present")


def _wb(**kw: object) -> SimpleNamespace:
    base: dict[str, object] = {
        "Start": 1.0, "End": 3.0, "Cadence": 100.0, "WalkingSpeed": 1.0,
        "AverageStrideLength": 1.2, "Stride_Duration": np.array([1.2, 1.2]),
        "InitialContact_Event": np.array([1.0, 1.6, 2.2, np.nan, 3.0]),
        "InitialContact_LeftRight": np.array(["Left", "Right", "Left", "Right", "Left"],
                                             dtype=object)}
    base.update(kw)
    return SimpleNamespace(**base)


def _trial(*bouts: SimpleNamespace) -> SimpleNamespace:
    return SimpleNamespace(Standards=SimpleNamespace(INDIP=SimpleNamespace(
        MicroWB=np.array(bouts, dtype=object) if len(bouts) > 1 else bouts[0])))


def test_reference_drops_nan_contacts_and_keeps_contacts_without_sides() -> None:
    parsed = _reference(_trial(_wb()), 100.0)
    assert parsed is not None
    bouts, ics, sides = parsed
    assert [b.start for b in bouts] == [99]  # mobgap's round(t * fs) - 1
    assert ics == [99.0, 159.0, 219.0, 299.0] and sides == ["left", "right", "left", "left"]
    # a side list that does not match the contacts: contacts kept, sides unknown
    _, ics, sides = _reference(_trial(_wb(InitialContact_LeftRight="Left")), 100.0) or (0, 0, 0)
    assert ics == [99.0, 159.0, 219.0, 299.0] and set(sides) == {"unknown"}
    # no MicroWB at all, or an empty one: nothing to score
    assert _reference(SimpleNamespace(Standards=SimpleNamespace(INDIP=SimpleNamespace(
        MicroWB=np.array([])))), 100.0) is None


def test_reference_bout_without_start_is_an_error() -> None:
    with pytest.raises(ValueError, match="start and end"):
        _reference(_trial(_wb(), _wb(Start=math.nan)), 100.0)
    with pytest.raises(ValueError, match="start and end"):
        _reference(_trial(_wb(Start=5.0, End=4.0)), 100.0)


@pytest.mark.realdata
@needs_data
def test_unreadable_recordings_are_skipped_with_a_reason(tmp_path: Path) -> None:
    good = tmp_path / "data" / "lab" / "MS" / "001"
    good.mkdir(parents=True)
    for name in ("data.mat", "infoForAlgo.mat"):
        (good / name).symlink_to(LAB / "MS" / "001" / name)
    corrupt = tmp_path / "data" / "lab" / "HA" / "009"
    corrupt.mkdir(parents=True)
    (corrupt / "data.mat").write_bytes(b"not a mat file")
    no_info = tmp_path / "data" / "lab" / "HA" / "008"
    no_info.mkdir(parents=True)
    (no_info / "data.mat").symlink_to(LAB / "HA" / "001" / "data.mat")
    skipped: list[str] = []
    trials = load_trials(tmp_path, skipped)
    assert {t.participant for t in trials} == {"MS/001"} and len(trials) == 3
    assert len(skipped) == 2
    assert any("HA/009" in s and "not a Mobilise-D data.mat" in s for s in skipped)
    assert any("HA/008" in s and "participant info" in s for s in skipped)


@pytest.mark.realdata
@needs_data
def test_a_recording_mobgap_fails_on_is_left_out_of_both(
        monkeypatch: pytest.MonkeyPatch) -> None:
    all_trials = load_trials(DATA)
    victim = next(t.name for t in all_trials if t.test == "Test5")

    def runner(trial):  # type: ignore[no-untyped-def]
        if trial.name == victim:
            raise RuntimeError("no gait sequence")
        return ev.run_ours(trial)  # stands in for mobgap's detection of the others

    monkeypatch.setattr(ev, "mobgap_runner", lambda _d: (runner, "stand-in"))
    res = ev.evaluate(DATA, with_lopo=False)
    assert res["n_trials"] == len(all_trials) - 1
    assert victim not in {name for name, _, _ in res["trials"]}
    assert res["skipped"] == [f"{victim}: mobgap failed (RuntimeError: no gait sequence)"]
    assert res["mobgap"]["ic_f1"] == pytest.approx(res["ours"]["ic_f1"])


def _brute_force_lopo(trials: list, combos: list[dict[str, float]]):  # type: ignore[no-untyped-def]
    """The definition: for each held-out participant, score every set on the others."""
    dets = [[ev.run_ours(tr, ev.make_pipeline(tr.sensor_height_m, c)) for tr in trials]
            for c in combos]
    held, chosen = Counts(), []
    for p in sorted({tr.participant for tr in trials}):
        scores = []
        for ci in range(len(combos)):
            c = Counts()
            for tr, det in zip(trials, dets[ci], strict=True):
                if tr.participant != p:
                    c.add(tr, det)
            scores.append(ev.selection_score(c.summary()))
        best = int(np.argmax(scores))
        for tr, det in zip(trials, dets[best], strict=True):
            if tr.participant == p:
                held.add(tr, det)
        chosen.append((p, combos[best]))
    return held.summary(), chosen


@pytest.mark.realdata
@needs_data
def test_lopo_by_subtraction_and_in_processes_equals_the_definition(
        monkeypatch: pytest.MonkeyPatch) -> None:
    grid = {"icd.abs_threshold_mps2": (0.2, 0.4), "bouts.max_hold_s": (1.0, 1.8),
            "spatial.turn_shortening": (2.0, 3.0)}
    monkeypatch.setattr(ev, "TUNING_GRID", grid)
    trials = load_trials(DATA)
    combos = [dict(zip(grid, v, strict=True)) for v in itertools.product(*grid.values())]
    want_summary, want_chosen = _brute_force_lopo(trials, combos)
    for jobs in (1, 2):
        summary, chosen = ev.lopo(trials, jobs)
        assert chosen == want_chosen
        for key, want in want_summary.items():
            if key != "samples_per_s":
                assert summary[key] == pytest.approx(want, nan_ok=True), key
    # not decided by the tie rule alone: no fold chose the first set
    assert all(c != combos[0] for _, c in want_chosen)


def test_jobs_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ev.main(["--jobs", "0", "--no-mobgap"])
    assert exc.value.code == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


@pytest.mark.realdata
@needs_data
def test_json_has_the_issue_keys_and_the_skipped_list(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert ev.main(["--json", "--no-mobgap", "--no-lopo", "--data", str(DATA)]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("ic_f1", "ic_timing_error_s", "bout_f1", "cadence_mae_spm", "speed_mae_mps",
                "stride_length_mae_m", "stride_time_cv_mae_pp", "samples_per_s"):
        assert set(out[key]) == {"ours", "mobgap"} and out[key]["mobgap"] is None
    assert out["ic_f1"]["ours"] > 0.7 and out["n_trials"] == 7 and out["skipped"] == []
    # diagnostic: false ICs that fill contacts the reference missed (still scored false)
    assert 0 < out["ic_fp_in_ref_gaps"]["ours"] < 58
    # the gait_window cadence the processor publishes, scored on 5 s windows
    assert out["window_s"] == 5.0 and out["windows_scored"]["ours"] >= 30
    assert 0 < out["window_cadence_mae_spm"]["ours"] < 10


def _ref_trial(ics: list[int], bouts: list[tuple[int, int]], n: int = 3000) -> object:
    from justwalk.evaluation.gait_reference import Bout, Trial

    return Trial("XX/001", "Test11", "Trial1", 100.0, 0, np.zeros((n, 6), np.float32), 1.0,
                 tuple(Bout(a, b) for a, b in bouts), np.asarray(ics, np.int64),
                 ("left", "right") * (len(ics) // 2) + ("left",) * (len(ics) % 2))


def _window(start_us: int, cadence: float, walking: bool = True, window_s: float = 5.0):  # type: ignore[no-untyped-def]
    from justwalk.gait.pipeline import GaitParameters, WindowResult

    nan = math.nan
    return WindowResult(start_us, window_s, walking,
                        GaitParameters(5, cadence, nan, nan, nan, nan, nan, nan, nan, nan), 0)


def test_window_reference_cadence_by_hand() -> None:
    from justwalk.evaluation.gait_reference import window_cadence_errors

    # steps every 0.5 s from 1 s to 10 s: 120 steps/min in [5 s, 10 s), the two contacts
    # before 5 s included; a 4 s pause in the second bout leaves strides of 4.5 s out
    ics = [*range(100, 1001, 50), 1200, 1250, 1300, 1700, 1750, 1800]
    trial = _ref_trial(ics, [(100, 1000), (1200, 1800)])
    got = window_cadence_errors(trial, [  # type: ignore[arg-type]
        _window(5_000_000, 119.0), _window(10_000_000, 100.0), _window(15_000_000, 90.0),
        _window(20_000_000, 80.0, walking=False), _window(25_000_000, 70.0)])
    assert [g[0] for g in got] == [5_000_000, 10_000_000, 15_000_000, 25_000_000]
    assert got[0][1:] == (119.0, pytest.approx(120.0))
    # window [10 s, 15 s) holds 1000 (bout 1), 1200, 1250, 1300, after 900 and 950 (the
    # two before, in the bout of 1000): strides 900->1000 and 1200->1300 of 1 s
    # (120/min), 950->1200 and 1000->1250 of 2.5 s (48/min)
    assert got[1][2] == pytest.approx((120 + 48 + 48 + 120) / 4)
    # [15 s, 20 s): 1700, 1750, 1800 after 1250, 1300 of the same bout: strides 1250->1700
    # (4.5 s) is a pause, 1300->1750 too; 1700->1800 is 1 s
    assert got[2][2] == pytest.approx(120.0)
    assert math.isnan(got[3][2])  # no reference contact there


def test_reference_definition_reproduces_the_pipelines_own_window_cadence() -> None:
    """The pipeline's steps taken as the reference give exactly the pipeline's cadences."""
    from justwalk.evaluation.gait_reference import Bout, Trial, window_cadence_errors
    from justwalk.gait.pipeline import GaitPipeline

    fs, n = 100.0, 9000
    t = np.arange(n)
    rng = np.random.default_rng(7)
    acc = np.zeros((n, 3))
    acc[:, 0] = 9.81
    ic = 300.0
    while ic < n - 300:
        acc[:, 0] += 3.0 * np.exp(-0.5 * ((t - ic - 6) / 5.0) ** 2)
        ic += 55 + rng.integers(-12, 13)  # irregular steps: strides differ
    acc += rng.normal(scale=0.1, size=acc.shape)
    for window_s in (5.0, 10.0, 3.3):
        pipe = GaitPipeline(sensor_height_m=1.0, window_s=window_s)
        state = pipe.initial_state(t0_us=1_700_000_000_123_456, sample_rate_hz=fs)
        outs = [pipe.process(state, acc[i:i + 50], np.zeros((50, 3))) for i in range(0, n, 50)]
        outs.append(pipe.flush(state))
        steps = [s.sample for o in outs for s in o.steps]
        bouts = [(b.start_sample, b.end_sample) for o in outs for b in o.bouts]
        assert len(bouts) == 1 and len(steps) > 100
        trial = Trial("XX/001", "Test11", "Trial1", fs, state.t0_us, np.zeros((n, 6), np.float32),
                      1.0, (Bout(*bouts[0]),), np.asarray(steps, np.int64),
                      ("left",) * len(steps))
        got = window_cadence_errors(trial, [w for o in outs for w in o.windows])
        assert len(got) >= 0.8 * n / fs / window_s
        assert all(ours == ref for _, ours, ref in got), got



VOISARD = DATA.parent / "voisard_dev"
needs_both = pytest.mark.skipif(not (LAB.exists() and (VOISARD / "data" / "lab").exists()),
                                reason="the development datasets are not present")


def _voisard_subset(tmp_path: Path, ids: tuple[str, ...] = ("001", "002")) -> Path:
    """Two participants of voisard_dev, symlinked (read in place) in a folder of that name."""
    root = tmp_path / "voisard_dev"
    for pid in ids:
        d = root / "data" / "lab" / "HA" / pid
        d.mkdir(parents=True)
        for name in ("data.mat", "infoForAlgo.mat"):
            (d / name).symlink_to(VOISARD / "data" / "lab" / "HA" / pid / name)
    return root


@pytest.mark.realdata
@needs_both
def test_several_folders_are_scored_pooled_and_per_folder_with_lopo_across_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from justwalk.mobility import load_error_table

    monkeypatch.setattr(ev, "TUNING_GRID", {"icd.abs_threshold_mps2": (0.2, 0.4)})
    vois = _voisard_subset(tmp_path)
    table = tmp_path / "uncertainty.json"
    assert ev.main(["--json", "--no-mobgap", "--jobs", "1", "--data", str(DATA),
                    "--data", str(vois), "--uncertainty-out", str(table)]) == 0
    out = json.loads(capsys.readouterr().out)
    # every key of the single-folder output is still there, pooled
    for key in (*ev.JSON_KEYS, "bout_f1_iou", "ic_f1_in_ref_bouts", "window_cadence_mae_spm",
                "lopo", "lopo_chosen", "n_trials", "skipped", "window_s", "mobgap_note"):
        assert key in out, key
    by = out["by_dataset"]
    assert set(by) == {"mobilised", "voisard_dev"}
    assert by["mobilised"]["n_trials"] == 7
    assert by["mobilised"]["n_trials"] + by["voisard_dev"]["n_trials"] == out["n_trials"]
    # one LOPO over the pooled participants, ids prefixed by their folder
    assert set(out["lopo_chosen"]) == {"mobilised/HA/001", "mobilised/HA/002",
                                       "mobilised/MS/001", "voisard_dev/HA/001",
                                       "voisard_dev/HA/002"}
    assert by["voisard_dev"]["participants"] == ["voisard_dev/HA/001", "voisard_dev/HA/002"]
    assert by["voisard_dev"]["lopo"]["ic_f1"] > 0.8
    assert by["voisard_dev"]["speed_mae_mps"]["ours"] is None  # no speed reference there
    assert by["mobilised"]["speed_mae_mps"]["ours"] is not None
    # a folder's figures are that folder's alone: the same as scoring it by itself
    alone = ev.evaluate(vois, with_mobgap=False, with_lopo=False)
    for key in ("ic_f1", "bout_f1", "cadence_mae_spm", "stride_time_cv_mae_pp"):
        assert by["voisard_dev"][key]["ours"] == pytest.approx(alone["ours"][key]), key
    pooled_tp = out["ic_f1"]["ours"]
    assert min(by[d]["ic_f1"]["ours"] for d in by) <= pooled_tp <= max(
        by[d]["ic_f1"]["ours"] for d in by)
    # the uncertainty table of the held-out bouts loads
    errors = load_error_table(table)
    assert errors.bout["cadence_spm"].n_total > errors.bout["walking_speed_mps"].n_total > 0
    raw = json.loads(table.read_text())
    assert raw["bout"]["walking_speed_mps"]["by_dataset"]["voisard_dev"]["n"] == 0


def test_the_same_folder_twice_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert ev.main(["--no-mobgap", "--no-lopo", "--data", str(DATA), "--data",
                    str(DATA / ".")]) == 2
    assert "twice" in capsys.readouterr().err
