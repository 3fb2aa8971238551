"""A simulated 6-Minute Walk Test through the whole pipeline, with the feedback latency.

One simulated patient (105 steps/min, walking speed falling ``decline`` % per minute: the
fatigue of ``GaitProfile.speed_decline_pct_per_min``) starts a prescribed 6MWT (cadence
band 110-120 steps/min, progress every 30 s) from the device, over the real gateway, Kafka
(Tansu), the processor, the sink, InfluxDB and a SQLite database (the same child processes
production runs). Read back: the session's result and minutes in the database and InfluxDB,
and every feedback message the device received, with its delay from the gateway's receipt
of the chunk that caused it (``received_at_us`` in the message) to its arrival.

    python -m benchmarks.walk_test [--speed 4] [--decline 4]

``--speed`` > 1 streams faster than real time (chunks are still paced); the delay of each
message is measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from ingest.registry import provision
from justwalk.config import Settings
from justwalk.db import Repository, database_url
from justwalk.db.engine import create, upgrade
from justwalk.localstack import LocalStack
from justwalk.pipeline import Pipeline
from justwalk.schema import (
    MEASUREMENT_WALK_TEST,
    MEASUREMENT_WALK_TEST_MINUTE,
    clinic_database,
    qualified,
)
from justwalk.simulator.device import SimulatedDevice, TrainingScript
from justwalk.simulator.gait_model import GaitProfile, GaitTruth, synthesize
from justwalk.simulator.run import simulation_start_us
from sinks.influx import InfluxClient

CLINIC, PATIENT, DEVICE = "clinic-walk", "pt-6mwt", "dev-6mwt"
DURATION_S = 385.0
TEST_START_S = 5.0
WALKING_S = (4.0, 378.0)
CADENCE_SPM = 105.0
PRESCRIPTION = {"session_type": "6mwt", "times_per_week": 1, "cadence_band_spm": [110, 120],
                "feedback_progress_every_s": 30}


@dataclass
class WalkTestRun:
    """What one simulated 6MWT gave."""

    db_session: dict[str, Any]
    influx_test: list[dict[str, Any]]
    influx_minutes: list[dict[str, Any]]
    feedback: list[tuple[int, dict[str, Any]]]
    truth: GaitTruth
    profile: GaitProfile
    start_us: int
    session_answers: list[dict[str, Any]] = field(default_factory=list)

    def latencies_s(self) -> list[float]:
        """Gateway receipt of the triggering chunk -> arrival at the device, per message."""
        return [(at - m["received_at_us"]) / 1e6 for at, m in self.feedback
                if m.get("received_at_us") is not None]

    def true_steps_per_minute(self) -> list[int]:
        """The simulation's true steps in each minute of the test."""
        t = self.truth.step_times_s
        return [int(np.sum((t >= TEST_START_S + 60 * m) & (t < TEST_START_S + 60 * (m + 1))))
                for m in range(6)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _poll(fn: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await fn()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.5)


async def six_minute_walk(base: Settings, work: Path, *, speed: float = 4.0,
                          decline_pct_per_min: float = 4.0, seed: int = 5) -> WalkTestRun:
    """Run the simulated 6MWT (see the module docstring) on the stack of ``base``."""
    settings = base.replace(gateway_port=_free_port(), device_registry=work / "devices.json",
                            database_file=work / "justwalk.sqlite3", database_url="")
    engine = create(database_url(settings))
    upgrade(engine)
    repo = Repository(engine)
    repo.add_clinic(CLINIC)
    repo.create_patient(CLINIC, PATIENT)
    rx = repo.create_prescription(CLINIC, PATIENT, PRESCRIPTION, today=date(2026, 1, 1))
    [cred] = provision(settings.device_registry, work / "creds.json", [(DEVICE, PATIENT, CLINIC)])
    profile = GaitProfile(cadence_spm=CADENCE_SPM, walking_s=(WALKING_S,),
                          speed_decline_pct_per_min=decline_pct_per_min)
    rec = synthesize(profile, DURATION_S, 100.0, np.random.default_rng(seed))
    start_us = simulation_start_us(time.time_ns() // 1000, DURATION_S, speed)
    pipeline = Pipeline(settings, log_dir=work / "logs")
    pipeline.start()
    try:
        device = SimulatedDevice(
            cred, pipeline.gateway_url, sample_rate_hz=100.0, speed=speed,
            session_id="walk-1", training=TrainingScript(
                "6mwt", start_s=TEST_START_S, prescription_id=rx["prescription_id"]))
        stats = await device.run(rec.samples, start_us)

        async def finished() -> dict[str, Any] | None:
            row = repo.device_session(DEVICE, "walk-1")
            return row if row is not None and row["status"] != "running" else None

        db_session = await _poll(finished, 60.0)
        async with InfluxClient(settings.influx_url,
                                clinic_database(settings.influx_db, CLINIC)) as client:
            async def rows(m: str) -> list[dict[str, Any]]:
                return await client.query_rows(f"SELECT * FROM {qualified(m)}", epoch="u",
                                               missing_ok=True)

            test = await _poll(lambda: rows(MEASUREMENT_WALK_TEST), 60.0)
            minutes = await _poll(lambda: rows(MEASUREMENT_WALK_TEST_MINUTE), 30.0)
    finally:
        pipeline.stop()
        engine.dispose()
    return WalkTestRun(db_session or {}, test, minutes, stats.feedback, rec.truth, profile,
                       start_us, stats.session_answers)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(run: WalkTestRun, speed: float) -> str:
    """The run as Markdown tables."""
    lat = run.latencies_s()
    by_kind: dict[str, list[float]] = {}
    for at, m in run.feedback:
        if m.get("received_at_us") is not None:
            by_kind.setdefault(m["kind"], []).append((at - m["received_at_us"]) / 1e6)
    lines = [f"Simulated 6MWT at {speed:g}x real time, fatigue "
             f"{run.profile.speed_decline_pct_per_min:g} %/min", "",
             "| feedback | n | p50 (s) | p99 (s) | max (s) |", "|---|---|---|---|---|"]
    for kind, v in sorted(by_kind.items()):
        lines.append(f"| {kind} | {len(v)} | {_pct(v, 50):.3f} | {_pct(v, 99):.3f} | "
                     f"{max(v):.3f} |")
    lines.append(f"| all | {len(lat)} | {_pct(lat, 50):.3f} | {_pct(lat, 99):.3f} | "
                 f"{max(lat, default=float('nan')):.3f} |")
    result = run.db_session.get("result") or {}
    truth = run.true_steps_per_minute()
    lines += ["", "| minute | steps (true) | steps | distance (m) | speed (m/s) | cadence |",
              "|---|---|---|---|---|---|"]
    for m, n in zip(run.db_session.get("minutes", []), truth, strict=False):
        lines.append(f"| {m['minute']} | {n} | {m['steps']} | {m['distance_m']:.1f} | "
                     f"{m['speed_mps']:.3f} | {m['cadence_spm']:.1f} |")
    lines += ["", f"status {run.db_session.get('status')}, distance "
              f"{result.get('distance_m')} ± {result.get('distance_uncertainty_m')} m, "
              f"DWI {result.get('dwi_pct')} %, DWI (minute 2) {result.get('dwi_minute2_pct')} %,"
              f" fatigability {result.get('fatigability')}"]
    return "\n".join(lines)


def main() -> None:
    """Start a local stack, run the 6MWT, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speed", type=float, default=4.0)
    ap.add_argument("--decline", type=float, default=4.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="justwalk-6mwt-") as tmp:
        work = Path(tmp)
        stack = LocalStack(log_dir=work / "stack-logs", workdir=work / "stack")
        stack.start()
        try:
            base = stack.settings(Settings()).replace(topic_partitions=4)
            run = asyncio.run(six_minute_walk(base, work, speed=args.speed,
                                              decline_pct_per_min=args.decline))
        finally:
            stack.stop()
    print(report(run, args.speed))


if __name__ == "__main__":
    main()
