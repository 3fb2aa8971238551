"""A small asyncio client for the InfluxDB 1.x HTTP API (``/ping``, ``/write``, ``/query``).

The ``influxdb-client`` package only speaks ``/api/v2``; the v1 API used here is served by
InfluxDB 1.x and, as a compatibility layer, by 2.x and 3.x.

Errors are split by what the caller should do about them:

* ``InfluxWriteError``: the server rejected the data itself (HTTP 400 bad line, field type
  conflict, point outside the retention policy; 413 body too large). Retrying the same
  body cannot succeed; split it and drop the bad points.
* ``InfluxUnavailable``: connection refused, timeout, 5xx, auth failures. Retry later.
  ``InfluxDatabaseMissing`` (a subclass) means the database or retention policy is gone;
  ``ensure_database`` fixes it. ``InfluxAuthError`` (a subclass): HTTP 401 (unknown user or
  wrong password) or 403 (the user lacks the privilege, e.g. a clinic's read user on
  another clinic's database).
* ``InfluxQueryError``: a query the server could not parse or run.

One client talks to one database (``db``), except a client made with ``per_clinic=True``:
there ``db`` is the prefix of the clinics' databases and ``write_lines`` sends every line
to the database of its ``clinic_id`` tag (``justwalk.schema.clinic_database``), preparing
each database (retention policies, continuous queries) the first time it writes there.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import aiohttp

from justwalk.schema import (
    CONTINUOUS_QUERIES,
    RETENTION_DURATION,
    RETENTION_POLICIES,
    RETENTION_POLICY,
    clinic_database,
    clinic_of_line,
    measurement_of_line,
    retention_policy_for,
)

log = logging.getLogger(__name__)

__all__ = [
    "InfluxAuthError",
    "InfluxClient",
    "InfluxDatabaseMissing",
    "InfluxError",
    "InfluxQueryError",
    "InfluxUnavailable",
    "InfluxWriteError",
    "quote_ident",
    "quote_literal",
    "result_rows",
]

# InfluxQL duration literal (``520w``, ``1h30m``) or INF.
_DURATION_RE = re.compile(r"^(?:INF|inf|(?:\d+(?:ns|u|µ|ms|s|m|h|d|w))+)$")


class InfluxError(Exception):
    """Base class of the errors raised by ``InfluxClient``."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        """HTTP status, or None when no response arrived."""


class InfluxWriteError(InfluxError):
    """The server rejected (part of) a write permanently; ``message`` is its explanation."""


class InfluxUnavailable(InfluxError):
    """The server could not be reached or failed transiently; retrying may succeed."""


class InfluxDatabaseMissing(InfluxUnavailable):
    """The target database or retention policy does not exist (``ensure_database`` fixes it)."""


class InfluxAuthError(InfluxUnavailable):
    """HTTP 401 (unknown user, wrong password) or 403 (privilege missing for this database)."""


class InfluxQueryError(InfluxError):
    """A query failed: parse error, or an error reported for one of its statements."""


def quote_ident(name: str) -> str:
    """An InfluxQL identifier (database, measurement, tag or field name) in double quotes."""
    return '"' + _escape_quoted(name, '"') + '"'


def quote_literal(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + _escape_quoted(value, "'") + "'"


def _escape_quoted(s: str, quote: str) -> str:
    # The InfluxQL scanner accepts exactly these escapes in quoted strings and identifiers,
    # and rejects a raw newline.
    return s.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")


def result_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flatten one statement result into rows: a dict of the series tags plus its columns.

    With ``GROUP BY`` the tags are per series; without it, tag keys appear as columns.
    """
    rows: list[dict[str, Any]] = []
    for series in result.get("series", ()):
        tags = series.get("tags") or {}
        columns = series["columns"]
        for values in series.get("values", ()):
            rows.append({**tags, **dict(zip(columns, values, strict=True))})
    return rows


