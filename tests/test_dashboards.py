"""Every query the Grafana provisioning files hold runs on the real InfluxDB and returns what
its panel shows, as the clinic's read user on the clinic's own database, and nothing of
another clinic's.

Data: live steps and windows come from the real processor path (simulated IMU chunks ->
``SessionProcessor`` -> records -> ``schema.record_to_line``); the gait fields issue #3
adds to windows, and bouts, events, alerts, sessions and fall-risk scores are written with
the schema's line builders; weeks of history are rolled up with the continuous queries'
own SELECT ... INTO (see tests/test_schema.py for why).

Queries are read from the committed files under deploy/grafana (not from the generator),
the template variables and Grafana macros are substituted the way Grafana does, and each
query must parse, return rows, carry every column it names with ``AS "..."`` with at least
one value, and be grouped by the tags it names in ``GROUP BY``.

The InfluxDB runs with authentication on (``auth_stack``); the data of two clinics is written
through a ``per_clinic`` client (as the sink does) and each clinic's read user is made by
``justwalk influx setup``'s code, so the queries run with exactly the permissions Grafana's
data source of the clinic has.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from justwalk import dashboards, schema
from justwalk.clinics import load_clinics
from justwalk.config import Settings
from justwalk.device_protocol import DeviceCredential
from justwalk.gait.pipeline import BoutResult, GaitParameters
from justwalk.records import AlertRecord
from justwalk.risk import FallRiskScorer
from justwalk.simulator.device import make_chunks
from justwalk.simulator.events import with_random_events
from justwalk.simulator.run import default_profiles, prepare_patients
from sinks.influx import InfluxAuthError, InfluxClient, InfluxQueryError, quote_ident
from sinks.influx_access import ReadUser, setup_clinics
from stream_processors.mobility import DmoState, MobilityOutcomes
from stream_processors.session import SessionProcessor
from tests.test_schema import synthetic_history

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CLINIC, PATIENT = "clinic-a", "pt-001"
LIVE_PATIENTS = ("pt-001", "pt-002", "pt-003")
OTHER_CLINIC, OTHER_PATIENT = "clinic-b", "pt-101"  # synthetic_history has one of clinic-b
CLINICS = {c.clinic_id: c for c in load_clinics(DEPLOY / dashboards.EXAMPLE_CLINICS)}


# -- what the provisioning files hold -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Query:
    where: str
    text: str
    time_from: str = "now-6h"
    time_to: str = "now"
    show: bool = False


def dashboard_files() -> list[Path]:
    return sorted((DEPLOY / dashboards.DASHBOARD_DIR).glob("*.json"))


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in board.get("panels", []):
        yield p
        yield from p.get("panels", [])  # rows


def provisioned_queries() -> list[Query]:
    out: list[Query] = []
    for path in dashboard_files():
        board = json.loads(path.read_text())
        t = board["time"]
        for p in _panels(board):
            for tg in p.get("targets", []):
                assert tg["rawQuery"] and tg["datasource"]["uid"] == dashboards.DATASOURCE_UID
                out.append(Query(f"{path.name}: {p['title']} [{tg['refId']}]", tg["query"],
                                 t["from"], t["to"]))
        for a in board["annotations"]["list"]:
            if not a.get("builtIn"):
                out.append(Query(f"{path.name}: annotation {a['name']}", a["query"],
                                 t["from"], t["to"]))
        for v in board["templating"]["list"]:
            out.append(Query(f"{path.name}: variable ${v['name']}", v["query"], show=True))
    alerting = yaml.safe_load((DEPLOY / dashboards.PROVISIONING_DIR / "alerting" /
                               "justwalk.yaml").read_text())
    for group in alerting["groups"]:
        for rule in group["rules"]:
            for d in rule["data"]:
                if d["datasourceUid"] == dashboards.DATASOURCE_UID:
                    r = d["relativeTimeRange"]
                    out.append(Query(f"alert {rule['uid']} [{d['refId']}]", d["model"]["query"],
                                     f"now-{r['from']}s", f"now-{r['to']}s"))
    return out


QUERIES = provisioned_queries()


def test_committed_files_are_what_the_code_generates() -> None:
    assert dashboards.build(DEPLOY, check=True) == [], "run `justwalk dashboards build`"


def test_alert_rules_are_well_formed() -> None:
    alerting = yaml.safe_load((DEPLOY / dashboards.PROVISIONING_DIR / "alerting" /
                               "justwalk.yaml").read_text())
    receivers = {(cp["orgId"], cp["name"]) for cp in alerting["contactPoints"]}
    mutes = {(m["orgId"], m["name"]) for m in alerting["muteTimes"]}
    uids = set()
    for group in alerting["groups"]:
        assert group["folder"] == dashboards.FOLDER_TITLE
        org = group["orgId"]
        for rule in group["rules"]:
            uids.add((org, rule["uid"]))
            refs = [d["refId"] for d in rule["data"]]
            assert rule["condition"] in refs
            for d in rule["data"]:
                assert d["datasourceUid"] in (dashboards.DATASOURCE_UID, "__expr__")
                expr = d["model"].get("expression", "")
                for ref in re.findall(r"\$([A-Z])\b", expr) + ([expr] if d["model"].get(
                        "type") in ("reduce", "threshold") else []):
                    assert ref in refs and refs.index(ref) < refs.index(d["refId"]), rule["uid"]
            ns = rule["notification_settings"]
            assert (org, ns["receiver"]) in receivers  # its own organisation's contact point
            assert {(org, m) for m in ns.get("mute_time_intervals", [])} <= mutes
    assert len(uids) == sum(len(g["rules"]) for g in alerting["groups"])
    for ds in yaml.safe_load((DEPLOY / dashboards.PROVISIONING_DIR / "datasources" /
                              "justwalk.yaml").read_text())["datasources"]:
        assert ds["uid"] == dashboards.DATASOURCE_UID and ds["jsonData"]["version"] == "InfluxQL"
        assert ds["secureJsonData"]["password"].startswith("$"), "secrets come from env"


def test_every_clinic_is_its_own_organisation_with_its_own_database_and_user() -> None:
    prov = DEPLOY / dashboards.PROVISIONING_DIR
    sources = yaml.safe_load((prov / "datasources" / "justwalk.yaml").read_text())
    by_org = {ds["orgId"]: ds for ds in sources["datasources"]}
    assert len(by_org) == len(sources["datasources"]) == len(CLINICS)
    for c in CLINICS.values():
        ds = by_org[c.grafana_org_id]
        assert ds["jsonData"]["dbName"] == schema.clinic_database(schema.DATABASE_DEFAULT,
                                                                   c.clinic_id)
        assert ds["user"] == c.influx_read_user
        assert ds["secureJsonData"]["password"] == f"${c.influx_read_password_env}"
    providers = yaml.safe_load((prov / "dashboards" / "justwalk.yaml").read_text())["providers"]
    assert sorted(pr["orgId"] for pr in providers) == sorted(by_org)
    alerting = yaml.safe_load((prov / "alerting" / "justwalk.yaml").read_text())
    for c in CLINICS.values():
        cps = [cp for cp in alerting["contactPoints"] if cp["orgId"] == c.grafana_org_id]
        settings = [r["settings"] for cp in cps for r in cp["receivers"]]
        assert settings == ([{"url": c.alert_webhook_url, "httpMethod": "POST"}]
                            if c.alert_webhook_url else []) + (
            [{"addresses": ";".join(c.alert_emails), "singleEmail": True}]
            if c.alert_emails else [])
        mutes = [m for m in alerting["muteTimes"] if m["orgId"] == c.grafana_org_id]
        assert [m["time_intervals"][0]["location"] for m in mutes] == [c.timezone]
        groups = [g for g in alerting["groups"] if g["orgId"] == c.grafana_org_id]
        assert {g["name"] for g in groups} == {"justwalk-trends", "justwalk-devices"}
    orgs = (DEPLOY / dashboards.ORGANISATIONS).read_text().split("\n")
    assert [ln for ln in orgs if ln and not ln.startswith("#")] == [
        f"{c.grafana_org_id} {c.clinic_id}"
        for c in sorted(CLINICS.values(), key=lambda c: c.grafana_org_id)]


def test_dashboards_offer_no_clinic_choice() -> None:
    """The data source decides the clinic: no variable, filter or link names one."""
    for path in dashboard_files():
        text = path.read_text()
        board = json.loads(text)
        assert [v["name"] for v in board["templating"]["list"]] in ([], ["patient"])
        assert "$clinic" not in text and "var-clinic" not in text
        assert schema.TAG_CLINIC not in text, path.name


def test_table_overrides_name_columns_the_queries_return() -> None:
    """A renamed alias must not silently leave a panel's override pointing at nothing."""
    for path in dashboard_files():
        for p in _panels(json.loads(path.read_text())):
            columns = {c for tg in p.get("targets", []) for c in aliases(tg["query"])}
            columns |= {t for tg in p.get("targets", []) for t in group_tags(tg["query"])}
            renamed = {}
            for tr in p.get("transformations", []):
                if tr["id"] == "organize":
                    renamed = tr["options"]["renameByName"]
                if tr["id"] == "calculateField":
                    columns.add(tr["options"]["alias"])
                    assert set(tr["options"]["reduce"]["include"]) <= columns
            shown = columns | {renamed.get(c, c) for c in columns} | set(renamed.values())
            for o in p["fieldConfig"]["overrides"]:
                assert o["matcher"]["options"] in shown, (path.name, p["title"], o)
            for s in p["options"].get("sortBy", []):
                assert s["displayName"] in shown | {"Time"}, (path.name, p["title"], s)


