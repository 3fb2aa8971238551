"""The InfluxQL gate: what Grafana's data sources may ask InfluxDB (``justwalk influx gate``).

A clinic's read user may read its own database only, and InfluxDB 1.x enforces that for
every statement that reads points. A few metadata statements it does not guard: any
reader sees the text of every running query (``SHOW QUERIES``, where another clinic's
dashboard names one of its pseudonymous patients), every database's continuous queries,
and ``SHOW ... CARDINALITY ON <another database>`` answers with counts (the statement
requires READ only on the databases of its ``FROM``, none when it has no ``FROM``). Grafana
reaches InfluxDB only through this gate (the compose network publishes neither), so no
clinic user can send those.

The gate forwards ``/ping`` and ``/query`` (GET or POST, the user's own credentials,
InfluxDB authenticates and authorises as before) and answers 403 to everything else:
writes, and any query that holds a statement other than ``SELECT`` (without ``INTO``) or a
plain ``SHOW`` of tag values, tag keys, field keys, measurements, series, retention
policies or databases, or that uses a regular expression (the one construct whose lexing
depends on the parser's state; the dashboards use none). Statements are found with a small
scanner that knows InfluxQL's comments, strings and quoted identifiers, so a keyword hidden
in them neither passes nor blocks anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from justwalk.config import Settings

log = logging.getLogger(__name__)

__all__ = ["check_query", "create_gate", "run_gate"]

MAX_QUERY_BYTES = 1024 * 1024
_ALLOWED_SHOW = (
    ("TAG", "VALUES"), ("TAG", "KEYS"), ("FIELD", "KEYS"), ("MEASUREMENTS",), ("SERIES",),
    ("RETENTION", "POLICIES"), ("DATABASES",),
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REGEX_BEFORE = frozenset({"FROM", "SELECT", "DISTINCT", "BY", ",", "(", ";"})
_FORWARDED_HEADERS = ("Authorization", "Content-Type", "Accept", "Accept-Encoding")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    """``word``, ``op`` (any other character or ``=~``/``!~``), ``semicolon``, ``value``
    (string, quoted identifier, number: never a keyword)."""
    text: str


def _tokens(q: str) -> list[_Token]:
    """InfluxQL's tokens, enough to find statements and keywords; ValueError if unclosed."""
    out: list[_Token] = []
    i, n = 0, len(q)
    while i < n:
        c = q[i]
        if c.isspace():
            i += 1
        elif q.startswith("--", i):
            end = q.find("\n", i)
            i = n if end < 0 else end + 1
        elif q.startswith("/*", i):
            end = q.find("*/", i + 2)
            if end < 0:
                raise ValueError("unclosed comment")
            i = end + 2
        elif c in "'\"":
            j = i + 1
            while j < n and q[j] != c:
                j += 2 if q[j] == "\\" else 1
            if j >= n:
                raise ValueError("unclosed string or identifier")
            out.append(_Token("value", q[i:j + 1]))
            i = j + 1
        elif c == ";":
            out.append(_Token("semicolon", c))
            i += 1
        elif (m := _WORD.match(q, i)) is not None:
            out.append(_Token("word", m.group().upper()))
            i = m.end()
        elif c.isdigit() or c == ".":
            j = i + 1
            while j < n and (q[j].isalnum() or q[j] == "."):
                j += 1
            out.append(_Token("value", q[i:j]))
            i = j
        elif q.startswith(("=~", "!~"), i):
            out.append(_Token("op", q[i:i + 2]))
            i += 2
        else:
            out.append(_Token("op", c))
            i += 1
    return out


