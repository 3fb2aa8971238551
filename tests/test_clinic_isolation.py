"""Clinic isolation, enforced: every forbidden read is tried and refused, own reads work.

Against the real InfluxDB with authentication on (``auth_stack``), the real gateway,
processor and sink, and the real alert service with two clinics' webhook receivers:

- InfluxDB: clinic A's read user (made by ``justwalk influx setup``'s code) reads clinic A's
  database, and is refused clinic B's by every route InfluxQL offers (the ``db`` parameter,
  a qualified ``FROM``, a subquery, ``SHOW ...``, ``SELECT ... INTO``, writes); an extra
  grant or an admin flag given by hand is taken away by the next setup. (The metadata
  InfluxDB 1.x does not guard is stopped by the gate Grafana reads through:
  tests/test_influx_gate.py.)
- Pipeline: devices of two clinics stream through the gateway; clinic A's device claiming
  clinic B in its chunks, and claiming clinic B's patient, never puts a point into clinic
  B's database (the patient claim is refused on both HTTP endpoints).
- Alerts: each clinic's webhook receives its own clinic's alerts only; a delivery of
  another clinic's alert is refused by the service and by a clinic-bound receiver; a
  channels file giving one webhook to two clinics is refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from ingest.registry import provision
from justwalk import schema
from justwalk.alert_receiver import AlertReceiver, channels_for
from justwalk.config import Settings
from justwalk.device_protocol import (
    STREAM_PATH,
    UPLOAD_PATH,
    DeviceCredential,
    auth_headers,
)
from justwalk.kafka_topics import ensure_topics
from justwalk.localstack import LocalStack
from justwalk.pipeline import Pipeline
from justwalk.records import AlertRecord
from justwalk.simulator.device import make_chunks
from justwalk.simulator.gait_model import GaitProfile
from justwalk.simulator.run import prepare_patients, simulation_start_us
from justwalk.wire import encode_chunk, frame_upload
from sinks.alerts import AlertService, ChannelConfigError, Outbox, parse_channels
from sinks.alerts.messages import alert_body, dump_body
from sinks.alerts.webhook import signature_headers
from sinks.influx import (
    InfluxAuthError,
    InfluxClient,
    InfluxWriteError,
    quote_ident,
    quote_literal,
)
from sinks.influx_access import ReadUser, ensure_read_user, setup_clinics

pytestmark = pytest.mark.integration

A, B = "clinic-a", "clinic-b"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def settings(auth_stack: LocalStack, tmp_path: Path) -> Settings:
    """The auth stack (admin credentials in it), names of this test's own."""
    suffix = uuid.uuid4().hex[:8]
    defaults = Settings()
    topics = {f.name: f"{getattr(defaults, f.name)}.{suffix}"
              for f in dataclasses.fields(Settings)
              if f.name.startswith("topic_") and f.name != "topic_partitions"}
    return auth_stack.settings(defaults).replace(
        **topics, topic_partitions=2, influx_db=f"iso_{suffix}",
        processor_group=f"proc-{suffix}", sink_group=f"sink-{suffix}",
        alert_group=f"alerts-{suffix}", alert_outbox=tmp_path / "outbox.sqlite3",
        kafka_session_timeout_s=6.0, kafka_heartbeat_interval_s=0.5,
        kafka_rebalance_timeout_s=3.0)


@dataclasses.dataclass
class Clinics:
    """Two clinics set up as production does; readers as Grafana's data sources are."""

    settings: Settings
    readers: dict[str, ReadUser]

    def db(self, clinic: str) -> str:
        return schema.clinic_database(self.settings.influx_db, clinic)

    def admin(self, db: str | None = None, **kw: Any) -> InfluxClient:
        s = self.settings
        return InfluxClient(s.influx_url, db or s.influx_db, username=s.influx_username,
                            password=s.influx_password, **kw)

    def reader(self, clinic: str, *, db: str | None = None) -> InfluxClient:
        r = self.readers[clinic]
        return InfluxClient(self.settings.influx_url, db or self.db(clinic), username=r.user,
                            password=r.password)