# -- substituting what Grafana substitutes ---------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def grafana_time(expr: str, now: datetime) -> datetime:
    """``now``, ``now-6h``, ``now-180d``, ``now/d`` (UTC), ``now-1209600s``."""
    if expr == "now":
        return now
    if expr == "now/d":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    m = re.fullmatch(r"now-(\d+)([smhdw])", expr)
    assert m, f"time expression {expr!r} not handled by the test"
    return now - timedelta(seconds=int(m[1]) * _UNITS[m[2]])


def substitute(query: Query, now: datetime, variables: dict[str, str]) -> str:
    start, end = grafana_time(query.time_from, now), grafana_time(query.time_to, now)
    span_s = (end - start).total_seconds()
    interval = "1d" if span_s > 14 * 86400 else "10m" if span_s > 86400 else "1m"
    text = query.text
    text = text.replace("$timeFilter", f"time >= {int(start.timestamp() * 1000)}ms and "
                                       f"time <= {int(end.timestamp() * 1000)}ms")
    text = text.replace("$__interval", interval)
    for name, value in variables.items():
        text = text.replace(f"${name}", value)
    assert "$" not in text.replace("$tag_", ""), f"unsubstituted variable in {text}"
    return text


def aliases(query: str) -> list[str]:
    select = query.split(" FROM ", 1)[0]
    return re.findall(r' AS "([^"]+)"', select)


