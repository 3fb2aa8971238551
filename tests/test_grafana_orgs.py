"""deploy/grafana/create-orgs.sh (bash + curl) against a loopback stand-in for Grafana's API.

NOT a real Grafana (none can run here): a small server keeps organisations the way Grafana's
``/api/orgs`` endpoints do (ids in creation order, 404 for an unknown name or id, basic auth)
and the script is run as the compose service runs it, minus ``--start-server``. It must
create what is missing, leave what is there, and refuse to go on when an organisation's id
differs from the one the provisioning gives the clinic: that would put a clinic's data
source into another clinic's organisation.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from justwalk import dashboards

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "grafana" / "create-orgs.sh"
ORGS_FILE = ROOT / "deploy" / dashboards.ORGANISATIONS
AUTH = "Basic " + base64.b64encode(b"admin:grafana-admin-pw").decode()


class FakeOrgs:
    """Grafana's organisations: id -> name, ids handed out in creation order."""

    def __init__(self) -> None:
        self.orgs: dict[int, str] = {1: "Main Org."}
        self.next_id = 2
        self.posts: list[str] = []

    def answer(self, method: str, path: str, body: Any, auth: str) -> tuple[int, Any]:
        if path == "/api/health":
            return 200, {"database": "ok"}
        if auth != AUTH:
            return 401, {"message": "invalid username or password"}
        if method == "GET" and path.startswith("/api/orgs/name/"):
            name = path.removeprefix("/api/orgs/name/")
            for i, n in self.orgs.items():
                if n == name:
                    return 200, {"id": i, "name": n, "address": {"city": ""}}
            return 404, {"message": "Organization not found"}
        if method == "GET" and path.startswith("/api/orgs/"):
            i = int(path.removeprefix("/api/orgs/"))
            if i in self.orgs:
                return 200, {"id": i, "name": self.orgs[i], "address": {"city": ""}}
            return 404, {"message": "Organization not found"}
        if method == "POST" and path == "/api/orgs":
            self.posts.append(body["name"])
            i = self.next_id
            self.next_id += 1
            self.orgs[i] = body["name"]
            return 200, {"message": "Organization created", "orgId": i}
        return 404, {"message": "not found"}


@pytest.fixture
def grafana(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FakeOrgs]]:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    fake = FakeOrgs()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, payload = fake.answer(self.command, self.path,
                                          json.loads(raw) if raw else None,
                                          self.headers.get("Authorization", ""))
            data = json.dumps(payload, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _handle

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


def run(url: str, orgs_file: Path = ORGS_FILE, password: str = "grafana-admin-pw"
        ) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "GRAFANA_URL": url, "GF_SECURITY_ADMIN_USER": "admin",
           "GF_SECURITY_ADMIN_PASSWORD": password, "NO_PROXY": "127.0.0.1"}
    return subprocess.run(["bash", str(SCRIPT), str(orgs_file)], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


def test_creates_the_missing_organisations_once(grafana: tuple[str, FakeOrgs]) -> None:
    url, fake = grafana
    first = run(url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["organisation 2 clinic-a created",
                                         "organisation 3 clinic-b created"]
    assert fake.orgs == {1: "Main Org.", 2: "clinic-a", 3: "clinic-b"}
    again = run(url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["organisation 2 clinic-a exists",
                                         "organisation 3 clinic-b exists"]
    assert fake.posts == ["clinic-a", "clinic-b"]


def test_refuses_an_organisation_whose_id_is_not_the_clinics(
        grafana: tuple[str, FakeOrgs]) -> None:
    url, fake = grafana
    fake.orgs = {1: "Main Org.", 2: "clinic-b"}  # e.g. clinics listed in another order
    fake.next_id = 3
    result = run(url)
    assert result.returncode == 1
    assert "id 2 is organisation 'clinic-b' in Grafana: give clinic clinic-a another " \
           "grafana_org_id" in result.stderr
    assert fake.posts == []


def test_refuses_an_existing_organisation_under_another_id(
        grafana: tuple[str, FakeOrgs]) -> None:
    url, fake = grafana
    fake.orgs = {1: "Main Org.", 5: "clinic-a"}
    result = run(url)
    assert result.returncode == 1
    assert "organisation clinic-a has id 5 in Grafana, the provisioning expects 2: set " \
           "grafana_org_id of clinic clinic-a to 5" in result.stderr


def test_refuses_when_grafana_hands_out_another_id(grafana: tuple[str, FakeOrgs]) -> None:
    url, fake = grafana
    fake.next_id = 7  # organisations 2-6 were created and deleted before
    result = run(url)
    assert result.returncode == 1
    assert "created with id 7, not 2" in result.stderr


def test_wrong_credentials_and_bad_files_stop_it(grafana: tuple[str, FakeOrgs],
                                                 tmp_path: Path) -> None:
    url, fake = grafana
    result = run(url, password="wrong")
    assert result.returncode == 1 and "HTTP 401" in result.stderr
    bad = tmp_path / "orgs.txt"
    bad.write_text("two clinic-a\n")
    result = run(url, bad)
    assert result.returncode == 1 and "bad line" in result.stderr
    result = run(url, tmp_path / "missing.txt")
    assert result.returncode == 1 and "cannot read" in result.stderr
    assert fake.posts == []
