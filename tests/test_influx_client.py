"""sinks.influx against the real InfluxDB 1.x of the local stack (no mocks)."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import AsyncIterator

import pytest

from justwalk.config import Settings
from justwalk.records import GaitWindowRecord, StepRecord
from justwalk.schema import (
    CONTINUOUS_QUERIES,
    MEASUREMENT_GAIT_WINDOW,
    MEASUREMENT_STEP,
    RETENTION_POLICY,
    qualified,
    records_to_lines,
)
from sinks.influx import (
    InfluxClient,
    InfluxDatabaseMissing,
    InfluxQueryError,
    InfluxUnavailable,
    InfluxWriteError,
    quote_ident,
    quote_literal,
    result_rows,
)

pytestmark = pytest.mark.integration

T0_US = 1_700_000_000_000_000  # 2023-11-14, inside the ten-year retention policy

# Ids with the characters line protocol or InfluxQL treat specially. (The wire format only
# admits [A-Za-z0-9_.:-]; a backslash is left out of tags: InfluxDB 1.x keeps the escaping
# backslash of ``\\`` in tag values, so schema.line's escaping doubles it. Fields are fine.)
NASTY = 'pt 1,a=b"c\'d'
NASTY_SESSION = 'sess "1", it\'s a\\b'


def step(
    i: int, *, patient: str = "pt-001", session: str = "sess-1", step_time_s: float | None = 0.5
) -> StepRecord:
    return StepRecord("clinic-a", patient, "dev-001", session, T0_US + i * 500_000, i,
                      step_time_s)


def window(i: int, *, walking: bool = True) -> GaitWindowRecord:
    return GaitWindowRecord(
        "clinic-a", "pt-001", "dev-001", "sess-1", T0_US + i * 5_000_000, 5.0,
        n_steps=9 if walking else 0, walking=walking,
        cadence_spm=108.3 + i / 7 if walking else None,
        mean_step_time_s=0.5540166204986149 if walking else None,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def influx(stack_settings: Settings) -> AsyncIterator[InfluxClient]:
    client = InfluxClient(stack_settings.influx_url, stack_settings.influx_db)
    try:
        await client.ensure_database()
        yield client
        await client.query(f"DROP DATABASE {quote_ident(client.db)}")
    finally:
        await client.close()


async def count(client: InfluxClient, measurement: str, field: str = "session_id") -> int:
    rows = await client.query_rows(
        f"SELECT count({quote_ident(field)}) FROM {quote_ident(measurement)}"
    )
    return int(rows[0]["count"]) if rows else 0


# -- pure helpers ----------------------------------------------------------------------


def test_quoting() -> None:
    assert quote_ident("step") == '"step"'
    assert quote_ident('a"b\\c') == '"a\\"b\\\\c"'
    assert quote_literal("it's") == "'it\\'s'"
    assert quote_literal("a\\b\nc") == "'a\\\\b\\nc'"


def test_result_rows_merges_tags_and_columns() -> None:
    result = {"series": [
        {"name": "m", "tags": {"t": "x"}, "columns": ["time", "v"], "values": [[1, 2], [3, 4]]},
        {"name": "m", "tags": {"t": "y"}, "columns": ["time", "v"], "values": [[5, 6]]},
    ]}
    assert result_rows(result) == [
        {"t": "x", "time": 1, "v": 2}, {"t": "x", "time": 3, "v": 4}, {"t": "y", "time": 5, "v": 6},
    ]
    assert result_rows({"statement_id": 0}) == []


# -- against the server ---------------------------------------------------------------


async def test_ping_and_ensure_database_is_idempotent(influx: InfluxClient) -> None:
    await influx.ping()
    await influx.ensure_database()  # second time: nothing to do, no error
    rows = await influx.query_rows(f"SHOW RETENTION POLICIES ON {quote_ident(influx.db)}")
    raw = next(r for r in rows if r["name"] == RETENTION_POLICY)
    assert raw["default"] is True
    assert raw["duration"] == "87360h0m0s"  # 520w
    assert influx.db in {r["name"] for r in await influx.query_rows("SHOW DATABASES")}


async def test_ensure_database_keeps_an_existing_policy(stack_settings: Settings) -> None:
    db = stack_settings.influx_db + "_rp"
    async with InfluxClient(stack_settings.influx_url, db) as client:
        await client.query(f"CREATE DATABASE {quote_ident(db)}")
        await client.query(
            f"CREATE RETENTION POLICY {quote_ident(RETENTION_POLICY)} ON {quote_ident(db)} "
            "DURATION 1w REPLICATION 1"
        )
        await client.ensure_database()  # exists with other settings: left alone
        rows = await client.query_rows(f"SHOW RETENTION POLICIES ON {quote_ident(db)}")
        assert {r["name"]: r["duration"] for r in rows}[RETENTION_POLICY] == "168h0m0s"
        with pytest.raises(ValueError, match="duration"):
            await client.ensure_database(duration="1 week; DROP DATABASE x")
        await client.query(f"DROP DATABASE {quote_ident(db)}")


async def test_step_round_trip_exact_values_tags_and_timestamps(influx: InfluxClient) -> None:
    records = [step(0, step_time_s=None), step(1, step_time_s=0.1 + 0.2), step(2),
               step(3, patient=NASTY, session=NASTY_SESSION, step_time_s=1e-300)]
    await influx.write_lines(records_to_lines(records))

    rows = await influx.query_rows(
        f"SELECT * FROM {quote_ident(MEASUREMENT_STEP)} GROUP BY * ORDER BY time"
    )
    assert len(rows) == 4
    by_patient_time = {(r["patient_id"], r["time"]): r for r in rows}
    for rec in records:
        row = by_patient_time[(rec.patient_id, rec.t_us * 1000)]
        assert row["clinic_id"] == rec.clinic_id
        assert row["device_id"] == rec.device_id
        assert row["session_id"] == rec.session_id
        assert row["step_index"] == rec.step_index
        assert row["step_time_s"] == rec.step_time_s  # exact float, or absent (None)

    # A WHERE on a tag value with quotes, backslash, comma, space and '='.
    nasty = await influx.query_rows(
        f"SELECT step_index, step_time_s FROM {quote_ident(MEASUREMENT_STEP)} "
        f"WHERE {quote_ident('patient_id')} = {quote_literal(NASTY)}"
    )
    assert [(r["time"], r["step_index"], r["step_time_s"]) for r in nasty] == [
        ((T0_US + 3 * 500_000) * 1000, 3, 1e-300)
    ]
    # The same through server-side bound parameters.
    bound = await influx.query_rows(
        f"SELECT step_index FROM {quote_ident(MEASUREMENT_STEP)} WHERE patient_id = $p",
        params={"p": NASTY},
    )
    assert [r["step_index"] for r in bound] == [3]
    # A string field with quotes and a backslash, matched by a quoted literal.
    by_session = await influx.query_rows(
        f"SELECT step_index, session_id FROM {quote_ident(MEASUREMENT_STEP)} "
        f"WHERE session_id = {quote_literal(NASTY_SESSION)}"
    )
    assert [(r["step_index"], r["session_id"]) for r in by_session] == [(3, NASTY_SESSION)]


async def test_gait_window_round_trip_types(influx: InfluxClient) -> None:
    records = [window(0), window(1, walking=False), window(2)]
    await influx.write_lines(records_to_lines(records))

    field_keys = await influx.query_rows(
        f"SHOW FIELD KEYS FROM {quote_ident(MEASUREMENT_GAIT_WINDOW)}"
    )
    fields = {r["fieldKey"]: r["fieldType"] for r in field_keys}
    assert fields == {"n_steps": "integer", "walking": "boolean", "cadence_spm": "float",
                      "mean_step_time_s": "float", "window_s": "float", "session_id": "string",
                      "n_turns": "integer"}
    rows = await influx.query_rows(
        f"SELECT * FROM {quote_ident(MEASUREMENT_GAIT_WINDOW)} ORDER BY time"
    )
    assert [r["time"] for r in rows] == [r.window_start_us * 1000 for r in records]
    for rec, row in zip(records, rows, strict=True):
        assert row["walking"] is rec.walking
        assert row["n_steps"] == rec.n_steps
        assert row["cadence_spm"] == rec.cadence_spm
        assert row["mean_step_time_s"] == rec.mean_step_time_s
        # InfluxDB 1.x JSON prints whole floats without a fraction: 5.0 comes back as 5.
        assert row["window_s"] == rec.window_s
        assert (row["patient_id"], row["clinic_id"]) == ("pt-001", "clinic-a")

    # Timestamps as RFC 3339 when no epoch is asked for.
    first = await influx.query_rows(
        f"SELECT n_steps FROM {quote_ident(MEASUREMENT_GAIT_WINDOW)} LIMIT 1", epoch=None
    )
    assert first[0]["time"] == "2023-11-14T22:13:20Z"


async def test_replaying_a_batch_is_idempotent(influx: InfluxClient) -> None:
    body = records_to_lines([*(step(i) for i in range(50)), *(window(i) for i in range(5))])
    await influx.write_lines(body)
    assert await count(influx, MEASUREMENT_STEP) == 50
    assert await count(influx, MEASUREMENT_GAIT_WINDOW) == 5
    await influx.write_lines(body)
    assert await count(influx, MEASUREMENT_STEP) == 50
    assert await count(influx, MEASUREMENT_GAIT_WINDOW) == 5


async def test_bad_lines_raise_a_permanent_error_with_the_servers_message(
    influx: InfluxClient,
) -> None:
    good = records_to_lines([step(0)])
    with pytest.raises(InfluxWriteError, match="unable to parse") as info:
        await influx.write_lines(good + "\nthis is not line protocol")
    assert info.value.status == 400
    # InfluxDB 1.x writes the valid lines of a partially bad body.
    assert await count(influx, MEASUREMENT_STEP) == 1

    with pytest.raises(InfluxWriteError, match="field type conflict"):
        await influx.write_lines(f'{MEASUREMENT_STEP},patient_id=x step_index="a" {T0_US}000')
    with pytest.raises(InfluxWriteError, match="retention policy"):
        await influx.write_lines(f"{MEASUREMENT_STEP},patient_id=x step_index=1i 1")


async def test_query_errors_carry_the_servers_message(influx: InfluxClient) -> None:
    with pytest.raises(InfluxQueryError, match="error parsing query"):
        await influx.query("SELEC 1")
    async with InfluxClient(influx.url, influx.db + "_nope") as other:
        with pytest.raises(InfluxQueryError, match="database not found"):
            await other.query("SELECT * FROM step")
    results = await influx.query("SHOW DATABASES; SHOW MEASUREMENTS")
    assert [r["statement_id"] for r in results] == [0, 1]


async def test_missing_database_is_reported_as_fixable(stack_settings: Settings) -> None:
    db = stack_settings.influx_db + "_missing"
    async with InfluxClient(stack_settings.influx_url, db) as client:
        with pytest.raises(InfluxDatabaseMissing, match="database not found"):
            await client.write_lines(records_to_lines([step(0)]))
        await client.ensure_database()
        await client.write_lines(records_to_lines([step(0)]))
        with pytest.raises(InfluxDatabaseMissing, match="retention policy not found"):
            await client.write_lines(records_to_lines([step(0)]), retention_policy="nope")
        await client.query(f"DROP DATABASE {quote_ident(db)}")


async def test_unreachable_server_is_transient() -> None:
    async with InfluxClient(f"http://127.0.0.1:{free_port()}", "x", timeout_s=2) as client:
        with pytest.raises(InfluxUnavailable):
            await client.ping()
        with pytest.raises(InfluxUnavailable):
            await client.write_lines(records_to_lines([step(0)]))
        with pytest.raises(InfluxUnavailable):
            await client.query("SHOW DATABASES")


async def test_tag_values_with_special_characters_are_stored_unaltered(
    influx: InfluxClient,
) -> None:
    from justwalk.schema import line

    odd = {"clinic_id": "a b,c=d\\e", "patient_id": "p 1", "device_id": "d=1"}
    await influx.write_lines(line("odd_tags", odd, {"v": 1.5}, time.time_ns()))
    rows = await influx.query_rows('SELECT "v" FROM "odd_tags" GROUP BY *')
    assert [{k: r[k] for k in odd} for r in rows] == [odd]
    with pytest.raises(ValueError, match="line break"):
        line("odd_tags", {"patient_id": "p\n1"}, {"v": 1.0}, 1)


# -- one database per clinic -----------------------------------------------------------------

RECENT_US = (time.time_ns() // 1000 // 1_000_000 - 3600) * 1_000_000  # inside every policy


def recent(s: StepRecord) -> StepRecord:
    return dataclasses.replace(s, t_us=RECENT_US + s.step_index * 500_000)


async def test_a_per_clinic_client_writes_each_point_to_its_clinics_database(
    stack_settings: Settings,
) -> None:
    from justwalk.schema import clinic_database, line, tags_of_line

    prefix = stack_settings.influx_db
    odd_clinic = "c.1:x-y"  # every character a clinic id may hold
    lines = [records_to_lines([recent(step(0)), dataclasses.replace(
                 window(0), window_start_us=RECENT_US)]),  # clinic-a
             records_to_lines([dataclasses.replace(recent(step(1)), clinic_id="clinic-b")]),
             line(MEASUREMENT_STEP, {"clinic_id": odd_clinic, "patient_id": "pt 9"},
                  {"step_index": 1}, RECENT_US * 1000)]
    assert tags_of_line(lines[2]) == {"clinic_id": odd_clinic, "patient_id": "pt 9"}
    async with InfluxClient(stack_settings.influx_url, prefix, per_clinic=True) as writer:
        await writer.ensure_database()  # nothing to create yet: it only pings
        await writer.write_lines("\n".join(lines), retention_policy=None)
        assert prefix not in {r["name"] for r in await writer.query_rows("SHOW DATABASES")}
    expected = {"clinic-a": [("step", "pt-001"), ("gait_window", "pt-001")],
                "clinic-b": [("step", "pt-001")], odd_clinic: [("step", "pt 9")]}
    for clinic, points in expected.items():
        db = clinic_database(prefix, clinic)
        async with InfluxClient(stack_settings.influx_url, db) as reader:
            got = []
            for m in (MEASUREMENT_STEP, MEASUREMENT_GAIT_WINDOW):
                rows = await reader.query_rows(f"SELECT * FROM {qualified(m)}")
                got += [(m, r["patient_id"]) for r in rows if r["clinic_id"] == clinic]
                assert all(r["clinic_id"] == clinic for r in rows)
            assert sorted(got) == sorted(points), clinic
            # prepared like any database: the schema's policies and rollups
            rps = {r["name"] for r in await reader.query_rows(
                f"SHOW RETENTION POLICIES ON {quote_ident(db)}")}
            assert {"raw", "windows", "longterm"} <= rps
            cqs = (await reader.query("SHOW CONTINUOUS QUERIES"))[0]["series"]
            assert len(next(s for s in cqs if s["name"] == db)["values"]) == len(
                CONTINUOUS_QUERIES)
            await reader.query(f"DROP DATABASE {quote_ident(db)}")


async def test_a_dropped_clinic_database_is_made_again_after_ensure_database(
    stack_settings: Settings,
) -> None:
    from justwalk.schema import clinic_database

    db = clinic_database(stack_settings.influx_db, "clinic-a")
    async with InfluxClient(stack_settings.influx_url, stack_settings.influx_db,
                            per_clinic=True) as writer:
        await writer.write_lines(records_to_lines([recent(step(0))]), retention_policy=None)
        await writer.query(f"DROP DATABASE {quote_ident(db)}")
        with pytest.raises(InfluxDatabaseMissing):  # the sink: ensure_database, then retry
            await writer.write_lines(records_to_lines([recent(step(1))]),
                                     retention_policy=None)
        await writer.ensure_database()
        await writer.write_lines(records_to_lines([recent(step(1))]), retention_policy=None)
        rows = await writer.query_rows(f"SELECT * FROM {qualified(MEASUREMENT_STEP)}", db=db)
        assert [r["step_index"] for r in rows] == [1]
        # a reader polling a clinic that has no data yet
        other = clinic_database(stack_settings.influx_db, "clinic-none")
        assert await writer.query_rows("SELECT * FROM step", db=other, missing_ok=True) == []
        with pytest.raises(InfluxQueryError, match="database not found"):
            await writer.query_rows("SELECT * FROM step", db=other)
        await writer.query(f"DROP DATABASE {quote_ident(db)}")


def test_clinic_database_names() -> None:
    from justwalk.schema import clinic_database

    assert clinic_database("justwalk", "clinic-a") == "justwalk_clinic-a"
    with pytest.raises(ValueError, match="clinic id"):
        clinic_database("justwalk", "")
