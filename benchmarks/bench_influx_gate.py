"""What the InfluxQL gate costs Grafana: query latency direct vs through the gate.

Starts InfluxDB with authentication (the local stack), one clinic as ``justwalk influx
setup`` makes it, 24 h of 5 s windows for 20 patients written as the sink writes, then runs
every query of the provisioned clinic overview dashboard as the clinic's read user, directly
and through the gate (in this process, as ``justwalk influx gate`` serves it), and prints
the latency per query round (all its queries, one after the other):

    .venv/bin/python -m benchmarks.bench_influx_gate [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from aiohttp import web

from justwalk import schema
from justwalk.config import Settings
from justwalk.localstack import LocalStack
from sinks.influx import InfluxClient
from sinks.influx_access import ReadUser, setup_clinics
from sinks.influx_gate import create_gate

CLINIC = "clinic-bench"
DASHBOARD = Path(__file__).resolve().parents[1] / "deploy/grafana/dashboards/clinic-overview.json"


def overview_queries() -> list[str]:
    """The clinic overview's panel queries, over the last 24 h."""
    board = json.loads(DASHBOARD.read_text())
    now_ms = time.time_ns() // 1_000_000
    tf = f"time >= {now_ms - 86_400_000}ms and time <= {now_ms}ms"
    return [t["query"].replace("$timeFilter", tf) for p in board["panels"]
            for t in p.get("targets", [])]


async def run(rounds: int) -> None:
    """Set up, load, measure both paths, print the table."""
    with LocalStack(influx_auth=True) as stack:
        s = stack.settings(Settings()).replace(influx_db="bench")
        reader = ReadUser(CLINIC, "read-bench", "bench-password-1")
        await setup_clinics(s.influx_url, s.influx_db, admin_user=s.influx_username,
                            admin_password=s.influx_password, readers=[reader])
        end_us = time.time_ns() // 1000
        lines = []
        for p in range(20):
            tags = {"clinic_id": CLINIC, "patient_id": f"pt-{p:03d}", "device_id": f"d-{p}"}
            for k in range(0, 86_400, 5):
                lines.append(schema.point(schema.MEASUREMENT_GAIT_WINDOW, tags, {
                    "window_s": 5.0, "n_steps": 8, "walking": k % 60 < 40,
                    "cadence_spm": 100.0 + p, "walking_speed_mps": 1.0,
                    "stride_time_cv_pct": 3.0}, end_us - k * 1_000_000))
        async with InfluxClient(s.influx_url, s.influx_db, per_clinic=True,
                                username=s.influx_username, password=s.influx_password,
                                timeout_s=120) as writer:
            for i in range(0, len(lines), 20_000):
                await writer.write_lines("\n".join(lines[i:i + 20_000]), retention_policy=None)
        runner = web.AppRunner(create_gate(s.influx_url), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        gate = f"http://127.0.0.1:{runner.addresses[0][1]}"
        db = schema.clinic_database(s.influx_db, CLINIC)
        queries = overview_queries()
        rows = []
        try:
            for name, url in (("direct", s.influx_url), ("through the gate", gate)):
                async with InfluxClient(url, db, username=reader.user,
                                        password=reader.password) as c:
                    for q in queries:  # warm up
                        await c.query(q)
                    times = []
                    for _ in range(rounds):
                        t0 = time.perf_counter()
                        for q in queries:
                            await c.query(q)
                        times.append((time.perf_counter() - t0) * 1000)
                times.sort()
                rows.append((name, statistics.median(times), times[int(0.99 * len(times))]))
        finally:
            await runner.cleanup()
    print(f"clinic overview dashboard: {len(queries)} queries per round, {rounds} rounds, "
          f"20 patients x 24 h of 5 s windows ({len(lines)} points)")
    print(f"{'path':<18} {'p50 ms':>8} {'p99 ms':>8}")
    for name, p50, p99 in rows:
        print(f"{name:<18} {p50:>8.1f} {p99:>8.1f}")


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    asyncio.run(run(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
