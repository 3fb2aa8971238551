"""Routes and handlers of the clinics' HTTP API.

Every ``/v1`` route but the OpenAPI description needs ``Authorization: Bearer <token>``, a
token of one clinic; the handlers pass that clinic to the repository, which reports another
clinic's patient as not found (404), exactly like a missing one. Bodies are JSON objects
validated by ``justwalk.db.inputs``; errors are ``{"error": "<message>"}`` with 400 (bad
input), 401 (no or unknown token), 404, 409 (conflict), 413 or 415. Database calls run in
worker threads, so a slow query does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from justwalk.api.openapi import openapi
from justwalk.config import Settings
from justwalk.db import Conflict, InputError, NotFound, Repository
from justwalk.db.inputs import check_id

REPOSITORY = web.AppKey("repository", Repository)
SETTINGS = web.AppKey("settings", Settings)
"""Where the reports read InfluxDB (``influx_url``, ``influx_db`` prefix, credentials)."""
PDF_SLOTS = web.AppKey("pdf_slots", asyncio.Semaphore)
MAX_PDF_AT_ONCE = 2
"""Headless Chromium processes printing reports at the same time."""
MAX_BODY_BYTES = 64 * 1024
MAX_LIST = 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ClinicHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class _Unauthenticated(Exception):
    """No token, or not a live token of any clinic."""


async def _authenticate(request: web.Request) -> str:
    token = _bearer(request.headers.get("Authorization", ""))
    repo = request.app[REPOSITORY]
    clinic = await asyncio.to_thread(repo.authenticate, token) if token else None
    if clinic is None:
        raise _Unauthenticated
    return clinic


def _clinics_only(handler: ClinicHandler) -> Handler:
    """A handler for the clinic whose token the request carries (401 without one)."""

    async def authenticated(request: web.Request) -> web.StreamResponse:
        return await handler(request, await _authenticate(request))

    return authenticated


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The repository's and aiohttp's errors as JSON answers."""
    try:
        return await handler(request)
    except _Unauthenticated:
        return _error(401, "a clinic's API token is required: Authorization: Bearer <token>",
                      **{"WWW-Authenticate": "Bearer"})
    except InputError as exc:
        return _error(400, str(exc))
    except NotFound as exc:
        return _error(404, str(exc))
    except Conflict as exc:
        return _error(409, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return _error(exc.status, exc.reason, **allow)


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason="send the body as application/json")
    try:
        data = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"the body must be a JSON object, not {type(data).__name__}")
    return data


async def _call(request: web.Request, clinic: str, method: str, *args: Any,
                **kwargs: Any) -> Any:
    repo = request.app[REPOSITORY]
    return await asyncio.to_thread(getattr(repo, method), clinic, *args, **kwargs)


def _patient_id(request: web.Request) -> str:
    return check_id(request.match_info["patient_id"], "patient_id")


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST:
        raise InputError(f"limit: {raw!r} is not a whole number in [1, {MAX_LIST}]")
    return int(raw)


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise InputError(f"{name}: {raw!r} is not true or false")
    return raw == "true"


# ---------------------------------------------------------------------------- handlers

async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi())


async def _list_patients(request: web.Request, clinic: str) -> web.Response:
    return web.json_response({"patients": await _call(request, clinic, "patients")})


async def _create_patient(request: web.Request, clinic: str) -> web.Response:
    data = await _body(request)
    if "patient_id" not in data:
        raise InputError("patient_id: missing")
    patient_id = check_id(data.pop("patient_id"), "patient_id")
    created = await _call(request, clinic, "create_patient", patient_id, data)
    return web.json_response(created, status=201,
                             headers={"Location": f"/v1/patients/{patient_id}"})


async def _get_patient(request: web.Request, clinic: str) -> web.Response:
    return web.json_response(await _call(request, clinic, "patient", _patient_id(request)))


async def _update_patient(request: web.Request, clinic: str) -> web.Response:
    patient_id = _patient_id(request)
    data = await _body(request)
    return web.json_response(await _call(request, clinic, "update_patient", patient_id, data))


async def _list_prescriptions(request: web.Request, clinic: str) -> web.Response:
    rows = await _call(request, clinic, "prescriptions", _patient_id(request),
                       active_only=_flag(request, "active_only"))
    return web.json_response({"prescriptions": rows})