def group_tags(query: str) -> list[str]:
    """Tags of the outer query's GROUP BY (a subquery's own grouping is not the result's)."""
    outer = query.rsplit(")", 1)[-1] if "FROM (SELECT" in query else query.rsplit(" FROM ", 1)[-1]
    m = re.search(r"GROUP BY (.*?)(?: fill\(|$)", outer)
    return [] if not m else re.findall(r'"([^"]+)"', m[1])


# -- data ------------------------------------------------------------------------------------


def live_records(end_us: int) -> list[str]:
    """A few minutes of three simulated patients, with a stumble and a fall injected,
    through the real processor path: every record it emits (steps, windows and their gait
    metrics, bouts, turns, near-falls and falls, alerts, fall-risk scores, session
    summaries) as the sink
    writes it."""
    lines = []
    creds = [DeviceCredential(f"dev-{i}", p, CLINIC, "t") for i, p in enumerate(LIVE_PATIENTS)]
    duration_s = 180.0
    start_us = end_us - int(duration_s * 1e6)
    rng = np.random.default_rng(3)
    profiles = with_random_events(default_profiles(len(creds), rng), 3, duration_s, rng,
                                  fall_fraction=1 / 3)
    patients = prepare_patients(creds, profiles, duration_s, start_us=start_us, window_s=5.0,
                                seed=1)
    for p in patients:
        proc = SessionProcessor(window_s=5.0)
        state, risk, dmo = proc.new_state(), proc.new_risk_state(), DmoState()
        chunks = make_chunks(p.credential, p.recording.samples, start_us=start_us,
                             sample_rate_hz=p.recording.sample_rate_hz,
                             session_id=f"{p.credential.patient_id}-live")
        for chunk in chunks:
            chunk = dataclasses.replace(chunk, clinic_id=CLINIC)
            out = proc.process(state, chunk)
            scores = proc.update_risk(risk, chunk, out)
            dmos = proc.update_dmos(dmo, risk, state.identity, chunk.t0_us, out)
            for r in [*out.steps, *out.windows, *out.bouts, *out.events,
                      *out.sessions, *out.alerts, *scores.scores, *scores.alerts, *dmos]:
                lines.append(schema.record_to_line(r))
    return lines