@pytest.fixture
async def clinics(settings: Settings) -> AsyncIterator[Clinics]:
    suffix = settings.influx_db.removeprefix("iso_")
    readers = {c: ReadUser(c, f"read-{c}-{suffix}", f"pw-{c}-{uuid.uuid4().hex}")
               for c in (A, B)}
    await setup_clinics(settings.influx_url, settings.influx_db,
                        admin_user=settings.influx_username,
                        admin_password=settings.influx_password, readers=list(readers.values()))
    env = Clinics(settings, readers)
    yield env
    async with env.admin() as admin:
        for c, r in readers.items():
            await admin.query(f"DROP DATABASE {quote_ident(env.db(c))}")
            await admin.query(f"DROP USER {quote_ident(r.user)}")


def point(clinic: str, patient: str, t_us: int, steps: int = 9) -> str:
    tags = {"clinic_id": clinic, "patient_id": patient, "device_id": f"dev-{patient}"}
    return schema.point(schema.MEASUREMENT_GAIT_WINDOW, tags,
                        {"session_id": "s1", "window_s": 5.0, "n_steps": steps,
                         "walking": True, "cadence_spm": 108.0}, t_us)


def now_us() -> int:
    return time.time_ns() // 1000


# -- InfluxDB --------------------------------------------------------------------------------


async def test_each_clinics_read_user_reads_its_own_database_and_nothing_else(
        clinics: Clinics) -> None:
    t = now_us() - 60_000_000
    async with clinics.admin(per_clinic=True) as writer:  # as the sink writes
        await writer.ensure_database()
        await writer.write_lines("\n".join([point(A, "pt-a1", t), point(B, "pt-b1", t),
                                            point(A, "pt-a2", t + 5_000_000)]),
                                 retention_policy=None)
    win = schema.qualified(schema.MEASUREMENT_GAIT_WINDOW)
    db_a, db_b = clinics.db(A), clinics.db(B)
    async with clinics.reader(A) as a, clinics.reader(B) as b:
        # own reads work, and hold only the clinic's own patients
        rows = await a.query_rows(f'SELECT "n_steps", "patient_id", "clinic_id" FROM {win}')
        assert sorted(r["patient_id"] for r in rows) == ["pt-a1", "pt-a2"]
        assert {r["clinic_id"] for r in rows} == {A}
        assert [r["patient_id"] for r in await b.query_rows(
            f'SELECT "n_steps", "patient_id" FROM {win}')] == ["pt-b1"]
        shown = await a.query_rows('SHOW TAG VALUES WITH KEY = "patient_id"')
        assert {r["value"] for r in shown} == {"pt-a1", "pt-a2"}
        assert [r["name"] for r in await a.query_rows("SHOW DATABASES")] == [db_a]

        # every route to clinic B's data with clinic A's credentials is refused
        forbidden = [
            (f"SELECT * FROM {win}", db_b),                                   # db parameter
            (f"SELECT * FROM {quote_ident(db_b)}.{win}", db_a),               # qualified FROM
            (f"SELECT * FROM (SELECT * FROM {quote_ident(db_b)}.{win})", db_a),  # subquery
            (f"SELECT count(*) FROM {win}; SELECT * FROM {quote_ident(db_b)}.{win}", db_a),
            (f"SHOW MEASUREMENTS ON {quote_ident(db_b)}", db_a),
            ('SHOW TAG VALUES WITH KEY = "patient_id"', db_b),
            ("SHOW SERIES", db_b),
            (f"SHOW RETENTION POLICIES ON {quote_ident(db_b)}", db_a),
            (f"SHOW SERIES CARDINALITY ON {quote_ident(db_b)}", db_a),
            (f"EXPLAIN SELECT * FROM {quote_ident(db_b)}.{win}", db_a),
            ("SHOW USERS", db_a),
            ("SHOW GRANTS FOR " + quote_ident(clinics.readers[B].user), db_a),
            ("SHOW SHARDS", db_a),
            ("SHOW STATS", db_a),
            ("KILL QUERY 1", db_a),
            (f"SELECT * INTO {quote_ident(db_a)}..\"copy\" FROM {quote_ident(db_b)}.{win}",
             db_a),
            (f"SELECT * INTO {quote_ident(db_a)}..\"copy\" FROM {win}", db_a),  # no WRITE
            (f"GRANT READ ON {quote_ident(db_b)} TO {quote_ident(clinics.readers[A].user)}",
             db_a),
            (f"CREATE USER \"x\" WITH PASSWORD {quote_literal('x')} WITH ALL PRIVILEGES", db_a),
            (f"DROP DATABASE {quote_ident(db_b)}", db_a),
        ]
        for q, db in forbidden:
            try:
                answer = await a.query(q, db=db)
            except InfluxAuthError as refused:
                assert refused.status == 403, q
            else:
                pytest.fail(f"not refused: {q} (in {db}): {answer}")
        # InfluxDB 1.x shows any reader every database's continuous queries and every
        # running query's text: metadata (database names, rollup definitions, a query's
        # WHERE clause), no point, as the columns say. Grafana's users cannot send these:
        # the gate refuses them (tests/test_influx_gate.py; deploy/README.md).
        cqs = (await a.query("SHOW CONTINUOUS QUERIES"))[0]["series"]
        assert {tuple(s["columns"]) for s in cqs} == {("name", "query")}
        running = (await a.query("SHOW QUERIES"))[0]["series"]
        assert [s["columns"] for s in running] == [
            ["qid", "query", "database", "duration", "status"]]
        for db in (db_a, db_b):  # a read user writes nowhere
            with pytest.raises(InfluxAuthError):
                await clinics.reader(A, db=db).write_lines(point(A, "pt-a9", t))
        # B's rows did not move
        assert len(await b.query_rows(f'SELECT "n_steps" FROM {win}')) == 1

    # wrong password, no credentials: 401
    for user, password in ((clinics.readers[A].user, "wrong"), ("", "")):
        async with InfluxClient(clinics.settings.influx_url, db_a, username=user,
                                password=password) as c:
            with pytest.raises(InfluxAuthError) as refused:
                await c.query(f"SELECT * FROM {win}")
            assert refused.value.status == 401


