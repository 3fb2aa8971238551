"""``justwalk grafana push`` through the real grafana-client against a recording HTTP server.

This is NOT a real Grafana (none can run here): a small loopback server answers like the
Grafana HTTP API does for these endpoints (404 for what does not exist yet, 200 with JSON
otherwise) and records every request. The tests pin the exact endpoints, methods and
payloads grafana-client sends, for a first push and for an update.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from justwalk import dashboards
from justwalk.cli import build_parser, main
from justwalk.grafana_push import PushOptions, connect, push


class FakeGrafana:
    """Records requests; ``existing`` decides which GETs find something."""

    def __init__(self, existing: bool) -> None:
        self.existing = existing
        self.calls: list[tuple[str, str, Any]] = []
        self.headers: list[dict[str, str]] = []

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        self.calls.append((method, path, body))
        if method == "GET":
            if path.startswith("/api/v1/provisioning/contact-points"):
                return 200, ([{"uid": "justwalk-webhook", "name": "JustWalk clinic"}]
                             if self.existing else [])
            if "/rule-groups/" in path:
                return 200, {"title": path.rsplit("/", 1)[1], "interval": 60, "rules": []}
            return (200, {"uid": "x"}) if self.existing else (404, {"message": "not found"})
        return 200, {"status": "success", "uid": "x"}


@pytest.fixture
def grafana(request: pytest.FixtureRequest,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FakeGrafana]]:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    fake = FakeGrafana(existing=getattr(request, "param", False))

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            fake.headers.append(dict(self.headers))
            status, payload = fake.answer(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fake
    finally:
        server.shutdown()
        server.server_close()


OPTIONS = PushOptions(influx_url="http://influx.clinic:8086", influx_user="read-clinic-a",
                      influx_password="s3cret", database="justwalk_clinic-a",
                      webhook_url="https://clinic/hook", alert_emails="team@clinic",
                      timezone="Europe/Berlin")
RULE_UIDS = [r["uid"] for g in dashboards.rules() for r in g["rules"]]


def test_first_push_creates_everything(grafana: tuple[str, FakeGrafana]) -> None:
    url, fake = grafana
    push(connect(url, token="glsa_token"), OPTIONS)
    calls = [(m, p) for m, p, _ in fake.calls]
    expected = [
        ("GET", "/api/folders/justwalk"), ("POST", "/api/folders"),
        ("GET", "/api/datasources/uid/justwalk-influxdb"), ("POST", "/api/datasources"),
        *[("POST", "/api/dashboards/db")] * 3,
        ("GET", "/api/v1/provisioning/mute-timings/justwalk-night"),
        ("POST", "/api/v1/provisioning/mute-timings"),
        ("GET", "/api/v1/provisioning/contact-points?name=JustWalk+clinic"),
        ("POST", "/api/v1/provisioning/contact-points"),
        ("POST", "/api/v1/provisioning/contact-points"),
    ]
    for group in dashboards.rules():
        for rule in group["rules"]:
            expected += [("GET", f"/api/v1/provisioning/alert-rules/{rule['uid']}"),
                         ("POST", "/api/v1/provisioning/alert-rules")]
        path = f"/api/v1/provisioning/folder/justwalk/rule-groups/{group['name']}"
        expected += [("GET", path), ("PUT", path)]
    assert calls == expected
    assert all(h["Authorization"] == "Bearer glsa_token" for h in fake.headers)
    assert not any("X-Grafana-Org-Id" in h for h in fake.headers)  # the token's own org

    body = {(m, p): b for m, p, b in fake.calls if b is not None}
    assert fake.calls[1][2] == {"title": "JustWalk", "uid": "justwalk"}
    ds = fake.calls[3][2]
    assert ds["uid"] == "justwalk-influxdb" and ds["url"] == "http://influx.clinic:8086"
    assert ds["user"] == "read-clinic-a" and ds["secureJsonData"] == {"password": "s3cret"}
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["isDefault"] is False
    assert ds["jsonData"]["dbName"] == "justwalk_clinic-a"  # the clinic's database only
    assert "orgId" not in ds and "editable" not in ds
    boards = [b for m, p, b in fake.calls if p == "/api/dashboards/db"]
    assert [b["dashboard"]["uid"] for b in boards] == [
        dashboards.UID_OVERVIEW, dashboards.UID_PATIENT, dashboards.UID_LONGITUDINAL]
    assert all(b["folderUid"] == "justwalk" and b["overwrite"] and b["dashboard"]["id"] is None
               for b in boards)
    mute = body[("POST", "/api/v1/provisioning/mute-timings")]
    assert mute["time_intervals"][0]["location"] == "Europe/Berlin"
    cps = [b for m, p, b in fake.calls if p == "/api/v1/provisioning/contact-points"]
    assert [(c["type"], c["settings"]) for c in cps] == [
        ("webhook", {"url": "https://clinic/hook", "httpMethod": "POST"}),
        ("email", {"addresses": "team@clinic", "singleEmail": True})]
    rules = [b for m, p, b in fake.calls if p == "/api/v1/provisioning/alert-rules"]
    assert [r["uid"] for r in rules] == RULE_UIDS
    assert all(r["folderUID"] == "justwalk" and r["notification_settings"]["receiver"]
               == dashboards.CONTACT_POINT for r in rules)
    groups = [b for m, p, b in fake.calls if m == "PUT" and "/rule-groups/" in p]
    assert [g["interval"] for g in groups] == [3600, 60]
    # provenance kept: the pushed alerting objects are managed as code
    assert not any("X-Disable-Provenance" in h for h in fake.headers)


@pytest.mark.parametrize("grafana", [True], indirect=True)
def test_second_push_updates_in_place(grafana: tuple[str, FakeGrafana]) -> None:
    url, fake = grafana
    options = PushOptions(datasource_uid="their-influx", webhook_url="https://clinic/hook",
                          editable=True)
    push(connect(url, user="admin", password="pw"), options)
    methods = {(m, p) for m, p, _ in fake.calls}
    assert ("POST", "/api/folders") not in methods
    assert not any("/api/datasources" in p for _, p in methods), "their data source is used"
    assert ("PUT", "/api/v1/provisioning/mute-timings/justwalk-night") in methods
    assert ("PUT", "/api/v1/provisioning/contact-points/justwalk-webhook") in methods
    assert not any(p == "/api/v1/provisioning/contact-points" for m, p in methods if m == "POST")
    for uid in RULE_UIDS:
        assert ("PUT", f"/api/v1/provisioning/alert-rules/{uid}") in methods
    text = json.dumps([b for _, _, b in fake.calls if b])
    assert "justwalk-influxdb" not in text and "their-influx" in text
    assert any(h.get("X-Disable-Provenance") == "true" for h in fake.headers)
    assert all(h["Authorization"].startswith("Basic ") for h in fake.headers)


def test_a_clinic_is_pushed_into_its_own_organisation(grafana: tuple[str, FakeGrafana]) -> None:
    url, fake = grafana
    options = PushOptions(influx_url="http://i:8086", influx_user="read-clinic-b",
                          database="justwalk_clinic-b", org_id=3, alert_emails="a@b.c;d@e.f")
    push(connect(url, user="admin", password="pw", org_id=3), options)
    assert fake.headers and all(h["X-Grafana-Org-Id"] == "3" for h in fake.headers)
    rules = [b for m, p, b in fake.calls if p == "/api/v1/provisioning/alert-rules"]
    assert rules and all(r["orgID"] == 3 for r in rules)
    cps = [b for m, p, b in fake.calls if p == "/api/v1/provisioning/contact-points"]
    assert [(c["type"], c["settings"]["addresses"]) for c in cps] == [("email", "a@b.c;d@e.f")]


def test_without_a_contact_point_rules_use_grafanas_policies(
    grafana: tuple[str, FakeGrafana],
) -> None:
    url, fake = grafana
    push(connect(url, token="t"), PushOptions(influx_url="http://i:8086", database="d_c"))
    rules = [b for m, p, b in fake.calls if p == "/api/v1/provisioning/alert-rules"]
    assert rules and all("notification_settings" not in r for r in rules)
    assert not any(p.startswith("/api/v1/provisioning/contact-points") and m == "POST"
                   for m, p, _ in fake.calls)


def test_cli(grafana: tuple[str, FakeGrafana], capsys: pytest.CaptureFixture[str]) -> None:
    url, _fake = grafana
    args = ["grafana", "push", "--url", url, "--token", "t", "--influx-url", "http://i:8086",
            "--webhook-url", "https://h", "--clinic", "clinic-a"]
    assert callable(build_parser().parse_args(args).func)
    assert main(args) == 0
    assert "dashboard clinic-overview" in capsys.readouterr().out
    ds = next(b for m, p, b in _fake.calls if (m, p) == ("POST", "/api/datasources"))
    assert ds["jsonData"]["dbName"] == "justwalk_clinic-a"  # JUSTWALK_INFLUX_DB + clinic
    with pytest.raises(ValueError, match="--token"):
        connect(url)
    with pytest.raises(ValueError, match="--influx-url and --clinic"):
        push(connect(url, token="t"), PushOptions())
    with pytest.raises(SystemExit):  # --clinic is required
        build_parser().parse_args(args[:-2])