def dmo_history(start: datetime, days: int, seed: int = 4) -> list[str]:
    """Daily mobility outcomes of a clinic-a and a clinic-b patient, day by day, through the
    processor's adapter (``MobilityOutcomes``): bouts of every Mobilise-D duration bin."""
    rng = np.random.default_rng(seed)
    mobility = MobilityOutcomes()
    lines = []
    for clinic, patient in ((CLINIC, PATIENT), (OTHER_CLINIC, OTHER_PATIENT)):
        ident = {"clinic_id": clinic, "patient_id": patient, "device_id": "dev-h",
                 "session_id": f"{patient}-history"}
        dmo, risk = DmoState(), FallRiskScorer().initial_state()
        for d in range(days):
            day = start + timedelta(days=d)
            bouts = []
            for k, dur in enumerate((5.0, 12.0, 25.0, 45.0, 90.0, 8.0, 33.0)):
                t_us = int((day + timedelta(hours=9, minutes=20 * k)).timestamp() * 1e6)
                cad = float(rng.uniform(90, 115))
                params = GaitParameters(int(dur * cad / 60), cad, 60 / cad, 120 / cad, 3.0,
                                        5.0, 0.8, 0.7, float(rng.uniform(1.0, 1.3)),
                                        float(rng.uniform(0.8, 1.2)))
                bouts.append(BoutResult(k, t_us, t_us + int(dur * 1e6), 0, 1, dur, params, 1,
                                        180.0))
            recs = mobility.update(dmo, ident, bouts,  # type: ignore[arg-type]
                                   int((day + timedelta(hours=23)).timestamp() * 1e6))
            lines += [schema.record_to_line(r) for r in recs]
        end_us = int((start + timedelta(days=days)).timestamp() * 1e6)
        lines += [schema.record_to_line(r) for r in mobility.update(
            dmo, ident, [], end_us, risk=(FallRiskScorer(), risk))]  # type: ignore[arg-type]
    return lines