async def test_setup_takes_away_what_a_read_user_should_not_have(clinics: Clinics) -> None:
    user = clinics.readers[A].user
    async with clinics.admin() as admin:
        # an operator's mistake by hand: clinic A's reader also reads B, writes A, is admin
        await admin.query(f"GRANT READ ON {quote_ident(clinics.db(B))} TO {quote_ident(user)}")
        await admin.query(f"GRANT WRITE ON {quote_ident(clinics.db(A))} TO {quote_ident(user)}")
        await admin.query(f"GRANT ALL PRIVILEGES TO {quote_ident(user)}")
        done = await ensure_read_user(admin, clinics.db(A), user, clinics.readers[A].password)
        assert f"user {user}: admin privilege revoked" in done
        assert f"user {user}: READ on {clinics.db(B)} revoked" in done
        assert f"user {user}: WRITE on {clinics.db(A)} revoked" in done \
            or f"user {user}: ALL PRIVILEGES on {clinics.db(A)} revoked" in done
        grants = await admin.query_rows(f"SHOW GRANTS FOR {quote_ident(user)}")
        assert {(g["database"], g["privilege"]) for g in grants
                if g["privilege"] != "NO PRIVILEGES"} == {(clinics.db(A), "READ")}
        # idempotent: run again, nothing to take away or give
        again = await ensure_read_user(admin, clinics.db(A), user, clinics.readers[A].password)
        assert again == [f"user {user}: password set"]
    async with clinics.reader(A) as a:
        with pytest.raises(InfluxAuthError):
            await a.query("SHOW MEASUREMENTS", db=clinics.db(B))
    with pytest.raises(ValueError, match="admin user itself"):
        async with clinics.admin() as admin:
            await ensure_read_user(admin, clinics.db(A), clinics.settings.influx_username, "x")


async def test_a_point_without_a_clinic_goes_nowhere(clinics: Clinics) -> None:
    t = now_us() - 60_000_000
    orphan = schema.line(schema.MEASUREMENT_GAIT_WINDOW, {"patient_id": "pt-x"},
                         {"n_steps": 3}, t * 1000)
    async with clinics.admin(per_clinic=True) as writer:
        await writer.ensure_database()
        with pytest.raises(InfluxWriteError, match="no clinic's database"):
            await writer.write_lines("\n".join([point(A, "pt-a1", t), orphan]))
        rows = await writer.query_rows("SHOW DATABASES")
    assert not any(r["name"].endswith("_") for r in rows)
    async with clinics.reader(A) as a:  # refused before anything was sent
        assert await a.query_rows(
            f'SELECT * FROM {schema.qualified(schema.MEASUREMENT_GAIT_WINDOW)}') == []


