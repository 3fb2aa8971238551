"""The alert service's parts without a broker: channels file, signatures, outbox, messages."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from justwalk.config import env_secret
from justwalk.records import AlertRecord
from sinks.alerts import (
    ChannelConfigError,
    Outbox,
    OutboxLocked,
    build_message,
    load_channels,
    parse_alert,
    parse_channels,
    sign,
    verify_signature,
)
from sinks.alerts.messages import alert_body, group_body, group_id
from sinks.alerts.webhook import HEADER_SIGNATURE, HEADER_TIMESTAMP, signature_headers

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "deploy" / "alert_channels.example.json"
SECRET = "whsec-test-0123456789"
# 2024-05-06 14:03:22 UTC
T0_US = int(datetime(2024, 5, 6, 14, 3, 22, tzinfo=UTC).timestamp() * 1_000_000)


def alert(patient: str = "pt-012", type_: str = "fall", dt_s: float = 0.0,
          clinic: str = "clinic-a") -> AlertRecord:
    start = T0_US + int(dt_s * 1e6)
    return AlertRecord(
        alert_id=AlertRecord.make_id(patient, "sess-1", type_, start),
        clinic_id=clinic, patient_id=patient, device_id="dev-7", session_id="sess-1",
        type=type_, severity="critical" if type_ == "fall" else "warning",
        event_start_us=start, event_end_us=start + 900_000, raised_at_us=start + 1_500_000,
        evidence={"peak_acc_g": 3.4, "trunk_tilt_after_deg": 81.0, "confidence": 0.91},
    )


# -- channels file ----------------------------------------------------------------------


def good_config() -> dict[str, Any]:
    return {
        "smtp": {"host": "127.0.0.1", "port": 2525, "from": "alerts@justwalk.test",
                 "security": "none"},
        "clinics": {
            "clinic-a": {"webhooks": [{"url": "http://127.0.0.1:9/hook", "secret": SECRET}],
                         "email_to": ["oncall@clinic-a.test"]},
        },
    }


def test_example_channels_file_is_valid() -> None:
    env = {"JUSTWALK_SMTP_PASSWORD": "pw", "JUSTWALK_WEBHOOK_SECRET_CLINIC_A": SECRET}
    config = load_channels(EXAMPLE, environ=env)
    assert config.smtp is not None and config.smtp.password == "pw"
    assert config.smtp.port == 587 and config.smtp.security == "starttls"
    keys = config.channel_keys("clinic-a")
    assert keys == ["clinic-a/webhook/https://ms-clinic-a.example/hooks/justwalk",
                    "clinic-a/email/falls-oncall@ms-clinic-a.example"]
    hook = config.channel(keys[0])
    assert hook is not None and hook.secret == SECRET.encode()  # type: ignore[union-attr]
    assert SECRET not in repr(hook)
    assert config.channel_keys("clinic-zzz") is None


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda c: c.pop("clinics"), "clinics: missing"),
    (lambda c: c["clinics"]["clinic-a"]["webhooks"][0].update(secert="x"),
     "clinics.clinic-a.webhooks[0].secert: unknown key"),
    (lambda c: c["clinics"]["clinic-a"]["webhooks"][0].pop("secret"),
     "clinics.clinic-a.webhooks[0].secret_env: missing"),
    (lambda c: c["clinics"]["clinic-a"]["webhooks"][0].update(secret="short"),
     "clinics.clinic-a.webhooks[0].secret: shorter than 16"),
    (lambda c: c["clinics"]["clinic-a"]["webhooks"][0].update(url="ftp://x/y"),
     "clinics.clinic-a.webhooks[0].url: 'ftp://x/y' is not an http(s) URL"),
    (lambda c: c["clinics"]["clinic-a"].update(email_to=["not-an-address"]),
     "clinics.clinic-a.email_to[0]: 'not-an-address' is not an e-mail address"),
    (lambda c: c.pop("smtp"), "smtp: missing, but clinics.clinic-a.email_to needs it"),
    (lambda c: c["smtp"].update(security="ssl3"), "smtp.security: must be one of"),
    (lambda c: c["smtp"].update(port="25"), "smtp.port: must be an integer"),
    (lambda c: c["clinics"].update({"clinic-b": {}}), "clinics.clinic-b: no channel"),
])
def test_channels_file_errors_name_the_key(mutate: Any, message: str) -> None:
    config = good_config()
    mutate(config)
    with pytest.raises(ChannelConfigError, match="^test.json: " + re.escape(message)):
        parse_channels(config, environ={}, source="test.json")


def test_secret_from_an_environment_variable() -> None:
    config = good_config()
    hook = config["clinics"]["clinic-a"]["webhooks"][0]
    del hook["secret"]
    hook["secret_env"] = "CLINIC_A_HOOK_SECRET"
    with pytest.raises(ChannelConfigError,
                       match=r"webhooks\[0\]\.secret_env: environment variable "
                             "CLINIC_A_HOOK_SECRET is not set"):
        parse_channels(config, environ={})
    parsed = parse_channels(config, environ={"CLINIC_A_HOOK_SECRET": SECRET + "-env"})
    assert parsed.clinics["clinic-a"][0].secret == (SECRET + "-env").encode()  # type: ignore[union-attr]
    assert env_secret("X", {"X": "v"}) == "v"


# -- signatures -------------------------------------------------------------------------


def test_signature_matches_a_vector_computed_with_openssl() -> None:
    # printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec-test-0123456789'
    expected = "ba8ec7f38c4e076a99176a1bf98ae9f2f3f4e18412b46a5913ddcf5685932c6a"
    assert sign(SECRET.encode(), "1700000000", b'{"a":1}') == "sha256=" + expected


def test_verify_signature_rejects_tampering_wrong_secret_and_stale_timestamps() -> None:
    body = b'{"alert_id":"abc","kind":"alert"}'
    headers = signature_headers(SECRET.encode(), body, "abc", now_s=1_700_000_000.7)
    assert headers[HEADER_TIMESTAMP] == "1700000000"
    assert verify_signature(SECRET.encode(), body, headers, now_s=1_700_000_010)
    assert not verify_signature(SECRET.encode(), body.replace(b"abc", b"abd"), headers,
                                now_s=1_700_000_010)
    assert not verify_signature(b"another-secret-of-16", body, headers, now_s=1_700_000_010)
    assert not verify_signature(SECRET.encode(), body, headers, now_s=1_700_000_400)
    assert not verify_signature(SECRET.encode(), body, {**headers, HEADER_SIGNATURE: "x"},
                                now_s=1_700_000_010)


# -- messages -----------------------------------------------------------------------------


def test_email_subject_body_and_headers() -> None:
    a = alert()
    msg = build_message(alert_body(a, window_s=300.0), sender="alerts@justwalk.test",
                        to="oncall@clinic-a.test")
    assert msg["Subject"] == "[JustWalk] FALL: patient pt-012 (clinic-a) at 14:03:22 UTC"
    assert msg["X-JustWalk-Alert-Id"] == a.alert_id
    text = msg.get_content()
    for needle in ("peak_acc_g: 3.4", "confidence: 0.91", a.alert_id, "2024-05-06 14:03:22",
                   "dev-7", "severity critical"):
        assert needle in text
    group = group_body([alert("pt-012", "near_fall", 40), alert("pt-012", "near_fall", 20)],
                       window_s=300.0, opened_by="first-id")
    gmsg = build_message(group, sender="alerts@justwalk.test", to="oncall@clinic-a.test")
    assert gmsg["Subject"] == ("[JustWalk] NEAR-FALL x2 more (grouped): patient pt-012 "
                               "(clinic-a) 14:03:42-14:04:02 UTC")
    assert group["alert_id"] == group_id("first-id") and group["count"] == 2


def test_parse_alert_rejects_what_decode_alert_lets_through() -> None:
    good = alert()
    assert parse_alert(good.to_json()) == good
    d = json.loads(good.to_json())
    for field, value in [("patient_id", 12), ("patient_id", "pt\n012"), ("event_start_us", 1.5),
                         ("evidence", {"x": float("nan")}), ("clinic_id", "")]:
        bad = json.dumps({**d, field: value}).encode()
        with pytest.raises(ValueError, match=field):
            parse_alert(bad)
    with pytest.raises(ValueError):
        parse_alert(b"\x00garbage")
    with pytest.raises(ValueError):
        parse_alert(None)


# -- outbox and suppression ------------------------------------------------------------------


def route(clinic: str) -> list[str] | None:
    return {"clinic-a": ["a/hook", "a/mail"], "clinic-b": ["b/hook"]}.get(clinic)


def test_suppression_groups_per_patient_and_type_and_survives_a_restart(
        tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, window_s=60.0)
    nf1, nf2, nf3 = (alert("pt-1", "near_fall", t) for t in (0, 5, 9))
    fall = alert("pt-1", "fall", 7)
    other = alert("pt-2", "near_fall", 6)
    report = box.ingest([nf1, nf2, fall, other], route, now=1000.0)
    assert (report.queued, report.suppressed) == (3, 1)
    assert report.channels == {"a/hook", "a/mail"}
    immediate = {j.delivery_id for j in box.jobs()}
    assert immediate == {nf1.alert_id, fall.alert_id, other.alert_id}  # fall never held
    assert len(box.jobs()) == 6  # two channels each
    box.close()

    box = Outbox(path, window_s=60.0)  # restart: windows and held alerts are still there
    report = box.ingest([nf3, nf2], route, now=1030.0)  # nf2 again: a replay
    assert (report.suppressed, report.duplicates) == (1, 1)
    assert box.next_window_close() == 1060.0
    assert box.close_due_windows(route, now=1059.0).groups == 0
    report = box.close_due_windows(route, now=1060.0)
    assert report.groups == 1 and report.channels == {"a/hook", "a/mail"}
    groups = [j for j in box.jobs() if j.kind == "alert_group"]
    assert len(groups) == 2
    body = json.loads(groups[0].body)
    assert body["count"] == 2 and body["alert_ids"] == [nf2.alert_id, nf3.alert_id]
    assert body["first_event_us"] == nf2.event_start_us
    assert body["last_event_us"] == nf3.event_start_us
    assert body["grouping"]["window_opened_by"] == nf1.alert_id
    assert box.next_window_close() is None
    # after the window, the next alert of the same key goes out at once again
    assert box.ingest([alert("pt-1", "near_fall", 70)], route, now=1061.0).queued == 1
    box.close()


def test_an_alert_past_the_windows_event_span_opens_a_new_window(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", window_s=60.0)
    first, held, later = (alert("pt-1", "near_fall", t) for t in (0, 30, 61))
    report = box.ingest([first, held, later], route, now=1000.0)  # a replayed backlog
    assert (report.queued, report.suppressed, report.groups) == (2, 1, 1)
    box.close()


def test_unknown_clinic_is_kept_and_rerouted_when_configured(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", window_s=0.0)
    lost = alert(clinic="clinic-x")
    report = box.ingest([lost, alert("pt-013", clinic="clinic-b")], route, now=1.0)
    assert [a.alert_id for a in report.unroutable] == [lost.alert_id]
    assert report.queued == 1 and box.unroutable_ids() == [lost.alert_id]
    assert box.reroute_unroutable(route, now=2.0).queued == 0
    report = box.reroute_unroutable(lambda c: ["x/hook"] if c == "clinic-x" else None, now=3.0)
    assert report.queued == 1 and report.channels == {"x/hook"}
    assert box.unroutable_ids() == []
    box.close()


def test_one_process_per_outbox(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", window_s=0.0)
    with pytest.raises(OutboxLocked):
        Outbox(tmp_path / "o.sqlite3", window_s=0.0)
    box.close()
    Outbox(tmp_path / "o.sqlite3", window_s=0.0).close()