def today_points(now: datetime) -> list[str]:
    """Bouts, events, alerts and a session of the live patient, earlier today."""
    tags = {"clinic_id": CLINIC, "patient_id": PATIENT, "device_id": "dev-0"}
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    t0 = max(midnight + timedelta(minutes=1), now - timedelta(hours=2))

    def us(t: datetime) -> int:
        return int(t.timestamp() * 1e6)

    lines = [
        schema.point("gait_bout", tags, {
            "session_id": "s-today", "bout_index": i, "duration_s": 42.0 + i,
            "n_steps": 70 + i, "cadence_spm": 101.0, "walking_speed_mps": 1.01,
            "stride_length_m": 1.2, "stride_time_cv_pct": 3.3, "n_turns": 2,
            "turn_angle_deg": 270.0}, us(t0 + timedelta(minutes=5 * i))) for i in range(3)
    ]
    events = [(schema.EVENT_TURN, {"turn_angle_deg": 180.0, "turn_peak_rate_dps": 95.0}),
              (schema.EVENT_NEAR_FALL, {"confidence": 0.8, "peak_acc_mps2": 21.0}),
              (schema.EVENT_FALL, {"confidence": 0.9, "trunk_tilt_after_deg": 80.0})]
    for i, (kind, extra) in enumerate(events):
        lines.append(schema.point("gait_event", tags, {
            "session_id": "s-today", "event_type": kind, "duration_s": 1.5, **extra},
            us(t0 + timedelta(minutes=7 + i))))
    for i, (kind, severity) in enumerate((("near_fall", "warning"), ("fall", "critical"))):
        start = us(t0 + timedelta(minutes=8 + i))
        lines.append(schema.alert_to_line(AlertRecord(
            AlertRecord.make_id(PATIENT, "s-today", kind, start), CLINIC, PATIENT, "dev-0",
            "s-today", kind, severity, start, start + 2_000_000, us(now), {"confidence": 0.8})))
    lines.append(schema.point("session", tags, {
        "session_id": "s-today", "duration_s": 3600.0, "n_steps": 2100, "walking_s": 1500.0,
        "n_bouts": 3, "ended": False}, us(t0)))
    return lines


READ_PASSWORDS = {c: f"read-{c}-{uuid.uuid4().hex[:12]}" for c in CLINICS}


def reader(settings: Settings, clinic: str) -> InfluxClient:
    """What Grafana's data source of ``clinic`` is: its database, its read user."""
    return InfluxClient(settings.influx_url,
                        schema.clinic_database(settings.influx_db, clinic),
                        username=CLINICS[clinic].influx_read_user,
                        password=READ_PASSWORDS[clinic])


LIVE_REWRITE_AFTER = timedelta(seconds=30)
"""Live panels look at the last minutes: the live records are written again, ending now,
once they are this old (the module's queries can take longer than that on a busy machine)."""


async def write_live(settings: Settings, now: datetime) -> None:
    """The live patients' last minutes, ending at ``now``, as the sink writes them."""
    async with InfluxClient(settings.influx_url, settings.influx_db, per_clinic=True,
                            username=settings.influx_username,
                            password=settings.influx_password) as writer:
        await writer.write_lines("\n".join(live_records(int(now.timestamp() * 1e6))),
                                 retention_policy=None)


@pytest.fixture(scope="module")
def loaded(auth_stack: Any) -> Iterator[tuple[Settings, list[datetime]]]:
    """The clinics' databases with 50 days of history, today's points and the live minutes;
    with, in a list, when the live minutes last ended (see ``live_at``)."""
    import asyncio

    settings = auth_stack.settings(Settings()).replace(
        influx_db=f"justwalk_dash_{int(time.time() * 1000)}")
    admin = {"username": settings.influx_username, "password": settings.influx_password}

    async def load() -> datetime:
        await setup_clinics(settings.influx_url, settings.influx_db,
                            admin_user=settings.influx_username,
                            admin_password=settings.influx_password,
                            readers=[ReadUser(c, CLINICS[c].influx_read_user, pw)
                                     for c, pw in READ_PASSWORDS.items()])
        now = datetime.now(UTC)
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        history, _ = synthetic_history(today - timedelta(days=50), days=50, seed=9)
        body = [*history, *dmo_history(today - timedelta(days=50), 50),
                *live_records(int(now.timestamp() * 1e6)), *today_points(now)]
        # as the sink writes: each point to the database of its clinic
        async with InfluxClient(settings.influx_url, settings.influx_db, per_clinic=True,
                                **admin) as writer:
            await writer.ensure_database()
            await writer.write_lines("\n".join(body), retention_policy=None)
        for clinic in CLINICS:
            db = schema.clinic_database(settings.influx_db, clinic)
            async with InfluxClient(settings.influx_url, db, **admin) as client:
                for s in schema.backfill_statements(db, today - timedelta(days=50), now):
                    await client.query(s)
        return now

    now = asyncio.run(load())
    yield settings, [now]

    async def drop() -> None:
        async with InfluxClient(settings.influx_url, settings.influx_db, **admin) as client:
            for clinic in CLINICS:
                db = schema.clinic_database(settings.influx_db, clinic)
                await client.query(f"DROP DATABASE {quote_ident(db)}")
                await client.query(f"DROP USER {quote_ident(CLINICS[clinic].influx_read_user)}")

    asyncio.run(drop())


