"""Latency with patients streaming in real time through the whole pipeline.

Simulated devices stream over WebSockets to the gateway, one processor, the sink and the
alert service (the child processes production runs), with stumbles and falls injected.
Two latencies are read back: gateway receipt -> point stored in InfluxDB (queryable), as
the sink measures it for every record (``sinks.latency``, its log line at stop), and
gateway receipt -> fall/near-fall alert at the clinic's webhook (``chunk_received_at_us``
of each delivered alert).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.registry import provision
from justwalk.alert_receiver import AlertReceiver, channels_for
from justwalk.config import Settings
from justwalk.kafka_topics import ensure_topics
from justwalk.pipeline import Pipeline
from justwalk.simulator.events import with_random_events
from justwalk.simulator.run import default_profiles, prepare_patients, stream_patients

CLINIC = "clinic-bench"
_PERCENTILES = r": n=(\d+) p50=([\d.]+)s p90=([\d.]+)s p99=([\d.]+)s max=([\d.]+)s"
_LATENCY = re.compile(r"latency gateway receipt -> InfluxDB" + _PERCENTILES)
_STAGES = {"processor": re.compile(r"latency gateway receipt -> sent by the processor"
                                   + _PERCENTILES),
           "sink": re.compile(r"latency sent by the processor -> InfluxDB" + _PERCENTILES)}


@dataclass
class RealtimeRun:
    """What the real-time run measured."""

    patients: int
    chunks: int
    rejected: int
    to_influx: tuple[int, float, float, float] | None
    """(records, p50, p99, max) seconds, gateway receipt -> InfluxDB."""
    stages: dict[str, tuple[int, float, float, float]]
    """The same split at the processor's send: ``processor`` (receipt -> sent) and ``sink``
    (sent -> InfluxDB)."""
    alerts: list[float]
    """Gateway receipt -> webhook of each fall and near-fall alert (s)."""
    injected: int
    processor_rss_mb: tuple[float, float]
    """The processor's resident memory once it owned its partitions, and its peak."""
    cpu: dict[str, float]
    """CPU seconds per second while the devices streamed, per process."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def realtime(base: Settings, work: Path, *, patients: int, duration_s: float,
                   chunk_s: float, events: int, seed: int = 3) -> RealtimeRun:
    """Stream ``patients`` for ``duration_s`` in real time; measure the latencies."""
    settings = base.replace(gateway_port=_free_port(), device_registry=work / "devices.json",
                            alert_channels=work / "channels.json",
                            alert_outbox=work / "alerts" / "outbox.sqlite3",
                            alert_suppression_s=5.0, sink_latency_report_s=3600.0)
    await ensure_topics(settings)
    receiver = AlertReceiver(secret=b"benchmark-webhook-secret")
    await receiver.start()
    settings.alert_channels.write_text(json.dumps(channels_for(receiver, [CLINIC])))
    creds = provision(settings.device_registry, work / "creds.json",
                      [(f"dev-{i:04d}", f"rt-{i:04d}", CLINIC) for i in range(patients)])
    rng = np.random.default_rng(seed)
    profiles = with_random_events(default_profiles(patients, rng), events, duration_s, rng,
                                  fall_fraction=0.5)
    sim = prepare_patients(creds, profiles, duration_s,
                           start_us=time.time_ns() // 1000 + 5_000_000,
                           window_s=settings.cadence_window_s, seed=seed)
    injected = sum(len(p.truth.events) for p in sim)
    pipeline = Pipeline(settings, log_dir=work / "logs", with_alerts=True)
    await asyncio.to_thread(pipeline.start)
    processor_pid = pipeline.procs["processor-0"].pid
    rss_start = _rss_mb(processor_pid, "VmRSS")
    rss_peak = rss_start
    pids = {name: p.pid for name, p in pipeline.procs.items()} | {"devices (this process)":
                                                                   os.getpid()}
    cpu_start, t_start = {k: _cpu_s(pid) for k, pid in pids.items()}, time.monotonic()
    cpu: dict[str, float] = {}
    try:
        stats = await stream_patients(pipeline.gateway_url, sim, speed=1.0, chunk_s=chunk_s)
        wall = time.monotonic() - t_start
        cpu = {k: (_cpu_s(pid) - cpu_start[k]) / wall for k, pid in pids.items()}
        await receiver.wait_for(injected, timeout_s=30)
        await asyncio.sleep(3.0)
        rss_peak = _rss_mb(processor_pid, "VmHWM")
    finally:
        await asyncio.to_thread(pipeline.stop)
        await receiver.stop()
    log = (work / "logs" / "sink.log").read_text()
    to_influx = _last(_LATENCY, log)
    stages = {k: v for k, rx in _STAGES.items() if (v := _last(rx, log)) is not None}
    alerts = [r.latency_s for r in receiver.received
              if "alert" in r.body and r.alert["type"] in ("fall", "near_fall")
              and r.latency_s is not None]
    return RealtimeRun(patients, sum(s.sent for s in stats),
                       sum(len(s.errors) for s in stats), to_influx, stages, alerts, injected,
                       (rss_start, rss_peak), cpu)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int, field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _last(rx: re.Pattern[str], log: str) -> tuple[int, float, float, float] | None:
    """(n, p50, p99, max) of the last latency line ``rx`` matches in the sink's log."""
    found = rx.findall(log)
    if not found:
        return None
    n, p50, _, p99, mx = found[-1]
    return int(n), float(p50), float(p99), float(mx)
