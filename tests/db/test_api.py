"""The clinics' HTTP API, served for real on loopback, over SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from justwalk.api import create_app
from justwalk.api.openapi import openapi
from justwalk.db import Repository

GUIDED = {"session_type": "guided_walk", "duration_s": 600, "times_per_week": 5,
          "cadence_band_spm": [95, 110]}


@dataclass
class Api:
    base: str
    http: aiohttp.ClientSession
    repo: Repository
    token_a: str
    token_b: str

    async def call(self, method: str, path: str, token: str | None, body: Any = None,
                   **kwargs: Any) -> tuple[int, Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        if body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.base + path, headers=headers,
                                     **kwargs) as r:
            assert r.content_type == "application/json", await r.text()
            return r.status, await r.json()


@pytest.fixture
async def api(repo: Repository) -> AsyncIterator[Api]:
    runner = web.AppRunner(create_app(repo), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            yield Api(f"http://127.0.0.1:{port}", http, repo, repo.issue_token("clinic-a"),
                      repo.issue_token("clinic-b"))
    finally:
        await runner.cleanup()


async def test_create_show_update_a_patient_and_prescribe(api: Api) -> None:
    status, created = await api.call("POST", "/v1/patients", api.token_a, {
        "patient_id": "pt-0042", "sensor_height_m": 0.98, "walking_aid": "cane",
        "reference_ranges": {"cadence_spm": {"low": 95, "high": 115}}})
    assert status == 201 and created["clinic_id"] == "clinic-a"
    assert created == api.repo.patient("clinic-a", "pt-0042")
    status, shown = await api.call("GET", "/v1/patients/pt-0042", api.token_a)
    assert status == 200 and shown == created
    status, changed = await api.call("PATCH", "/v1/patients/pt-0042", api.token_a,
                                     {"alert_thresholds": {"fall_risk_score": 40}})
    assert status == 200 and changed["alert_thresholds"] == {"fall_risk_score": 40.0}
    assert changed["sensor_height_m"] == 0.98
    status, rx = await api.call("POST", "/v1/patients/pt-0042/prescriptions", api.token_a,
                                GUIDED)
    assert status == 201 and rx["cadence_band_spm"] == [95.0, 110.0]
    assert rx == api.repo.prescription(None, rx["prescription_id"])
    path = f"/v1/prescriptions/{rx['prescription_id']}"
    status, rx2 = await api.call("PATCH", path, api.token_a, {"active": False})
    assert status == 200 and rx2["active"] is False
    status, listed = await api.call("GET", "/v1/patients/pt-0042/prescriptions", api.token_a)
    assert status == 200 and listed == {"prescriptions": [rx2]}
    status, listed = await api.call("GET", "/v1/patients/pt-0042/prescriptions?active_only=true",
                                    api.token_a)
    assert listed == {"prescriptions": []}
    assert await api.call("GET", path, api.token_a) == (200, rx2)
    status, patients = await api.call("GET", "/v1/patients", api.token_a)
    assert [p["patient_id"] for p in patients["patients"]] == ["pt-0042"]
    assert await api.call("GET", "/v1/patients/pt-0042/sessions", api.token_a) == (
        200, {"sessions": []})


async def test_clinic_b_gets_404_for_clinic_a_patient(api: Api) -> None:
    await api.call("POST", "/v1/patients", api.token_a, {"patient_id": "pt-a"})
    _, rx = await api.call("POST", "/v1/patients/pt-a/prescriptions", api.token_a, GUIDED)
    rx_path = f"/v1/prescriptions/{rx['prescription_id']}"
    attempts = [("GET", "/v1/patients/pt-a", None),
                ("PATCH", "/v1/patients/pt-a", {"walking_aid": "walker"}),
                ("GET", "/v1/patients/pt-a/prescriptions", None),
                ("POST", "/v1/patients/pt-a/prescriptions", GUIDED),
                ("GET", "/v1/patients/pt-a/sessions", None),
                ("GET", rx_path, None),
                ("PATCH", rx_path, {"active": False})]
    for method, path, body in attempts:
        status, answer = await api.call(method, path, api.token_b, body)
        assert status == 404, (method, path, answer)
        # word for word what a patient that does not exist gets
        other = path.replace("pt-a", "pt-none").replace(str(rx["prescription_id"]), "999999")
        assert (await api.call(method, other, api.token_b, body))[0] == 404
    status, listed = await api.call("GET", "/v1/patients", api.token_b)
    assert status == 200 and listed == {"patients": []}
    assert (await api.call("GET", "/v1/sessions", api.token_b)) == (200, {"sessions": []})
    # nothing of clinic A changed, and A still sees it
    assert api.repo.patient("clinic-a", "pt-a")["walking_aid"] == "none"
    assert api.repo.prescription(None, rx["prescription_id"])["active"] is True
    assert len(api.repo.prescriptions(None, "pt-a")) == 1
    assert (await api.call("GET", "/v1/patients/pt-a", api.token_a))[0] == 200


async def test_authentication(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": api.token_a},
                    {"Authorization": f"Basic {api.token_a}"}):
        async with api.http.get(api.base + "/v1/patients", headers=headers) as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
            assert "Authorization: Bearer" in (await r.json())["error"]
    assert (await api.call("GET", "/v1/patients", api.token_a))[0] == 200
    api.repo.revoke_tokens("clinic-a")
    assert (await api.call("GET", "/v1/patients", api.token_a))[0] == 401
    # the description and the health check are public
    assert (await api.call("GET", "/v1/openapi.json", None))[0] == 200
    assert await api.call("GET", "/healthz", None) == (200, {"status": "ok"})


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("POST", "/v1/patients", {"sensor_height_m": 1.0}, 400, "patient_id: missing"),
    ("POST", "/v1/patients", {"patient_id": "pt 1"}, 400, "patient_id: 'pt 1' is not an id"),
    ("POST", "/v1/patients", {"patient_id": "pt-1", "name": "X"}, 400, "unknown fields"),
    ("POST", "/v1/patients", [1, 2], 400, "must be a JSON object, not list"),
    ("POST", "/v1/patients", {"patient_id": "pt-1", "sensor_height_m": "1.0"}, 400,
     "sensor_height_m: '1.0' is not a number"),
    ("POST", "/v1/patients/pt-1/prescriptions", {**GUIDED, "cadence_band_spm": [110, 95]},
     400, "cadence_band_spm: low 110 is above high 95"),
    ("POST", "/v1/patients/pt-1/prescriptions", {**GUIDED, "times_per_week": "5"}, 400,
     "times_per_week"),
    ("GET", "/v1/patients/pt-1/sessions?limit=0", None, 400, "limit: '0' is not"),
    ("GET", "/v1/patients/pt-1/prescriptions?active_only=maybe", None, 400, "active_only"),
    ("GET", "/v1/patients/pt-2", None, 404, "no patient 'pt-2'"),
    ("GET", "/v1/prescriptions/abc", None, 404, "Not Found"),
    ("DELETE", "/v1/patients/pt-1", None, 405, "Method Not Allowed"),
    ("POST", "/v1/patients", {"patient_id": "pt-1"}, 409, "patient id 'pt-1' is taken"),
])
async def test_bad_requests_get_clear_json_errors(api: Api, method: str, path: str, body: Any,
                                                  status: int, message: str) -> None:
    await api.call("POST", "/v1/patients", api.token_a, {"patient_id": "pt-1"})
    got, answer = await api.call(method, path, api.token_a, body)
    assert got == status and message in answer["error"], answer
    assert [p["patient_id"] for p in api.repo.patients(None)] == ["pt-1"]


async def test_bodies_must_be_json(api: Api) -> None:
    auth = {"Authorization": f"Bearer {api.token_a}"}
    async with api.http.post(api.base + "/v1/patients", data="patient_id=pt-1",
                             headers={**auth, "Content-Type": "text/plain"}) as r:
        assert r.status == 415 and "application/json" in (await r.json())["error"]
    async with api.http.post(api.base + "/v1/patients", data="{not json",
                             headers={**auth, "Content-Type": "application/json"}) as r:
        assert r.status == 400 and "not valid JSON" in (await r.json())["error"]
    big = json.dumps({"patient_id": "pt-1", "x": "y" * 100_000})
    async with api.http.post(api.base + "/v1/patients", data=big,
                             headers={**auth, "Content-Type": "application/json"}) as r:
        assert r.status == 413 and "larger than" in (await r.json())["error"]
    assert api.repo.patients(None) == []


async def test_the_openapi_description_covers_every_route(api: Api) -> None:
    status, served = await api.call("GET", "/v1/openapi.json", None)
    assert status == 200 and served == json.loads(json.dumps(openapi()))
    app = create_app(api.repo)
    routes = {(r.method.lower(), r.resource.canonical.replace(r":\d{1,18}", ""))
              for r in app.router.routes() if r.resource is not None
              and r.resource.canonical.startswith("/v1/") and r.method != "HEAD"}
    routes.discard(("get", "/v1/openapi.json"))
    documented = {(m, p) for p, ops in served["paths"].items() for m in ops}
    assert documented == routes
