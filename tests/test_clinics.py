"""The clinics file (justwalk.clinics): what is accepted, and every fault named by its key."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from justwalk.clinics import Clinic, ClinicsError, load_clinics, parse_clinics

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "clinics.example.json"


def good() -> dict[str, Any]:
    return {"clinics": {
        "clinic-a": {"grafana_org_id": 2, "influx_read_user": "read-a",
                     "influx_read_password_env": "PW_A", "timezone": "Europe/Berlin",
                     "alert_webhook_url": "https://a.example/hook",
                     "alert_emails": ["team@a.example"]},
        "clinic-b": {"grafana_org_id": 3, "influx_read_user": "read-b",
                     "influx_read_password_env": "PW_B", "_note": "comments are ignored"},
    }}


def test_the_example_is_valid_and_each_clinic_is_complete() -> None:
    clinics = load_clinics(EXAMPLE)
    assert [c.clinic_id for c in clinics] == ["clinic-a", "clinic-b"]
    a = clinics[0]
    assert (a.grafana_org_id, a.influx_read_user, a.timezone) == (2, "read-clinic-a",
                                                                  "Europe/Berlin")
    assert a.read_password({"JUSTWALK_INFLUX_READ_PASSWORD_CLINIC_A": "s3"}) == "s3"
    with pytest.raises(ValueError, match="JUSTWALK_INFLUX_READ_PASSWORD_CLINIC_A"):
        a.read_password({})


def test_defaults() -> None:
    b = parse_clinics(good())[1]
    assert b == Clinic("clinic-b", 3, "read-b", "PW_B")
    assert (b.timezone, b.alert_webhook_url, b.alert_emails) == ("UTC", "", ())


FAULTS: list[tuple[Callable[[dict[str, Any]], object], str]] = [
    (lambda c: c.pop("clinics"), "clinics: missing"),
    (lambda c: c.update(clinics={}), "clinics: no clinic configured"),
    (lambda c: c.update(extra=1), "extra: unknown key"),
    (lambda c: c["clinics"].update({"bad id\n": c["clinics"]["clinic-b"]}),
     "a clinic id is"),
    (lambda c: c["clinics"]["clinic-a"].pop("grafana_org_id"),
     "clinics.clinic-a.grafana_org_id: missing"),
    (lambda c: c["clinics"]["clinic-a"].update(grafana_org_id=1),
     "clinics.clinic-a.grafana_org_id: must be an integer >= 2"),
    (lambda c: c["clinics"]["clinic-a"].update(grafana_org_id=True), "grafana_org_id"),
    (lambda c: c["clinics"]["clinic-a"].update(influx_read_user="a b"),
     "clinics.clinic-a.influx_read_user: 'a b' is not a user name"),
    (lambda c: c["clinics"]["clinic-a"].update(influx_read_password_env="pw-a"),
     "influx_read_password_env: 'pw-a' is not an environment variable name"),
    (lambda c: c["clinics"]["clinic-a"].update(timezone="Mars/Olympus"),
     "clinics.clinic-a.timezone: 'Mars/Olympus' is not an IANA time zone"),
    (lambda c: c["clinics"]["clinic-a"].update(alert_webhook_url="ftp://x"),
     "alert_webhook_url: 'ftp://x' is not an http"),
    (lambda c: c["clinics"]["clinic-a"].update(alert_emails=["nope"]),
     r"clinics.clinic-a.alert_emails\[0\]: 'nope' is not an e-mail address"),
    (lambda c: c["clinics"]["clinic-a"].update(secret="x"), "clinic-a.secret: unknown key"),
    # nothing that identifies or reaches a clinic is shared with another
    (lambda c: c["clinics"]["clinic-b"].update(grafana_org_id=2),
     "clinics.clinic-b.grafana_org_id: 2 is already clinic clinic-a's"),
    (lambda c: c["clinics"]["clinic-b"].update(influx_read_user="read-a"),
     "clinics.clinic-b.influx_read_user: 'read-a' is already clinic clinic-a's"),
    (lambda c: c["clinics"]["clinic-b"].update(influx_read_password_env="PW_A"),
     "influx_read_password_env: 'PW_A' is already"),
    (lambda c: c["clinics"]["clinic-b"].update(alert_webhook_url="https://a.example/hook"),
     "clinics.clinic-b.alert_webhook_url"),
    (lambda c: c["clinics"]["clinic-b"].update(alert_emails=["TEAM@a.example"]),
     "clinics.clinic-b.alert_emails: 'team@a.example' is already clinic clinic-a's"),
]


@pytest.mark.parametrize(("mutate", "message"), FAULTS, ids=[m for _, m in FAULTS])
def test_faults_are_named(mutate: Callable[[dict[str, Any]], object], message: str) -> None:
    config = copy.deepcopy(good())
    mutate(config)
    with pytest.raises(ClinicsError, match=message):
        parse_clinics(config, source="clinics.json")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ClinicsError, match="cannot read"):
        load_clinics(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ClinicsError, match="not valid JSON"):
        load_clinics(bad)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(good()))
    assert len(load_clinics(ok)) == 2