def check_query(q: str) -> str | None:
    """Why the gate refuses InfluxQL ``q``, or None when it may pass."""
    try:
        tokens = _tokens(q)
    except ValueError as exc:
        return str(exc)
    statements: list[list[_Token]] = [[]]
    for t in tokens:
        if t.kind == "semicolon":
            statements.append([])
        else:
            statements[-1].append(t)
    previous: _Token | None = None
    for t in tokens:
        # Where InfluxQL's parser reads a /regex/ (its lexing then differs from ours): after
        # =~ and !~, and where a measurement, field or tag may be one. A "/" elsewhere divides.
        if t.kind == "op" and (t.text in ("=~", "!~") or (t.text == "/" and (
                previous is None or previous.text in _REGEX_BEFORE))):
            return "regular expressions are not allowed through the gate"
        previous = t
    for statement in statements:
        if not statement:
            continue
        words = [t.text for t in statement if t.kind == "word"]
        head = words[:3]
        if "CARDINALITY" in words:
            return "CARDINALITY statements are not allowed (InfluxDB does not check them)"
        if head[:1] == ["SELECT"]:
            if "INTO" in words:
                return "SELECT ... INTO is not allowed"
            continue
        if head[:1] == ["SHOW"] and any(tuple(head[1:1 + len(a)]) == a for a in _ALLOWED_SHOW):
            continue
        return f"{' '.join(head) or 'this'} statements are not allowed through the gate"
    return None


def create_gate(upstream: str, *, timeout_s: float = 60.0) -> web.Application:
    """The gate's application, forwarding what it allows to InfluxDB at ``upstream``."""
    app = web.Application(client_max_size=MAX_QUERY_BYTES)
    state: dict[str, aiohttp.ClientSession] = {}

    async def session() -> aiohttp.ClientSession:
        if "http" not in state:
            state["http"] = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout_s), auto_decompress=False)
        return state["http"]

    async def forward(request: web.Request, body: bytes | None) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k in _FORWARDED_HEADERS}
        try:
            async with (await session()).request(
                    request.method, upstream.rstrip("/") + request.path,
                    params=request.query, data=body, headers=headers,
                    allow_redirects=False) as resp:
                payload = await resp.read()
                out = {k: v for k, v in resp.headers.items()
                       if k in ("Content-Type", "Content-Encoding", "X-Influxdb-Version",
                                "X-Influxdb-Error", "WWW-Authenticate")}
                return web.Response(status=resp.status, body=payload, headers=out)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _refuse(502, f"InfluxDB did not answer: {exc!r}")

    async def ping(request: web.Request) -> web.StreamResponse:
        return await forward(request, None)

    async def query(request: web.Request) -> web.StreamResponse:
        body = await request.read() if request.method == "POST" else b""
        form = await request.post() if request.method == "POST" else {}
        q = str(form.get("q", "")) or request.query.get("q", "")
        if not q:
            return _refuse(400, "missing required parameter \"q\"")
        reason = check_query(q)
        if reason is not None:
            log.warning("refused a query from %s: %s", request.remote, reason)
            return _refuse(403, f"justwalk gate: {reason}")
        return await forward(request, body if request.method == "POST" else None)

    async def other(request: web.Request) -> web.StreamResponse:
        return _refuse(403, f"justwalk gate: {request.method} {request.path} is not allowed")

    async def close(app: web.Application) -> None:
        if "http" in state:
            await state["http"].close()

    app.router.add_route("GET", "/ping", ping)
    app.router.add_route("HEAD", "/ping", ping)
    app.router.add_route("GET", "/query", query)
    app.router.add_route("POST", "/query", query)
    app.router.add_route("*", "/{tail:.*}", other)
    app.on_cleanup.append(close)
    return app


def _refuse(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": message}),
                        content_type="application/json")


async def run_gate(settings: Settings) -> None:
    """``justwalk influx gate``: serve on ``influx_gate_host:port`` until SIGTERM/SIGINT."""
    runner = web.AppRunner(create_gate(settings.influx_url), access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, settings.influx_gate_host, settings.influx_gate_port).start()
        log.info("InfluxQL gate on %s:%d -> %s", settings.influx_gate_host,
                 settings.influx_gate_port, settings.influx_url)
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