async def _create_prescription(request: web.Request, clinic: str) -> web.Response:
    patient_id = _patient_id(request)
    data = await _body(request)
    created = await _call(request, clinic, "create_prescription", patient_id, data)
    return web.json_response(created, status=201, headers={
        "Location": f"/v1/prescriptions/{created['prescription_id']}"})


async def _get_prescription(request: web.Request, clinic: str) -> web.Response:
    rx_id = int(request.match_info["prescription_id"])
    return web.json_response(await _call(request, clinic, "prescription", rx_id))


async def _update_prescription(request: web.Request, clinic: str) -> web.Response:
    rx_id = int(request.match_info["prescription_id"])
    data = await _body(request)
    return web.json_response(await _call(request, clinic, "update_prescription", rx_id, data))


async def _patient_sessions(request: web.Request, clinic: str) -> web.Response:
    rows = await _call(request, clinic, "sessions", _patient_id(request), limit=_limit(request))
    return web.json_response({"sessions": rows})


async def _clinic_sessions(request: web.Request, clinic: str) -> web.Response:
    rows = await _call(request, clinic, "sessions", None, limit=_limit(request))
    return web.json_response({"sessions": rows})


async def _report(request: web.Request, clinic: str, *, pdf: bool = False) -> web.Response:
    from justwalk.report.browser import BrowserError, html_to_pdf
    from justwalk.report.data import Period
    from justwalk.report.gather import gather
    from justwalk.report.render import render_html

    patient_id = _patient_id(request)
    period = Period.parse(request.query.get("from"), request.query.get("to"))
    kind = request.query.get("format", "pdf" if pdf else "html")
    if kind not in ("html", "pdf"):
        raise InputError(f"format: {kind!r} is not html or pdf")
    data = await gather(request.app[SETTINGS], request.app[REPOSITORY], clinic, patient_id,
                        period)
    html = await asyncio.to_thread(render_html, data)
    name = f"report-{patient_id}-{period.first.isoformat()}-{period.last.isoformat()}"
    if kind == "html":
        return web.Response(text=html, content_type="text/html", charset="utf-8", headers={
            "Content-Disposition": f'inline; filename="{name}.html"'})
    try:
        async with request.app[PDF_SLOTS]:
            body = await html_to_pdf(
                html, chromium_binary=request.app[SETTINGS].chromium_binary)
    except BrowserError as exc:
        return _error(503, f"the PDF could not be printed: {exc}")
    return web.Response(body=body, content_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{name}.pdf"'})


async def _report_pdf(request: web.Request, clinic: str) -> web.Response:
    return await _report(request, clinic, pdf=True)


def create_app(repository: Repository, settings: Settings | None = None) -> web.Application:
    """The API over ``repository``; reports read the InfluxDB of ``settings``."""
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
    app[REPOSITORY] = repository
    app[SETTINGS] = settings if settings is not None else Settings()
    app[PDF_SLOTS] = asyncio.Semaphore(MAX_PDF_AT_ONCE)
    r = app.router
    r.add_get("/healthz", _health)
    r.add_get("/v1/openapi.json", _openapi)
    r.add_get("/v1/patients", _clinics_only(_list_patients))
    r.add_post("/v1/patients", _clinics_only(_create_patient))
    r.add_get("/v1/patients/{patient_id}", _clinics_only(_get_patient))
    r.add_patch("/v1/patients/{patient_id}", _clinics_only(_update_patient))
    r.add_get("/v1/patients/{patient_id}/prescriptions", _clinics_only(_list_prescriptions))
    r.add_post("/v1/patients/{patient_id}/prescriptions", _clinics_only(_create_prescription))
    r.add_get("/v1/patients/{patient_id}/sessions", _clinics_only(_patient_sessions))
    r.add_get("/v1/patients/{patient_id}/report", _clinics_only(_report))
    r.add_get("/v1/patients/{patient_id}/report.pdf", _clinics_only(_report_pdf))
    prescription = r"/v1/prescriptions/{prescription_id:\d{1,18}}"
    r.add_get(prescription, _clinics_only(_get_prescription))
    r.add_patch(prescription, _clinics_only(_update_prescription))
    r.add_get("/v1/sessions", _clinics_only(_clinic_sessions))
    return app