# -- the pipeline: gateway -> processor -> sink ------------------------------------------------


async def _stream(url: str, token: str, chunks: list[bytes]) -> list[dict[str, Any]]:
    answers = []
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url + STREAM_PATH, headers=auth_headers(token)) as ws:
        for data in chunks:
            await ws.send_bytes(data)
            answers.append(json.loads((await ws.receive(timeout=30)).data))
    return answers


async def _rows(client: InfluxClient, q: str, *, want: int, timeout_s: float = 45.0
                ) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await client.query_rows(q)
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.5)


@pytest.fixture
def pipeline(settings: Settings, clinics: Clinics, tmp_path: Path
             ) -> Iterator[tuple[Pipeline, list[DeviceCredential]]]:
    s = settings.replace(device_registry=tmp_path / "devices.json", gateway_port=_free_port())
    creds = provision(s.device_registry, tmp_path / "creds.json",
                      [("dev-a1", "pt-a1", A), ("dev-b1", "pt-b1", B)])
    p = Pipeline(s, log_dir=tmp_path / "logs")
    p.start()
    try:
        yield p, creds
    finally:
        p.stop()


async def test_a_device_cannot_put_data_into_another_clinic(
        pipeline: tuple[Pipeline, list[DeviceCredential]], clinics: Clinics) -> None:
    p, (dev_a, dev_b) = pipeline
    duration_s = 30.0
    start_us = simulation_start_us(now_us(), duration_s, 0)
    walk = GaitProfile(cadence_spm=105.0, step_time_cv=0.02, walking_s=((0.0, duration_s),))
    sims = prepare_patients([dev_a, dev_b], [walk, walk], duration_s, start_us=start_us,
                            window_s=p.settings.cadence_window_s, seed=3)
    wire: dict[str, list[bytes]] = {}
    for sim in sims:
        chunks = make_chunks(sim.credential, sim.recording.samples, start_us=start_us,
                             sample_rate_hz=sim.recording.sample_rate_hz, session_id="s1")
        # clinic A's device writes clinic B into its chunks: the gateway does not trust it
        claim = B if sim.credential.clinic_id == A else ""
        wire[sim.credential.device_id] = [
            encode_chunk(dataclasses.replace(c, clinic_id=claim)) for c in chunks]
    # ... and claims clinic B's patient, live and by upload: refused, both endpoints
    stolen = [encode_chunk(dataclasses.replace(c, patient_id=dev_b.patient_id, clinic_id=B,
                                               session_id="s-stolen"))
              for c in make_chunks(dev_a, np.zeros((100, 6), np.float32),
                                   start_us=start_us, sample_rate_hz=100.0, session_id="x")]
    answers = await _stream(p.gateway_url, dev_a.token, stolen)
    assert [a["code"] for a in answers] == ["forbidden_identity"] * len(stolen)
    async with aiohttp.ClientSession() as http, http.post(
            p.gateway_url + UPLOAD_PATH, data=frame_upload(stolen),
            headers={**auth_headers(dev_a.token),
                     "Content-Type": "application/octet-stream"}) as resp:
        upload = await resp.json()
    assert resp.status == 422 and upload["accepted"] == 0
    assert {r["code"] for r in upload["rejected"]} == {"forbidden_identity"}

    for cred in (dev_a, dev_b):
        answers = await _stream(p.gateway_url, cred.token, wire[cred.device_id])
        assert all(a["type"] == "ack" for a in answers), answers

    win = schema.qualified(schema.MEASUREMENT_GAIT_WINDOW)
    q = f'SELECT "n_steps", "patient_id", "clinic_id" FROM {win}'
    async with clinics.reader(A) as a, clinics.reader(B) as b:
        rows_a = await _rows(a, q, want=5)
        rows_b = await _rows(b, q, want=5)
        assert rows_a and {(r["clinic_id"], r["patient_id"]) for r in rows_a} == {(A, "pt-a1")}
        assert rows_b and {(r["clinic_id"], r["patient_id"]) for r in rows_b} == {(B, "pt-b1")}
        # no measurement of B's database holds anything of A's device, and the reverse
        for reader, own in ((a, "pt-a1"), (b, "pt-b1")):
            shown = await reader.query_rows('SHOW TAG VALUES WITH KEY = "patient_id"')
            assert {r["value"] for r in shown} == {own}
        with pytest.raises(InfluxAuthError):
            await a.query(q, db=clinics.db(B))


