"""The InfluxDB schema: retention policies, continuous queries and rollups on the real InfluxDB.

Continuous queries only ever recompute the last ``resample_for`` (two days for the daily
rollup, two weeks for the weekly one) when InfluxDB's scheduler fires them, so they cannot
be made to run over data from last week inside a test. The test therefore runs each CQ's
own ``SELECT ... INTO`` (``schema.backfill_statements``, the same text the CQ holds) over
the whole historical range, exactly as ``justwalk rollups backfill`` does in production
for late uploads, and checks that what lands in ``patient_daily`` / ``patient_weekly`` is
what the raw points say, computed independently in Python.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from justwalk import schema
from justwalk.config import Settings
from justwalk.records import AlertRecord
from sinks.influx import InfluxClient, quote_ident

ROOT = Path(__file__).resolve().parents[1]

# -- pure parts ------------------------------------------------------------------------


def test_every_measurement_is_documented_with_units_and_a_policy() -> None:
    names = [m.name for m in schema.MEASUREMENTS]
    assert len(names) == len(set(names))
    for m in schema.MEASUREMENTS:
        assert m.retention_policy in schema.RETENTION_POLICIES
        assert set(m.tags) <= set(schema.ALL_TAGS)
        for f in m.fields:
            assert f.kind in ("float", "integer", "boolean", "string"), f
            assert f.description, f
            assert f.name not in schema.ALL_TAGS
    assert [rp.name for rp in schema.RETENTION_POLICIES if rp.default] == [
        schema.RETENTION_POLICY]
    assert schema.retention_policy_for("step") == "raw"
    assert schema.retention_policy_for("gait_window") == "windows"
    assert schema.qualified("patient_daily") == '"longterm"."patient_daily"'


def test_deploy_readme_has_the_current_schema() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert schema.describe() in readme, "run `justwalk dashboards build` to refresh it"


def test_point_checks_fields_against_the_schema() -> None:
    tags = {"clinic_id": "c", "patient_id": "p", "device_id": "d"}
    assert schema.point("gait_bout", tags, {"duration_s": 12, "n_steps": 20}, 5) == (
        "gait_bout,clinic_id=c,device_id=d,patient_id=p duration_s=12.0,n_steps=20i 5000")
    with pytest.raises(ValueError, match="no field"):
        schema.point("gait_bout", tags, {"speed": 1.0}, 5)
    with pytest.raises(ValueError, match="integer"):
        schema.point("gait_bout", tags, {"n_steps": 2.5}, 5)
    with pytest.raises(ValueError, match="no tags"):
        schema.point("gait_bout", {**tags, "session_id": "s"}, {"n_steps": 2}, 5)
    with pytest.raises(KeyError):
        schema.point("nope", tags, {"n_steps": 2}, 5)


def test_alert_to_line() -> None:
    a = AlertRecord("a1", "c", "p", "d", "s", "fall", "critical", 1_000_000, 3_500_000, 9,
                    {"confidence": 0.8, "peak_acc_g": 3.1})
    assert schema.alert_to_line(a) == (
        'alert,clinic_id=c,device_id=d,patient_id=p session_id="s",alert_id="a1",'
        'alert_type="fall",severity="critical",event_duration_s=2.5,confidence=0.8 1000000000')


def test_measurement_of_line() -> None:
    assert schema.measurement_of_line("step,a=b x=1 5") == "step"
    assert schema.measurement_of_line("my\\ m\\,x f=1 5") == "my m,x"
    assert schema.measurement_of_line("gait_window x=1 5") == "gait_window"


def test_backfill_covers_whole_periods() -> None:
    start = datetime(2026, 11, 11, 13, 5, tzinfo=UTC)  # a Wednesday
    end = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    assert schema.period_bounds(start, end, schema.PERIOD_DAILY) == (
        datetime(2026, 11, 11, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))
    lo, hi = schema.period_bounds(start, end, schema.PERIOD_WEEKLY)
    assert (lo, hi) == (datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
    assert lo.weekday() == 0  # weeks start on Monday
    statements = schema.backfill_statements("db", start, end)
    assert len(statements) == len(schema.CONTINUOUS_QUERIES)
    assert all(" INTO \"db\".\"longterm\"." in s for s in statements)
    with pytest.raises(ValueError):
        schema.backfill_statements("db", start.replace(tzinfo=None), end)


# -- against the real InfluxDB ------------------------------------------------------------

@pytest.fixture
async def influx(stack_settings: Settings) -> AsyncIterator[InfluxClient]:
    client = InfluxClient(stack_settings.influx_url, stack_settings.influx_db)
    try:
        await client.ensure_database()
        yield client
        await client.query(f"DROP DATABASE {quote_ident(client.db)}")
    finally:
        await client.close()


@pytest.mark.integration
async def test_ensure_database_creates_policies_and_cqs_and_updates_changed_cqs(
    influx: InfluxClient,
) -> None:
    db = quote_ident(influx.db)
    rps = {r["name"]: r for r in await influx.query_rows(f"SHOW RETENTION POLICIES ON {db}")}
    assert rps["raw"]["duration"] == "2160h0m0s" and not rps["raw"]["default"]
    assert rps["windows"]["duration"] == "17472h0m0s"
    assert rps["longterm"]["duration"] == "87360h0m0s" and rps["longterm"]["default"]
    cqs = await cq_names(influx)
    assert cqs == {cq.name for cq in schema.CONTINUOUS_QUERIES}
    # An operator (or an older release) left a different definition: it is replaced.
    name = schema.CONTINUOUS_QUERIES[0].name
    await influx.query(f"DROP CONTINUOUS QUERY {quote_ident(name)} ON {db}")
    await influx.query(
        f'CREATE CONTINUOUS QUERY {quote_ident(name)} ON {db} BEGIN SELECT count("n_steps") '
        f'INTO "longterm"."x" FROM "windows"."gait_window" GROUP BY time(1h) END')
    await influx.ensure_database()
    shown = await influx.query_rows("SHOW CONTINUOUS QUERIES")
    query = next(r["query"] for r in shown if r["name"] == name)
    assert "patient_daily" in query and "RESAMPLE EVERY 30m FOR 2d" in query


async def cq_names(client: InfluxClient) -> set[str]:
    rows = await client.query_rows("SHOW CONTINUOUS QUERIES")
    return {r["name"] for r in rows if r.get("name")}


@dataclass
class Expected:
    """What one patient-period should roll up to, accumulated from the raw points."""

    steps: int = 0
    monitored_s: float = 0.0
    walking_s: float = 0.0
    cadence: list[float] = field(default_factory=list)
    speed: list[float] = field(default_factory=list)
    stride: list[float] = field(default_factory=list)
    cv: list[float] = field(default_factory=list)
    asym: list[float] = field(default_factory=list)
    bouts: list[float] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    risk: list[float] = field(default_factory=list)


def influx_percentile(values: list[float], p: float) -> float:
    """InfluxDB 1.x ``percentile()``: nearest rank, index floor(n * p / 100 + 0.5) - 1."""
    v = sorted(values)
    i = math.floor(len(v) * p / 100 + 0.5) - 1
    return v[min(max(i, 0), len(v) - 1)]


def day_of(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def week_of(t: datetime) -> datetime:
    d = day_of(t)
    return d - timedelta(days=d.weekday())


def synthetic_history(start: datetime, days: int, seed: int = 5) -> tuple[list[str], dict]:
    """Raw points of several patients over several days, and the rollups they imply."""
    rng = random.Random(seed)
    lines: list[str] = []
    expected: dict = defaultdict(Expected)  # (period key, patient, bucket start) -> Expected
    patients = [("clinic-a", "pt-001", ["dev-1"]), ("clinic-a", "pt-002", ["dev-2", "dev-3"]),
                ("clinic-b", "pt-101", ["dev-9"])]

    def acc(patient: str, t: datetime) -> list[Expected]:
        return [expected[("daily", patient, day_of(t))], expected[("weekly", patient, week_of(t))]]

    for clinic, patient, devices in patients:
        for d in range(days):
            if rng.random() < 0.15:
                continue  # a day the device was not worn
            day = start + timedelta(days=d)
            device = rng.choice(devices)  # a patient may swap devices: one rollup series
            tags = {"clinic_id": clinic, "patient_id": patient, "device_id": device,
                    "placement": "lower_back"}
            session = f"{patient}-{d}"
            # windows (and their steps) in two stretches, one of them crossing midnight UTC
            # for the last day, so that rollup boundaries matter
            for stretch_start_h in (rng.uniform(7, 10), rng.uniform(15, 23.9)):
                t = day + timedelta(hours=stretch_start_h)
                t = t.replace(second=(t.second // 5) * 5, microsecond=0)
                for _ in range(rng.randint(20, 60)):
                    walking = rng.random() < 0.6
                    n_steps = rng.randint(6, 11) if walking else rng.choice((0, 0, 1))
                    fields: dict[str, schema.FieldValue | None] = {
                        "session_id": session, "window_s": 5.0, "n_steps": n_steps,
                        "walking": walking,
                    }
                    if walking:
                        fields |= {
                            "cadence_spm": round(rng.uniform(80, 120), 2),
                            "walking_speed_mps": round(rng.uniform(0.5, 1.4), 3),
                            "stride_length_m": round(rng.uniform(0.8, 1.5), 3),
                            "stride_time_cv_pct": round(rng.uniform(1, 9), 2),
                            "step_time_asymmetry_pct": round(rng.uniform(0, 15), 2),
                        }
                    t_us = int(t.timestamp() * 1e6)
                    lines.append(schema.point("gait_window", tags, fields, t_us))
                    for k in range(n_steps):
                        lines.append(schema.point("step", tags, {
                            "session_id": session, "step_index": k, "step_time_s": 0.5,
                        }, t_us + k * 5_000_000 // max(n_steps, 1)))
                    for e in acc(patient, t):
                        e.steps += n_steps
                        e.monitored_s += 5.0
                        if walking:
                            e.walking_s += 5.0
                            e.cadence.append(float(fields["cadence_spm"]))  # type: ignore[arg-type]
                            e.speed.append(float(fields["walking_speed_mps"]))  # type: ignore[arg-type]
                            e.stride.append(float(fields["stride_length_m"]))  # type: ignore[arg-type]
                            e.cv.append(float(fields["stride_time_cv_pct"]))  # type: ignore[arg-type]
                            e.asym.append(float(fields["step_time_asymmetry_pct"]))  # type: ignore[arg-type]
                    t += timedelta(seconds=5)
            for b in range(rng.randint(1, 4)):
                t = day + timedelta(hours=8 + 3 * b, minutes=rng.randint(0, 59))
                duration = round(rng.uniform(10, 300), 1)
                lines.append(schema.point("gait_bout", tags, {
                    "session_id": session, "bout_index": b, "duration_s": duration,
                    "n_steps": int(duration * 1.7), "walking_speed_mps": 1.0,
                }, int(t.timestamp() * 1e6)))
                for e in acc(patient, t):
                    e.bouts.append(duration)
            for kind in schema.EVENT_TYPES:
                for _ in range(rng.randint(0, 3)):
                    t = day + timedelta(seconds=rng.randint(0, 86399))
                    lines.append(schema.point("gait_event", tags, {
                        "session_id": session, "event_type": kind,
                        "duration_s": round(rng.uniform(0.5, 3), 2),
                    }, int(t.timestamp() * 1e6)))
                    for e in acc(patient, t):
                        e.events[kind] += 1
            for h in (9, 21):
                t = day + timedelta(hours=h)
                score = round(rng.uniform(0, 1), 3)
                lines.append(schema.point("fall_risk", {"clinic_id": clinic,
                                                        "patient_id": patient},
                                          {"risk_score": score, "model": "test-0"},
                                          int(t.timestamp() * 1e6)))
                for e in acc(patient, t):
                    e.risk.append(score)
    return lines, expected


def expected_fields(e: Expected) -> dict[str, float | int | None]:
    def mean(v: list[float]) -> float | None:
        return sum(v) / len(v) if v else None

    return {
        "steps": e.steps if e.monitored_s else None,
        "monitored_min": e.monitored_s / 60 if e.monitored_s else None,
        "walking_min": e.walking_s / 60 if e.walking_s else None,
        "cadence_mean_spm": mean(e.cadence),
        "walking_speed_mean_mps": mean(e.speed),
        "walking_speed_p90_mps": influx_percentile(e.speed, 90) if e.speed else None,
        "stride_length_mean_m": mean(e.stride),
        "stride_time_cv_mean_pct": mean(e.cv),
        "step_time_asymmetry_mean_pct": mean(e.asym),
        "bouts": len(e.bouts) or None,
        "bout_duration_max_s": max(e.bouts) if e.bouts else None,
        "turns": e.events.get("turn") or None,
        "near_falls": e.events.get("near_fall") or None,
        "falls": e.events.get("fall") or None,
        "fall_risk_mean": mean(e.risk),
        "fall_risk_max": max(e.risk) if e.risk else None,
    }


@pytest.mark.integration
async def test_daily_and_weekly_rollups_match_the_raw_points(influx: InfluxClient) -> None:
    today = day_of(datetime.now(UTC))
    start = today - timedelta(days=12)  # within the 90-day raw policy; crosses two Mondays
    lines, expected = synthetic_history(start, days=11)
    # Route every point to its measurement's retention policy, as the sink will.
    await influx.write_lines("\n".join(lines), retention_policy=None)
    end = start + timedelta(days=12)  # the last evening's walk may cross midnight
    for statement in schema.backfill_statements(influx.db, start, end):
        await influx.query(statement)

    for period in schema.PERIODS:
        rows = await influx.query_rows(
            f"SELECT * FROM {schema.qualified(period.target)}", epoch="s")
        got = {(r["patient_id"], datetime.fromtimestamp(r["time"], UTC)): r for r in rows}
        want = {(p, t): expected_fields(e) for (k, p, t), e in expected.items()
                if k == period.key}
        assert set(got) == set(want), period.key
        for key, fields in want.items():
            row = got[key]
            for name, value in fields.items():
                if value is None:
                    assert row.get(name) is None, (period.key, key, name)
                else:
                    assert row[name] == pytest.approx(value, rel=1e-9), (period.key, key, name)
        assert all(r["clinic_id"] for r in rows)
        assert len(rows) == len(want)

    # The daily step counts are also what the per-step points say (a different raw source).
    per_step = await influx.query_rows(
        f'SELECT count("step_index") AS "n" FROM {schema.qualified("step")} '
        f"WHERE time >= '{start:%Y-%m-%dT%H:%M:%SZ}' "
        'GROUP BY time(1d), "patient_id" fill(none)',
        epoch="s")
    daily = await influx.query_rows(
        f'SELECT "steps", "patient_id" FROM {schema.qualified("patient_daily")}', epoch="s")
    assert {(r["patient_id"], r["time"]): r["n"] for r in per_step} == {
        (r["patient_id"], r["time"]): r["steps"] for r in daily if r["steps"]}

    # Backfilling again changes nothing (the rollup points are overwritten, not added).
    for statement in schema.backfill_statements(influx.db, start, end):
        await influx.query(statement)
    again = await influx.query_rows(
        f'SELECT count("steps") AS "n" FROM {schema.qualified("patient_daily")}')
    assert again[0]["n"] == len(daily)


def test_fold_lines_merges_fields_of_the_same_point_like_influxdb() -> None:
    from justwalk.schema import fold_lines

    lines = ['step,patient_id=p\\ 1 a=1i,s="x, y=z" 5',
             'step,patient_id=p\\ 1 b=2.5 5',
             'step,patient_id=p\\ 1 a=3i 6']
    assert fold_lines(lines) == {
        ("step,patient_id=p\\ 1", "5"): {"a": "1i", "s": '"x, y=z"', "b": "2.5"},
        ("step,patient_id=p\\ 1", "6"): {"a": "3i"}}


def test_the_clinic_of_a_line_is_its_tag_and_nothing_else() -> None:
    tags = {"clinic_id": "clinic-a", "patient_id": "pt-1", "device_id": "d-1"}
    plain = schema.line("step", tags, {"session_id": 's,clinic_id=evil x'}, 1)
    assert schema.clinic_of_line(plain) == "clinic-a"  # not the look-alike in a string field
    assert schema.tags_of_line(plain) == tags
    odd = {"clinic_id": "c 1,x=y", "patient_id": "p\\q"}  # escaped characters, a backslash
    line = schema.line("m\\,n", odd, {"v": 1.0}, 1)
    assert schema.clinic_of_line(line) == "c 1,x=y" and schema.tags_of_line(line) == odd
    assert schema.clinic_of_line(schema.line("m", {"patient_id": "p"}, {"v": 1}, 1)) is None
    assert schema.clinic_of_line(schema.line("m", {"xclinic_id": "c"}, {"v": 1}, 1)) is None
    assert schema.clinic_of_line(schema.line("m", {"clinic_id": ""}, {"v": 1}, 1)) is None
