"""The InfluxQL gate (sinks.influx_gate) in front of the real, auth-enabled InfluxDB.

Through the gate a clinic's read user runs the dashboards' queries as before, and InfluxDB
still refuses it another clinic's database; what InfluxDB 1.x does let it see (running
queries of other users, every database's CQs, cardinalities of another database) and every
write stop at the gate. The same statements sent to InfluxDB directly show why it is there.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from justwalk import schema
from justwalk.config import Settings
from justwalk.localstack import LocalStack
from sinks.influx import InfluxAuthError, InfluxClient, quote_ident
from sinks.influx_access import ReadUser, setup_clinics
from sinks.influx_gate import check_query, create_gate
from tests.test_dashboards import QUERIES

A, B = "clinic-a", "clinic-b"

LEAKY = [
    "SHOW QUERIES",
    "SHOW CONTINUOUS QUERIES",
    'SHOW TAG VALUES EXACT CARDINALITY ON "x" WITH KEY = "patient_id"',
    'SHOW TAG VALUES CARDINALITY WITH KEY = "patient_id"',
    'SHOW SERIES EXACT CARDINALITY ON "x"',
    "SHOW MEASUREMENT EXACT CARDINALITY",
    "SHOW TAG KEY CARDINALITY",
    "SHOW FIELD KEY CARDINALITY",
]


# -- which statements pass ---------------------------------------------------------------------


def test_every_provisioned_dashboard_and_alert_query_passes() -> None:
    assert QUERIES
    for q in QUERIES:
        assert check_query(q.text) is None, (q.where, q.text, check_query(q.text))


@pytest.mark.parametrize("q", [
    *LEAKY,
    "SHOW USERS", "SHOW GRANTS FOR \"u\"", "SHOW STATS", "SHOW DIAGNOSTICS", "SHOW SHARDS",
    "KILL QUERY 3", "DROP DATABASE \"x\"", "CREATE USER \"u\" WITH PASSWORD 'p'",
    "GRANT READ ON \"x\" TO \"u\"", "DELETE FROM \"m\"", "EXPLAIN SELECT * FROM m",
    'SELECT * INTO "x".."m" FROM "m"',
    # a refused statement after an allowed one, however it is dressed
    "SELECT * FROM m; SHOW QUERIES",
    "SELECT * FROM m -- comment\n; show queries",
    "SELECT * FROM m /* ; */ ; SHOW QUERIES",
    'SELECT "a;b" FROM m; SHOW QUERIES',
    "SELECT * FROM m WHERE t = 'it''s'; SHOW QUERIES",
    # regular expressions: lexed by InfluxDB's parser state, so never passed
    "SELECT * FROM m WHERE t =~ /a/", "SELECT * FROM /m/", "SELECT /f/ FROM m",
    "SELECT * FROM m GROUP BY /t/", "SHOW TAG VALUES WITH KEY =~ /./",
    "SELECT * FROM m WHERE t = 'x", "SELECT 1 /* open",  # unclosed
    "", "   ",
])
def test_refused(q: str) -> None:
    reason = check_query(q) if q.strip() else "empty"
    assert reason is not None, q


@pytest.mark.parametrize("q", [
    'SELECT mean("cadence_spm") / 60 AS "x" FROM "windows"."gait_window" WHERE time > now() - 1h',
    "SELECT * FROM m WHERE s = 'SHOW QUERIES; DROP DATABASE x' -- or a comment: SHOW QUERIES",
    'SELECT "show" FROM "cardinality"',  # keywords as quoted identifiers
    'SHOW TAG VALUES FROM "windows"."gait_window" WITH KEY = "patient_id"',
    "SHOW MEASUREMENTS; SHOW TAG KEYS; SHOW FIELD KEYS; SHOW SERIES; SHOW DATABASES",
    'SHOW RETENTION POLICIES ON "justwalk_clinic-a";',
    "SELECT * FROM m WHERE t = 'a\\'; SHOW QUERIES; '",  # an escaped quote: one string
])
def test_passed(q: str) -> None:
    assert check_query(q) is None, check_query(q)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- against InfluxDB --------------------------------------------------------------------------


@pytest.fixture
async def env(auth_stack: LocalStack) -> AsyncIterator[tuple[str, Settings, dict[str, ReadUser]]]:
    settings = auth_stack.settings(Settings()).replace(
        influx_db=f"gate_{uuid.uuid4().hex[:8]}")
    suffix = settings.influx_db.removeprefix("gate_")
    readers = {c: ReadUser(c, f"gate-{c}-{suffix}", f"pw-{uuid.uuid4().hex}") for c in (A, B)}
    await setup_clinics(settings.influx_url, settings.influx_db,
                        admin_user=settings.influx_username,
                        admin_password=settings.influx_password, readers=list(readers.values()))
    t_us = time.time_ns() // 1000 - 60_000_000
    async with InfluxClient(settings.influx_url, settings.influx_db, per_clinic=True,
                            username=settings.influx_username,
                            password=settings.influx_password) as writer:
        await writer.write_lines("\n".join(
            schema.point(schema.MEASUREMENT_ALERT,
                         {"clinic_id": c, "patient_id": f"pt-{c}", "device_id": "d"},
                         {"alert_id": f"al-{c}", "alert_type": "fall"}, t_us)
            for c in (A, B)), retention_policy=None)
    runner = web.AppRunner(create_gate(settings.influx_url))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", settings, readers
    finally:
        await runner.cleanup()
        async with InfluxClient(settings.influx_url, settings.influx_db,
                                username=settings.influx_username,
                                password=settings.influx_password) as admin:
            for c, r in readers.items():
                db = schema.clinic_database(settings.influx_db, c)
                await admin.query(f"DROP DATABASE {quote_ident(db)}")
                await admin.query(f"DROP USER {quote_ident(r.user)}")


@pytest.mark.integration
async def test_reads_pass_with_the_users_own_rights_and_the_rest_stops_at_the_gate(
        env: tuple[str, Settings, dict[str, ReadUser]]) -> None:
    gate, settings, readers = env
    db_a, db_b = (schema.clinic_database(settings.influx_db, c) for c in (A, B))
    alert = schema.qualified(schema.MEASUREMENT_ALERT)
    via_gate = InfluxClient(gate, db_a, username=readers[A].user, password=readers[A].password)
    direct = InfluxClient(settings.influx_url, db_a, username=readers[A].user,
                          password=readers[A].password)
    async with via_gate, direct:
        await via_gate.ping()
        rows = await via_gate.query_rows(f'SELECT "alert_id", "patient_id" FROM {alert}')
        assert [(r["patient_id"], r["alert_id"]) for r in rows] == [(f"pt-{A}", f"al-{A}")]
        # InfluxDB still decides what the user may read: another clinic's database is refused
        with pytest.raises(InfluxAuthError, match="requires READ"):
            await via_gate.query(f"SELECT * FROM {quote_ident(db_b)}.{alert}")
        for q in LEAKY:
            q = q.replace('"x"', quote_ident(db_b))
            with pytest.raises(InfluxAuthError, match="justwalk gate") as refused:
                await via_gate.query(q)
            assert refused.value.status == 403
        # ... which InfluxDB itself answers, for a user with READ on one database only
        leaked = await direct.query(
            f'SHOW TAG VALUES EXACT CARDINALITY ON {quote_ident(db_b)} WITH KEY = "patient_id"')
        assert leaked[0]["series"][0]["values"] == [[1]]  # clinic B has one patient
        running = await direct.query("SHOW QUERIES")
        assert running[0]["series"][0]["columns"][:2] == ["qid", "query"]

    async with aiohttp.ClientSession() as http:
        auth = basic(readers[A].user, readers[A].password)
        # writes never pass (an admin's neither)
        admin_auth = basic(settings.influx_username, settings.influx_password)
        async with http.post(f"{gate}/write", params={"db": db_a},
                             data=b"m,clinic_id=x v=1", headers={"Authorization": admin_auth}
                             ) as resp:
            assert resp.status == 403 and "justwalk gate" in (await resp.json())["error"]
        # GET queries as Grafana's GET mode sends them; the user's credentials are checked
        async with http.get(f"{gate}/query", params={"db": db_a, "q": "SHOW MEASUREMENTS"},
                            headers={"Authorization": auth}) as resp:
            assert resp.status == 200, await resp.text()
            assert json.loads(await resp.text())["results"][0]["series"]
        async with http.get(f"{gate}/query", params={"db": db_a, "q": "SHOW MEASUREMENTS"}
                            ) as resp:
            assert resp.status == 401  # no credentials: InfluxDB's answer
        async with http.get(f"{gate}/query", params={"db": db_a}) as resp:
            assert resp.status == 400
        async with http.get(f"{gate}/debug/vars") as resp:
            assert resp.status == 403