# -- alerts ----------------------------------------------------------------------------------


def alert(clinic: str, patient: str, dt_s: float = 0.0) -> AlertRecord:
    start = now_us() - 60_000_000 + int(dt_s * 1e6)
    return AlertRecord(
        alert_id=AlertRecord.make_id(patient, "s1", "fall", start), clinic_id=clinic,
        patient_id=patient, device_id=f"dev-{patient}", session_id="s1", type="fall",
        severity="critical", event_start_us=start, event_end_us=start + 900_000,
        raised_at_us=now_us(), evidence={"peak_acc_g": 3.1})


async def _until(cond: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_each_clinics_webhook_receives_only_its_own_alerts(
        settings: Settings, tmp_path: Path) -> None:
    from aiokafka import AIOKafkaProducer

    await ensure_topics(settings)
    rx = {c: AlertReceiver(secret=f"{c}-webhook-secret-000".encode(), clinic_id=c)
          for c in (A, B)}
    for r in rx.values():
        await r.start()
    channels = {"clinics": {c: channels_for(r, [c])["clinics"][c] for c, r in rx.items()}}
    settings = settings.replace(alert_channels=tmp_path / "channels.json")
    settings.alert_channels.write_text(json.dumps(channels))
    sent = [alert(A, "pt-a1"), alert(B, "pt-b1"), alert(A, "pt-a2", 1), alert(B, "pt-b2", 1)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for a in sent:
            await producer.send_and_wait(settings.topic_alerts, a.to_json(),
                                         key=a.patient_id.encode())
    finally:
        await producer.stop()
    service = AlertService.from_settings(settings, retry_initial_s=0.1, poll_max_s=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await _until(lambda: all(len(r.received) == 2 for r in rx.values()))
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        for r in rx.values():
            await r.stop()
    for c, r in rx.items():
        assert sorted(x.alert["patient_id"] for x in r.received) == sorted(
            a.patient_id for a in sent if a.clinic_id == c)
        assert r.wrong_clinic == 0 and r.bad_signatures == 0


async def test_the_service_refuses_to_send_a_clinics_alert_to_another_clinics_channel(
        settings: Settings, tmp_path: Path) -> None:
    """A job that would reach the wrong clinic (only a bug or a tampered outbox could make
    one) is refused before sending and kept as failed."""
    rx_a = AlertReceiver(secret=b"clinic-a-webhook-secret-000", clinic_id=A)
    await rx_a.start()
    settings = settings.replace(alert_channels=tmp_path / "channels.json")
    settings.alert_channels.write_text(json.dumps(channels_for(rx_a, [A])))
    await ensure_topics(settings)
    channel_a = f"{A}/webhook/{rx_a.url}"
    b_alert = alert(B, "pt-b1")
    box = Outbox(settings.alert_outbox, window_s=0)
    for clinic in (A, B):  # labelled clinic A, or honestly B: the body is clinic B's
        box.db.execute(
            "INSERT INTO jobs (channel, clinic_id, delivery_id, kind, body, created_at, "
            "next_attempt_at) VALUES (?, ?, ?, 'alert', ?, 0, 0)",
            (channel_a, clinic, f"{b_alert.alert_id}-{clinic}",
             dump_body(alert_body(b_alert, window_s=0))))
    box.close()
    service = AlertService.from_settings(settings, retry_initial_s=0.1, poll_max_s=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await _until(lambda: service.failed_ == 2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await rx_a.stop()
    assert rx_a.received == [] and rx_a.wrong_clinic == 0  # nothing even reached it
    box = Outbox(settings.alert_outbox, window_s=0)
    try:
        failed = box.jobs("failed")
        assert len(failed) == 2 and all("refused" in (j.last_error or "") for j in failed)
    finally:
        box.close()


async def test_a_clinic_bound_receiver_refuses_another_clinics_alert() -> None:
    rx = AlertReceiver(secret=b"clinic-a-webhook-secret-000", clinic_id=A)
    await rx.start()
    try:
        async with aiohttp.ClientSession() as http:
            for a, expected in ((alert(B, "pt-b1"), 403), (alert(A, "pt-a1"), 204)):
                body = dump_body(alert_body(a, window_s=0)).encode()
                headers = signature_headers(rx.secret, body, a.alert_id, now_s=time.time())
                async with http.post(rx.url, data=body, headers=headers) as resp:
                    assert resp.status == expected
    finally:
        await rx.stop()
    assert rx.wrong_clinic == 1 and [r.alert["clinic_id"] for r in rx.received] == [A]


def test_a_webhook_or_address_shared_by_two_clinics_is_refused() -> None:
    hook = {"url": "https://hooks.example/justwalk", "secret": "s" * 20}
    with pytest.raises(ChannelConfigError, match="also a channel of clinic clinic-a"):
        parse_channels({"clinics": {A: {"webhooks": [hook]}, B: {"webhooks": [hook]}}})
    smtp = {"host": "smtp.example", "from": "a@justwalk.example"}
    with pytest.raises(ChannelConfigError, match=r"clinics\.clinic-b\.email_to"):
        parse_channels({"smtp": smtp, "clinics": {A: {"email_to": ["Nurse@x.example"]},
                                                  B: {"email_to": ["nurse@x.example"]}}})
    with pytest.raises(ValueError, match="this receiver is clinic clinic-a's"):
        channels_for(AlertReceiver(secret=b"x" * 20, clinic_id=A), [A, B])


# -- the commands an operator runs -----------------------------------------------------------


def test_influx_setup_and_rollups_backfill_commands(settings: Settings, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta

    from justwalk.cli import main

    suffix = settings.influx_db.removeprefix("iso_")
    users = {c: f"cli-{c}-{suffix}" for c in (A, B)}
    clinics_file = tmp_path / "clinics.json"
    clinics_file.write_text(json.dumps({"clinics": {
        c: {"grafana_org_id": 2 + i, "influx_read_user": users[c],
            "influx_read_password_env": f"PW_{i}"} for i, c in enumerate((A, B))}}))
    for key, value in (("URL", settings.influx_url), ("DB", settings.influx_db),
                       ("USERNAME", settings.influx_username),
                       ("PASSWORD", settings.influx_password)):
        monkeypatch.setenv(f"JUSTWALK_INFLUX_{key}", value)
    monkeypatch.setenv("PW_0", "pw-zero-0000")
    assert main(["influx", "setup", "--clinics", str(clinics_file)]) == 2  # PW_1 unset
    monkeypatch.setenv("PW_1", "pw-one-11111")
    assert main(["influx", "setup", "--clinics", str(clinics_file)]) == 0
    env = Clinics(settings, {A: ReadUser(A, users[A], "pw-zero-0000"),
                             B: ReadUser(B, users[B], "pw-one-11111")})
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    t = int((day - timedelta(days=3, hours=-10)).timestamp() * 1e6)

    async def write() -> None:
        async with env.admin(per_clinic=True) as writer:
            await writer.ensure_database()
            await writer.write_lines("\n".join([point(A, "pt-a1", t), point(B, "pt-b1", t)]),
                                     retention_policy=None)

    async def daily(clinic: str) -> list[str]:
        async with env.reader(clinic) as r:
            rows = await r.query_rows(
                f'SELECT "steps", "patient_id" FROM '
                f'{schema.qualified(schema.MEASUREMENT_DAILY)}')
        return [row["patient_id"] for row in rows]

    async def drop() -> None:
        async with env.admin() as admin:
            for c in (A, B):
                await admin.query(f"DROP DATABASE {quote_ident(env.db(c))}")
                await admin.query(f"DROP USER {quote_ident(users[c])}")

    try:
        asyncio.run(write())
        assert asyncio.run(daily(A)) == [] and asyncio.run(daily(B)) == []
        start, end = (day - timedelta(days=5)).date(), day.date()
        # one clinic ...
        assert main(["rollups", "backfill", "--start", str(start), "--end", str(end),
                     "--clinic", A]) == 0
        assert asyncio.run(daily(A)) == ["pt-a1"] and asyncio.run(daily(B)) == []
        # ... or every clinic's database, each rolled up in its own
        assert main(["rollups", "backfill", "--start", str(start), "--end", str(end)]) == 0
        assert asyncio.run(daily(B)) == ["pt-b1"]
    finally:
        asyncio.run(drop())