@pytest.fixture
async def live_at(loaded: tuple[Settings, list[datetime]]) -> datetime:
    """When the live minutes a test reads end: written again, ending now, once older than
    ``LIVE_REWRITE_AFTER`` (the same patients, later times)."""
    settings, written = loaded
    if datetime.now(UTC) - written[0] > LIVE_REWRITE_AFTER:
        now = datetime.now(UTC)
        await write_live(settings, now)
        written[0] = now
    return written[0]


@pytest.fixture
async def client(loaded: tuple[Settings, list[datetime]]) -> AsyncIterator[InfluxClient]:
    settings, _ = loaded
    async with reader(settings, CLINIC) as c:
        yield c


@pytest.mark.integration
@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
async def test_every_provisioned_query_returns_what_its_panel_shows(
    query: Query, client: InfluxClient, live_at: datetime
) -> None:
    # Live panels look at the last minutes: the live data was written ending at `live_at`.
    assert datetime.now(UTC) - live_at < timedelta(seconds=50), "live data went stale"
    text = substitute(query, datetime.now(UTC), {"patient": PATIENT})
    try:
        results = await client.query(text)
    except InfluxQueryError as exc:
        pytest.fail(f"{query.where}: InfluxDB refused the query: {exc.message}")
    assert len(results) == 1
    series = results[0].get("series", [])
    assert series, f"{query.where}: no data for\n{text}"
    assert OTHER_PATIENT not in json.dumps(series) and OTHER_CLINIC not in json.dumps(series)
    if query.show:  # SHOW TAG VALUES: the ids the variable offers: this clinic's patients
        values = {v[1] for s in series for v in s["values"]}
        assert values == {*LIVE_PATIENTS}, (query.where, values)
        return
    for name in aliases(query.text):
        column = [v[s["columns"].index(name)] for s in series if name in s["columns"]
                  for v in s["values"]]
        assert column, f"{query.where}: no column {name!r} in {series[0]['columns']}"
        assert any(v is not None for v in column), f"{query.where}: {name!r} is always null"
    for tag in group_tags(query.text):
        assert all(tag in (s.get("tags") or {}) for s in series), (query.where, tag)
    assert all((s.get("tags") or {}).get("clinic_id", CLINIC) == CLINIC for s in series)


@pytest.mark.integration
async def test_the_other_clinic_sees_only_its_own_patient_and_cannot_reach_this_one(
    loaded: tuple[Settings, list[datetime]],
) -> None:
    """Clinic B's data source, with the same dashboards: pt-101's rollups, nothing of A's;
    and the same queries against clinic A's database are refused."""
    settings, _ = loaded
    weekly = [q for q in QUERIES if q.where.startswith("longitudinal.json: Walking speed")]
    assert weekly
    async with reader(settings, OTHER_CLINIC) as b:
        for query in weekly:
            text = substitute(query, datetime.now(UTC), {"patient": OTHER_PATIENT})
            rows = [r for res in await b.query(text) for r in result_rows_of(res)]
            assert rows and all(r.get("clinic_id", OTHER_CLINIC) == OTHER_CLINIC for r in rows)
            with pytest.raises(InfluxAuthError, match="requires READ"):
                await b.query(text, db=schema.clinic_database(settings.influx_db, CLINIC))
        variable = next(q for q in QUERIES if q.show)
        shown = {v[1] for res in await b.query(variable.text)
                 for s in res.get("series", []) for v in s["values"]}
        assert shown == {OTHER_PATIENT}


def result_rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    from sinks.influx import result_rows

    return result_rows(result)
