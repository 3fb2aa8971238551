"""The repository on SQLite and PostgreSQL: what it stores, what it refuses, whom it shows."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from justwalk.db import Conflict, InputError, NotFound, Repository
from justwalk.db.models import SessionStatus

GUIDED = {"session_type": "guided_walk", "duration_s": 600, "times_per_week": 5,
          "cadence_band_spm": [95, 110], "therapist_note": "comfortable pace"}


def test_patient_profile_round_trip(repo: Repository) -> None:
    created = repo.create_patient("clinic-a", "pt-0042", {
        "sensor_height_m": 0.98, "walking_aid": "rollator",
        "reference_ranges": {"walking_speed_mps": {"low": 0.9, "high": 1.3}},
        "alert_thresholds": {"fall_risk_score": 40, "fatigability_dwi_pct": -15}})
    shown = repo.patient("clinic-a", "pt-0042")
    assert shown == created
    assert shown["sensor_height_m"] == 0.98 and shown["walking_aid"] == "rollator"
    assert shown["reference_ranges"] == {"walking_speed_mps": {"low": 0.9, "high": 1.3}}
    assert shown["alert_thresholds"] == {"fall_risk_score": 40.0, "fatigability_dwi_pct": -15.0}
    updated = repo.update_patient("clinic-a", "pt-0042", {"sensor_height_m": None})
    assert updated["sensor_height_m"] is None and updated["walking_aid"] == "rollator"
    assert [p["patient_id"] for p in repo.patients("clinic-a")] == ["pt-0042"]
    assert repo.patients("clinic-b") == []


@pytest.mark.parametrize(("data", "message"), [
    ({"sensor_height_m": 98}, r"sensor_height_m: 98 is not a number in \[0.3, 2\] m"),
    ({"sensor_height_m": True}, "sensor_height_m"),
    ({"walking_aid": "wheelchair"}, r"walking_aid: 'wheelchair' is not one of"),
    ({"name": "Jane Doe"}, r"unknown fields \['name'\]"),
    ({"reference_ranges": {"cadence_spm": {"low": 120, "high": 90}}},
     "reference_ranges.cadence_spm: low 120 is above high 90"),
    ({"reference_ranges": {"mood": {"low": 1, "high": 2}}}, r"unknown fields \['mood'\]"),
    ({"alert_thresholds": {"fall_risk_score": 0}}, r"alert_thresholds.fall_risk_score"),
])
def test_bad_profiles_are_refused_naming_the_field(repo: Repository, data: dict[str, object],
                                                   message: str) -> None:
    with pytest.raises(InputError, match=message):
        repo.create_patient("clinic-a", "pt-1", data)
    assert repo.patients(None) == []


def test_ids_clinics_and_duplicates(repo: Repository) -> None:
    with pytest.raises(InputError, match="patient_id: 'pt 1' is not an id"):
        repo.create_patient("clinic-a", "pt 1")
    with pytest.raises(InputError, match="is not an id"):
        repo.create_patient("clinic-a", "pt-1\n")
    with pytest.raises(NotFound, match="unknown clinic 'clinic-z'"):
        repo.create_patient("clinic-z", "pt-1")
    repo.create_patient("clinic-a", "pt-1")
    with pytest.raises(Conflict, match="patient id 'pt-1' is taken"):
        repo.create_patient("clinic-b", "pt-1")
    with pytest.raises(Conflict, match="exists already"):
        repo.add_clinic("clinic-a")
    assert repo.clinics() == ["clinic-a", "clinic-b"]


def test_a_clinic_sees_only_its_own_patients(repo: Repository) -> None:
    repo.create_patient("clinic-a", "pt-a")
    rx = repo.create_prescription("clinic-a", "pt-a", GUIDED)
    for call in (lambda: repo.patient("clinic-b", "pt-a"),
                 lambda: repo.update_patient("clinic-b", "pt-a", {"walking_aid": "cane"}),
                 lambda: repo.prescriptions("clinic-b", "pt-a"),
                 lambda: repo.create_prescription("clinic-b", "pt-a", GUIDED),
                 lambda: repo.prescription("clinic-b", rx["prescription_id"]),
                 lambda: repo.update_prescription("clinic-b", rx["prescription_id"],
                                                  {"active": False}),
                 lambda: repo.sessions("clinic-b", "pt-a")):
        with pytest.raises(NotFound):
            call()
    # the same "not found" as for a patient that does not exist at all
    with pytest.raises(NotFound) as theirs:
        repo.patient("clinic-b", "pt-a")
    with pytest.raises(NotFound) as missing:
        repo.patient("clinic-b", "pt-zz")
    assert str(theirs.value).replace("pt-a", "X") == str(missing.value).replace("pt-zz", "X")
    assert repo.patient("clinic-a", "pt-a")["walking_aid"] == "none"  # unchanged
    assert repo.prescription(None, rx["prescription_id"])["active"] is True


def test_prescriptions(repo: Repository) -> None:
    repo.create_patient("clinic-a", "pt-1")
    rx = repo.create_prescription("clinic-a", "pt-1", GUIDED, today=date(2026, 12, 7))
    assert rx["session_type"] == "guided_walk" and rx["pace"] == "comfortable"
    assert rx["duration_s"] == 600.0 and rx["times_per_week"] == 5
    assert rx["cadence_band_spm"] == [95.0, 110.0] and rx["start_date"] == "2026-12-07"
    assert rx["active"] is True and rx["feedback_cadence_cue"] is True
    six = repo.create_prescription("clinic-a", "pt-1", {
        "session_type": "6mwt", "times_per_week": 1, "start_date": "2027-01-04",
        "end_date": "2027-03-29"})
    assert (six["duration_s"], six["pace"], six["end_date"]) == (360.0, "fast", "2027-03-29")
    t25 = repo.create_prescription("clinic-a", "pt-1",
                                   {"session_type": "t25fw", "times_per_week": 1})
    assert t25["target_distance_m"] == 7.62 and t25["duration_s"] is None
    changed = repo.update_prescription("clinic-a", rx["prescription_id"], {
        "cadence_band_spm": [100, 115], "feedback_metronome_spm": 105, "active": False})
    assert changed["cadence_band_spm"] == [100.0, 115.0]
    assert changed["feedback_metronome_spm"] == 105.0 and changed["active"] is False
    assert changed["therapist_note"] == "comfortable pace"  # untouched
    listed = repo.prescriptions("clinic-a", "pt-1")
    assert [r["prescription_id"] for r in listed] == [rx["prescription_id"],
                                                      six["prescription_id"],
                                                      t25["prescription_id"]]
    active = repo.prescriptions("clinic-a", "pt-1", active_only=True)
    assert [r["session_type"] for r in active] == ["6mwt", "t25fw"]


@pytest.mark.parametrize(("data", "message"), [
    ({**GUIDED, "cadence_band_spm": [110, 95]}, "cadence_band_spm: low 110 is above high 95"),
    ({**GUIDED, "cadence_band_spm": [95]}, r"cadence_band_spm: \[95\] is not \[low, high\]"),
    ({**GUIDED, "cadence_band_spm": [5, 110]}, r"cadence_band_spm low: 5 is not a number"),
    ({**GUIDED, "times_per_week": 0}, r"times_per_week: 0 is not a whole number in \[1, 21\]"),
    ({**GUIDED, "times_per_week": 2.5}, "times_per_week"),
    ({"session_type": "guided_walk", "duration_s": 600}, "times_per_week: missing"),
    ({**GUIDED, "session_type": "jog"}, r"session_type: 'jog' is not one of"),
    ({**GUIDED, "start_date": "2027-02-01", "end_date": "2027-01-01"},
     "end_date 2027-01-01 is before start_date 2027-02-01"),
    ({**GUIDED, "start_date": "01.02.2027"}, r"start_date: '01.02.2027' is not a date"),
    ({**GUIDED, "duration_s": None}, "a guided_walk needs duration_s or target_distance_m"),
    ({"session_type": "2mwt", "times_per_week": 1, "duration_s": 300}, "a 2mwt lasts 120 s"),
    ({"session_type": "t25fw", "times_per_week": 1, "duration_s": 60}, "a t25fw is timed"),
    ({**GUIDED, "therapist_note": "x" * 2001}, "therapist_note: a text of at most 2000"),
    ({**GUIDED, "feedback_progress_every_s": 1}, "feedback_progress_every_s"),
    ({**GUIDED, "active": "yes"}, "active: 'yes' is not true or false"),
    ({**GUIDED, "frequency": 5}, r"unknown fields \['frequency'\]"),
])
def test_bad_prescriptions_are_refused_naming_the_field(repo: Repository,
                                                        data: dict[str, object],
                                                        message: str) -> None:
    repo.create_patient("clinic-a", "pt-1")
    with pytest.raises(InputError, match=message):
        repo.create_prescription("clinic-a", "pt-1", data)
    assert repo.prescriptions("clinic-a", "pt-1") == []


def test_an_update_is_checked_with_what_it_leaves(repo: Repository) -> None:
    repo.create_patient("clinic-a", "pt-1")
    rx = repo.create_prescription("clinic-a", "pt-1", {**GUIDED, "start_date": "2027-01-10"})
    with pytest.raises(InputError, match="end_date 2027-01-01 is before start_date"):
        repo.update_prescription(None, rx["prescription_id"], {"end_date": "2027-01-01"})
    with pytest.raises(InputError, match="a guided_walk needs duration_s"):
        repo.update_prescription(None, rx["prescription_id"], {"duration_s": None})
    with pytest.raises(NotFound, match="no prescription 999"):
        repo.update_prescription(None, 999, {"active": False})
    assert repo.prescription(None, rx["prescription_id"]) == rx


def test_the_database_itself_refuses_an_inverted_band(repo: Repository, engine: Engine) -> None:
    repo.create_patient("clinic-a", "pt-1")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO prescriptions (patient_id, session_type, pace, times_per_week, "
            "cadence_low_spm, cadence_high_spm, start_date, active, therapist_note, "
            "feedback_cadence_cue, feedback_rest_suggestion, feedback_progress_every_s, "
            "created_at, updated_at) VALUES ('pt-1', 'guided_walk', 'comfortable', 5, 110, 95, "
            "'2027-01-01', true, '', true, true, 60, '2027-01-01', '2027-01-01')"))
    with pytest.raises(IntegrityError), engine.begin() as conn:  # foreign keys are on
        conn.execute(text("INSERT INTO patients (id, clinic_id, walking_aid, reference_ranges, "
                          "alert_thresholds, created_at, updated_at) VALUES ('pt-2', 'nowhere', "
                          "'none', '{}', '{}', '2027-01-01', '2027-01-01')"))


def test_tokens(repo: Repository) -> None:
    token_a = repo.issue_token("clinic-a", "ward 3")
    token_b = repo.issue_token("clinic-b")
    assert token_a != token_b and len(token_a) >= 40
    assert repo.authenticate(token_a) == "clinic-a"
    assert repo.authenticate(token_b) == "clinic-b"
    assert repo.authenticate(token_a + "x") is None and repo.authenticate("") is None
    with repo.engine.connect() as conn:  # only hashes at rest
        stored = list(conn.execute(text("SELECT token_sha256 FROM api_tokens")).scalars())
    assert token_a not in stored and all(len(h) == 64 for h in stored)
    assert repo.revoke_tokens("clinic-a") == 1
    assert repo.authenticate(token_a) is None and repo.authenticate(token_b) == "clinic-b"
    with pytest.raises(NotFound, match="unknown clinic"):
        repo.issue_token("clinic-z")


def test_import_of_the_profiles_file_and_the_processors_heights(repo: Repository) -> None:
    assert repo.import_sensor_heights("clinic-a", {"pt-1": 0.95, "pt-2": 1.05}) == (2, 0)
    assert repo.import_sensor_heights("clinic-a", {"pt-1": 0.97}) == (0, 1)
    repo.create_patient("clinic-b", "pt-b")  # no height: not in the processor's map
    assert repo.sensor_heights() == {"pt-1": 0.97, "pt-2": 1.05}
    with pytest.raises(Conflict, match="'pt-1' belongs to clinic 'clinic-a'"):
        repo.import_sensor_heights("clinic-b", {"pt-3": 1.0, "pt-1": 1.0})
    assert [p["patient_id"] for p in repo.patients("clinic-b")] == ["pt-b"]  # all or nothing
    with pytest.raises(InputError, match="sensor_height_m"):
        repo.import_sensor_heights("clinic-a", {"pt-4": 97.0})


def test_sessions_with_results_and_minutes(repo: Repository) -> None:
    repo.create_patient("clinic-a", "pt-1")
    rx = repo.create_prescription("clinic-a", "pt-1", {"session_type": "6mwt",
                                                       "times_per_week": 1})
    t0 = datetime(2027, 1, 4, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    started = repo.start_session("clinic-a", "pt-1", device_id="dev-1",
                                 device_session_id="s-1", session_type="6mwt",
                                 started_at=t0, prescription_id=rx["prescription_id"],
                                 course_length_m=30.0)
    assert started["status"] == "running" and started["result"] is None
    assert started["started_at"] == "2027-01-04T08:30:00+00:00"  # stored and shown in UTC
    minutes = [{"minute": m, "distance_m": d, "steps": 110, "speed_mps": d / 60,
                "cadence_spm": 110.0} for m, d in enumerate([80.0, 78, 75, 72, 70, 66], 1)]
    result = {"duration_s": 360.0, "distance_m": 441.0, "distance_uncertainty_m": 22.0,
              "steps": 660, "mean_speed_mps": 441 / 360, "mean_cadence_spm": 110.0,
              "near_falls": 0, "adherence_pct": 100.0, "dwi_pct": -17.5,
              "dwi_minute2_pct": -15.38, "fatigability": True}
    done = repo.finish_session(started["session_id"], status=SessionStatus.COMPLETED,
                               ended_at=t0 + timedelta(minutes=6), result=result,
                               minutes=minutes)
    assert done["status"] == "completed" and done["result"]["dwi_pct"] == -17.5
    assert [m["distance_m"] for m in done["minutes"]] == [80.0, 78, 75, 72, 70, 66]
    assert repo.sessions("clinic-a", "pt-1") == [done]
    assert repo.sessions("clinic-a") == [done] and repo.sessions("clinic-b") == []
    with pytest.raises(Conflict, match="completed already"):
        repo.finish_session(started["session_id"], status=SessionStatus.STOPPED_EARLY,
                            ended_at=t0)
    with pytest.raises(Conflict, match="already started session 's-1'"):
        repo.start_session("clinic-a", "pt-1", device_id="dev-1", device_session_id="s-1",
                           session_type="free_walk", started_at=t0)
    with pytest.raises(NotFound, match="has no prescription 999"):
        repo.start_session("clinic-a", "pt-1", device_id="dev-1", device_session_id="s-2",
                           session_type="6mwt", started_at=t0, prescription_id=999)
    with pytest.raises(Conflict, match="is a 6mwt, not a 2mwt"):
        repo.start_session("clinic-a", "pt-1", device_id="dev-1", device_session_id="s-2",
                           session_type="2mwt", started_at=t0,
                           prescription_id=rx["prescription_id"])
    with pytest.raises(InputError, match="started_at: 2027-01-04T00:00:00 has no time zone"):
        repo.start_session("clinic-a", "pt-1", device_id="dev-1", device_session_id="s-3",
                           session_type="free_walk", started_at=datetime(2027, 1, 4))  # noqa: DTZ001
    later = repo.start_session(None, "pt-1", device_id="dev-1", device_session_id="s-4",
                               session_type="free_walk", started_at=t0 + timedelta(days=1))
    assert [s["session_id"] for s in repo.sessions(None)] == [later["session_id"],
                                                              done["session_id"]]