class InfluxClient:
    """InfluxDB 1.x HTTP API client. The aiohttp session is created on first use.

    ``per_clinic``: ``db`` is the prefix of the clinics' databases and every written line
    goes to its clinic's database (see the module docstring). ``query`` still runs in
    ``db`` itself; read a clinic with a client for ``clinic_database(prefix, clinic)``.
    """

    def __init__(
        self,
        url: str,
        db: str,
        *,
        username: str = "",
        password: str = "",
        timeout_s: float = 10,
        per_clinic: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.db = db
        self.username = username
        self.password = password
        self.timeout_s = timeout_s
        self.per_clinic = per_clinic
        self._session: aiohttp.ClientSession | None = None
        # per_clinic: databases prepared since the last ensure_database(), and how.
        self._prepared: set[str] = set()
        self._prepare_with = (RETENTION_POLICY, RETENTION_DURATION)

    def __repr__(self) -> str:
        mode = ", per_clinic=True" if self.per_clinic else ""
        return f"InfluxClient({self.url!r}, {self.db!r}{mode})"

    async def __aenter__(self) -> InfluxClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {}
            if self.username:  # HTTP basic auth (RFC 7617), as InfluxDB 1.x takes it
                token = f"{self.username}:{self.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session (a later call opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str],
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str]:
        try:
            async with self._http().request(
                method, self.url + path, params=params, data=data, headers=headers
            ) as resp:
                return resp.status, await resp.text()
        except TimeoutError as exc:
            raise InfluxUnavailable(
                f"{method} {self.url}{path}: no answer within {self.timeout_s} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise InfluxUnavailable(f"{method} {self.url}{path}: {exc!r}") from exc

    async def ping(self) -> None:
        """Check the server answers; raise ``InfluxUnavailable`` if not."""
        status, text = await self._request("GET", "/ping", params={})
        if status != 204:
            raise InfluxUnavailable(f"ping: HTTP {status} {_error_text(text)}", status=status)

    async def write_lines(
        self, body: str, *, retention_policy: str | None = RETENTION_POLICY
    ) -> None:
        """Write line protocol (nanosecond timestamps) into ``db``/``retention_policy``.

        ``retention_policy=None`` writes each line to the policy the schema assigns its
        measurement (``justwalk.schema.retention_policy_for``; measurements the schema does
        not know go to the default policy), one request per policy.

        A ``per_clinic`` client writes each line to its clinic's database instead of
        ``db``; a line without a ``clinic_id`` tag belongs to no clinic and is refused
        (``InfluxWriteError``) before anything is sent.

        Raises ``InfluxWriteError`` when the server rejects the data (nothing to gain by
        retrying the same body; InfluxDB 1.x has still written the valid lines), and
        ``InfluxUnavailable`` when it should be retried.
        """
        if not body:
            return
        if self.per_clinic:
            await self._write_per_clinic(body, retention_policy)
            return
        await self._write_db(self.db, body, retention_policy)

    async def _write_per_clinic(self, body: str, retention_policy: str | None) -> None:
        by_db: dict[str, list[str]] = {}
        for text in body.splitlines():
            if not text:
                continue
            clinic = clinic_of_line(text)
            if clinic is None:
                raise InfluxWriteError(
                    f"point without a clinic_id tag belongs to no clinic's database: "
                    f"{text[:200]}")
            by_db.setdefault(clinic_database(self.db, clinic), []).append(text)
        for db, lines in by_db.items():
            if db not in self._prepared:
                await self._prepare(db)
            try:
                await self._write_db(db, "\n".join(lines), retention_policy)
            except InfluxDatabaseMissing:
                self._prepared.discard(db)
                raise

    async def _prepare(self, db: str) -> None:
        """Create a clinic's database, its policies and CQs, once per ensure_database()."""
        rp, duration = self._prepare_with
        try:
            if db not in {r["name"] for r in await self.query_rows("SHOW DATABASES")}:
                # Normally made beforehand (justwalk influx setup), with its read user. Made
                # now, its rollup CQs run at once, on whatever this first write brings: the
                # rollups of the data so far stay partial until their next run (30 min).
                log.warning("InfluxDB database %s did not exist: creating it; run `justwalk "
                            "influx setup` to give its clinic a read user", db)
            await self._ensure(db, rp, duration)
        except (InfluxQueryError, InfluxAuthError) as exc:
            # e.g. a writer without admin rights: the database may well exist already
            # (``justwalk influx setup`` creates every clinic's); the write will tell.
            log.warning("could not prepare InfluxDB database %s (%s); assuming it exists",
                        db, exc.message)
        self._prepared.add(db)

    async def _write_db(self, db: str, body: str, retention_policy: str | None) -> None:
        if retention_policy is None:
            groups: dict[str, list[str]] = {}
            for text in body.splitlines():
                if not text:
                    continue
                try:
                    rp = retention_policy_for(measurement_of_line(text))
                except KeyError:
                    rp = ""
                groups.setdefault(rp, []).append(text)
            for rp, lines in groups.items():
                await self._write_db(db, "\n".join(lines), rp)
            return
        params = {"db": db, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        status, text = await self._request(
            "POST",
            "/write",
            params=params,
            data=body.encode(),
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        if status in (200, 204):
            return
        message = _error_text(text)
        if status in (400, 413):
            raise InfluxWriteError(message, status=status)
        if status in (401, 403):
            raise InfluxAuthError(f"write to {db}: HTTP {status} {message}", status=status)
        if (status == 404 and "database not found" in message) or (
            "retention policy not found" in message
        ):
            raise InfluxDatabaseMissing(message, status=status)
        raise InfluxUnavailable(f"write: HTTP {status} {message}", status=status)

    async def query(
        self,
        q: str,
        *,
        epoch: str | None = "ns",
        params: Mapping[str, Any] | None = None,
        db: str | None = None,
    ) -> list[dict[str, Any]]:
        """Run InfluxQL in ``db`` (the client's unless given); one result dict per statement.

        Timestamps come back as integers in unit ``epoch`` (None: RFC 3339 strings).
        ``params`` binds ``$name`` placeholders server-side. Raises ``InfluxQueryError``
        with the server's message if the query or any statement fails, ``InfluxAuthError``
        when the user may not run it.
        """
        form: dict[str, str] = {"q": q}
        if params:
            form["params"] = json.dumps(dict(params))
        query_params = {"db": self.db if db is None else db}
        if epoch:
            query_params["epoch"] = epoch
        # POST: accepted for every statement (GET refuses CREATE/DROP/...), and no URL limit.
        status, text = await self._request("POST", "/query", params=query_params, data=form)
        if status in (401, 403):
            raise InfluxAuthError(f"query: HTTP {status} {_error_text(text)}", status=status)
        if status >= 500:
            raise InfluxUnavailable(f"query: HTTP {status} {_error_text(text)}", status=status)
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InfluxQueryError(
                f"query: HTTP {status}, not JSON: {text[:200]!r}", status=status
            ) from exc
        if "error" in payload:
            raise InfluxQueryError(f"{payload['error']} (query: {q})", status=status)
        if status != 200:
            raise InfluxQueryError(f"query: HTTP {status} {text[:200]!r}", status=status)
        results: list[dict[str, Any]] = payload.get("results", [])
        for result in results:
            if "error" in result:
                raise InfluxQueryError(
                    f"{result['error']} (statement {result.get('statement_id')} of: {q})",
                    status=status,
                )
            if result.get("partial"):
                log.warning("InfluxDB returned a truncated result (max-row-limit) for %s", q)
        return results

    async def query_rows(
        self, q: str, *, epoch: str | None = "ns", params: Mapping[str, Any] | None = None,
        db: str | None = None, missing_ok: bool = False,
    ) -> list[dict[str, Any]]:
        """Rows of a single-statement query (see ``result_rows``).

        ``missing_ok``: a database or retention policy that does not exist (yet) reads as no
        rows; a clinic's database and its policies are made when the sink first writes one of
        its points.
        """
        try:
            results = await self.query(q, epoch=epoch, params=params, db=db)
        except InfluxQueryError as exc:
            if missing_ok and exc.message.startswith(("database not found",
                                                      "retention policy not found")):
                return []
            raise
        return [row for result in results for row in result_rows(result)]

    async def ensure_database(
        self,
        retention_policy: str = RETENTION_POLICY,
        duration: str = RETENTION_DURATION,
    ) -> None:
        """Create ``db``, the schema's retention policies and its continuous queries.

        ``retention_policy`` (the schema's default unless told otherwise) is created as the
        database default. Existing retention policies are left as the operator configured
        them. Continuous queries are code: one whose definition changed is replaced.

        A ``per_clinic`` client does this for each clinic's database the first time it
        writes there (after this call: again, e.g. when a database was dropped); here it
        only checks that the server answers (``InfluxUnavailable`` if not).
        """
        if not _DURATION_RE.match(duration):
            raise ValueError(f"not an InfluxQL duration: {duration!r}")
        if self.per_clinic:
            self._prepare_with = (retention_policy, duration)
            self._prepared.clear()
            await self.ping()
            return
        await self._ensure(self.db, retention_policy, duration)

    async def _ensure(self, database: str, retention_policy: str, duration: str) -> None:
        db = quote_ident(database)
        await self.query(f"CREATE DATABASE {db}", db=database)  # no-op if it exists
        policies = {
            row["name"]: row
            for row in await self.query_rows(f"SHOW RETENTION POLICIES ON {db}", db=database)
        }
        shards = {rp.name: rp.shard_duration for rp in RETENTION_POLICIES}
        wanted = [(retention_policy, duration, shards.get(retention_policy, ""), True)]
        wanted += [(rp.name, rp.duration, rp.shard_duration, False)
                   for rp in RETENTION_POLICIES if rp.name != retention_policy]
        for name, rp_duration, shard, default in wanted:
            existing = policies.get(name)
            if existing is None:
                await self._create_retention_policy(database, name, rp_duration, shard,
                                                    default=default)
            elif default and not existing.get("default"):
                log.info("InfluxDB %s: retention policy %s exists but is not the default",
                         database, name)
        await self.ensure_continuous_queries(database)

    async def _create_retention_policy(
        self, database: str, name: str, duration: str, shard: str, *, default: bool
    ) -> None:
        shard_part = f" SHARD DURATION {shard}" if shard else ""
        try:
            await self.query(
                f"CREATE RETENTION POLICY {quote_ident(name)} ON {quote_ident(database)} "
                f"DURATION {duration} REPLICATION 1{shard_part}{' DEFAULT' if default else ''}",
                db=database,
            )
        except InfluxQueryError as exc:
            # Another process created it between SHOW and CREATE, with other settings.
            if "already exists" not in exc.message:
                raise
        log.info("InfluxDB %s: retention policy %s (%s) created%s",
                 database, name, duration, " as default" if default else "")

    async def ensure_continuous_queries(self, database: str | None = None) -> None:
        """Create the schema's continuous queries; replace any whose definition changed.

        In ``database``, the client's ``db`` unless given.
        """
        database = self.db if database is None else database
        for cq in CONTINUOUS_QUERIES:
            statement = cq.create(database)
            try:
                await self.query(statement, db=database)  # an identical CQ is a no-op
            except InfluxQueryError as exc:
                if "already exists" not in exc.message:
                    raise
                await self.query(
                    f"DROP CONTINUOUS QUERY {quote_ident(cq.name)} ON {quote_ident(database)}",
                    db=database)
                await self.query(statement, db=database)
                log.info("InfluxDB %s: continuous query %s replaced", database, cq.name)


def _error_text(text: str) -> str:
    """The ``error`` of an InfluxDB JSON error body, else the body itself (shortened)."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return text.strip()[:500]
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return text.strip()[:500]
