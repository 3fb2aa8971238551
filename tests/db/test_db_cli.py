"""``justwalk db ...`` against real databases: what it prints, and its errors for bad input;
and the processor's profiles read from the database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from justwalk.cli import main
from justwalk.config import Settings
from justwalk.db import database_url, open_repository
from stream_processors.patient_profiles import load_sensor_heights


@pytest.fixture
def cli(fresh_settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    if fresh_settings.database_url:
        monkeypatch.setenv("JUSTWALK_DATABASE_URL", fresh_settings.database_url)
    else:
        monkeypatch.setenv("JUSTWALK_DATABASE_FILE", str(fresh_settings.database_file))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_patients_and_prescriptions_from_the_shell(cli) -> None:
    code, _, err = cli("db", "patient", "list")
    assert code == 2 and "has no schema" in err and "run `justwalk db upgrade`" in err
    assert cli("db", "upgrade")[0] == 0
    assert cli("db", "clinic", "add", "clinic-a")[0] == 0
    assert cli("db", "clinic", "add", "clinic-b")[0] == 0
    code, out, _ = cli("db", "patient", "create", "pt-1", "--clinic", "clinic-a",
                       "--sensor-height-m", "0.97", "--reference-range",
                       "walking_speed_mps=0.9:1.3", "--alert-threshold", "fall_risk_score=40")
    assert code == 0
    patient = json.loads(out)
    assert patient["sensor_height_m"] == 0.97 and patient["alert_thresholds"] == {
        "fall_risk_score": 40.0}
    code, out, _ = cli("db", "prescription", "create", "pt-1", "--type", "guided_walk",
                       "--duration-min", "10", "--times-per-week", "5", "--cadence-band",
                       "95-110", "--metronome-spm", "100", "--start", "2027-01-04")
    rx = json.loads(out)
    assert code == 0 and rx["duration_s"] == 600.0 and rx["cadence_band_spm"] == [95.0, 110.0]
    code, out, _ = cli("db", "prescription", "update", str(rx["prescription_id"]),
                       "--no-cadence-band", "--active", "no")
    assert code == 0 and json.loads(out)["cadence_band_spm"] is None
    code, out, _ = cli("db", "prescription", "show", str(rx["prescription_id"]))
    assert code == 0 and json.loads(out)["active"] is False
    code, _, err = cli("db", "prescription", "show", str(rx["prescription_id"]),
                       "--clinic", "clinic-b")
    assert code == 2 and f"no prescription {rx['prescription_id']}" in err
    code, out, _ = cli("db", "prescription", "list", "pt-1")
    assert code == 0 and "guided_walk, comfortable, 10 min, 5x/week; 2027-01-04..open " \
        "inactive" in out
    code, out, _ = cli("db", "patient", "update", "pt-1", "--walking-aid", "rollator",
                       "--clear-sensor-height")
    assert code == 0 and json.loads(out)["sensor_height_m"] is None
    code, out, _ = cli("db", "patient", "list", "--clinic", "clinic-a")
    assert code == 0 and out.split() == ["pt-1", "clinic-a", "-", "rollator"]
    assert cli("db", "patient", "list", "--clinic", "clinic-b")[1] == ""
    assert cli("db", "session", "list")[:2] == (0, "")
    code, out, _ = cli("db", "token", "issue", "clinic-a")
    assert code == 0 and len(out.strip()) >= 40
    assert cli("db", "token", "revoke", "clinic-a")[1].startswith("revoked 1 token(s)")


BAD_INPUT = [
    (["patient", "create", "pt-2", "--clinic", "clinic-x"], "unknown clinic 'clinic-x'"),
    (["patient", "create", "pt-1", "--clinic", "clinic-a"], "patient id 'pt-1' is taken"),
    (["patient", "create", "pt-2", "--clinic", "clinic-a", "--sensor-height-m", "97"],
     "sensor_height_m: 97.0 is not a number in [0.3, 2] m"),
    (["patient", "create", "pt-2", "--clinic", "clinic-a", "--reference-range",
      "cadence_spm=120:90"], "reference_ranges.cadence_spm: low 120 is above high 90"),
    (["patient", "show", "pt-1", "--clinic", "clinic-b"], "no patient 'pt-1'"),
    (["patient", "update", "pt-1"], "nothing to change"),
    (["prescription", "create", "pt-1", "--type", "guided_walk", "--duration-min", "10",
      "--times-per-week", "5", "--cadence-band", "110-95"],
     "cadence_band_spm: low 110 is above high 95 steps/min"),
    (["prescription", "create", "pt-1", "--type", "2mwt", "--times-per-week", "1",
      "--duration-min", "6"], "a 2mwt lasts 120 s"),
    (["prescription", "create", "pt-1", "--type", "guided_walk", "--duration-min", "10",
      "--times-per-week", "5", "--start", "2027-02-01", "--end", "2027-01-01"],
     "end_date 2027-01-01 is before start_date 2027-02-01"),
    (["prescription", "update", "42", "--active", "no"], "no prescription 42"),
    (["clinic", "add", "clinic-a"], "clinic 'clinic-a' exists already"),
    (["token", "issue", "clinic-x"], "unknown clinic 'clinic-x'"),
]


def test_bad_input_exits_2_naming_the_problem(cli) -> None:
    assert cli("db", "upgrade")[0] == 0
    cli("db", "clinic", "add", "clinic-a")
    cli("db", "clinic", "add", "clinic-b")
    cli("db", "patient", "create", "pt-1", "--clinic", "clinic-a")
    for argv, message in BAD_INPUT:
        code, out, err = cli("db", *argv)
        assert code == 2 and out == "" and message in err, (argv, err)
        assert "Traceback" not in err
    # nothing of it was stored
    code, out, _ = cli("db", "patient", "list")
    assert out.split() == ["pt-1", "clinic-a", "-", "none"]
    assert cli("db", "prescription", "list", "pt-1")[1] == ""


@pytest.mark.parametrize(("argv", "message"), [
    (["patient", "create", "pt 1", "--clinic", "clinic-a"], "'pt 1' is not an id"),
    (["prescription", "create", "pt-1", "--type", "jog", "--times-per-week", "1"],
     "invalid choice: 'jog'"),
    (["prescription", "create", "pt-1", "--type", "guided_walk", "--times-per-week", "5",
      "--cadence-band", "95to110"], "'95to110' is not a cadence band LOW-HIGH"),
    (["patient", "create", "pt-1", "--clinic", "clinic-a", "--alert-threshold", "x"],
     "'x' is not NAME=VALUE"),
])
def test_malformed_arguments_are_refused_by_the_parser(argv: list[str], message: str,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["db", *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_import_profiles_errors(cli, tmp_path: Path) -> None:
    assert cli("db", "upgrade")[0] == 0
    cli("db", "clinic", "add", "clinic-a")
    missing = tmp_path / "nope.json"
    assert cli("db", "import-profiles", str(missing), "--clinic", "clinic-a")[2].endswith(
        "no such file\n")
    bad = tmp_path / "bad.json"
    bad.write_text('{"patients": {"pt-1": {"sensor_height_m": 97}}}')
    code, _, err = cli("db", "import-profiles", str(bad), "--clinic", "clinic-a")
    assert code == 2 and "patients.pt-1.sensor_height_m: 97 is not a height" in err
    good = tmp_path / "good.json"
    good.write_text('{"patients": {"pt-1": {"sensor_height_m": 0.95}}}')
    code, _, err = cli("db", "import-profiles", str(good), "--clinic", "clinic-x")
    assert code == 2 and "unknown clinic 'clinic-x'" in err
    assert cli("db", "patient", "list")[1] == ""


def test_the_processor_reads_sensor_heights_from_the_database(fresh_settings: Settings,
                                                              tmp_path: Path) -> None:
    from justwalk.db.engine import create, upgrade

    engine = create(database_url(fresh_settings))
    upgrade(engine)
    engine.dispose()
    configured = fresh_settings.replace(database_url=database_url(fresh_settings))
    repo = open_repository(configured)
    try:
        repo.add_clinic("clinic-a")
        repo.import_sensor_heights("clinic-a", {"pt-1": 0.95, "pt-2": None})
    finally:
        repo.engine.dispose()
    profiles = tmp_path / "profiles.json"
    profiles.write_text('{"patients": {"pt-9": {"sensor_height_m": 1.1}}}')
    # configured: the database; not configured: the file, as before
    assert load_sensor_heights(configured.replace(patient_profiles=profiles)) == {"pt-1": 0.95}
    assert load_sensor_heights(Settings(patient_profiles=profiles)) == {"pt-9": 1.1}


def test_the_api_refuses_to_start_on_an_unmigrated_database(cli) -> None:
    code, _, err = cli("api")
    assert code == 2 and "justwalk api: " in err and "run `justwalk db upgrade`" in err
