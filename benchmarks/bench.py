"""``make bench``: the processor's throughput, memory, state size and latency, in one run.

    .venv/bin/python -m benchmarks.bench [--patients 2000] [--seconds 30]
                                         [--realtime-patients 500] [--realtime-seconds 60]

Starts the local stack (Tansu, InfluxDB) and measures, in this order, on this machine:

1. the core alone (decode, gait pipeline, fall monitor, fall risk, JSON) per 0.5 s chunk;
2. a bare aiokafka consume -> produce loop over ``--patients`` patients' pre-loaded 0.5 s
   chunks, then ``justwalk processor`` on the same messages (throughput and the ratio);
3. the processor on the same patients' 1 s chunks;
4. two processor processes on one topic, the second joining a third of the way in
   (throughput, and whether their records equal the single processor's);
5. resident memory (peak, minus an idle processor's) per 1,000 patients; stored state per
   session;
6. ``--realtime-patients`` devices streaming in real time through the gateway, processor,
   sink and alert service: gateway receipt -> InfluxDB, and -> fall alert at the webhook.

Prints one table with the machine it ran on. Every figure comes from this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks import load
from benchmarks.core import core, core_rss_mb
from benchmarks.realtime import realtime
from benchmarks.throughput import bare_loop, idle_rss_mb, processor_run
from justwalk.config import Settings
from justwalk.localstack import LocalStack


def machine() -> str:
    """One line about this machine."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores{mem}, "
            f"Python {platform.python_version()}")


def _row(name: str, value: str, target: str = "") -> str:
    return f"| {name} | {value} | {target} |"


async def _throughput(base: Settings, work: Path, args: argparse.Namespace) -> dict:
    pool = load.recording_pool(args.seconds)
    out: dict = {}
    t = time.perf_counter()
    half = load.messages(args.patients, args.seconds, 0.5, pool)
    whole = load.messages(args.patients, args.seconds, 1.0, pool)
    print(f"  {len(half):,} + {len(whole):,} messages made in {time.perf_counter() - t:.0f} s",
          flush=True)
    # 200 patients over the whole duration (the first messages of ``half`` are everyone's
    # first seconds, before any walking bout)
    out["core"] = core(load.messages(min(args.patients, 200), args.seconds, 0.5, pool))
    print(f"  core: {out['core'].total_us:.0f} us per chunk", flush=True)
    out["core_rss"] = core_rss_mb(half, load.messages(20, args.seconds, 0.5, pool))
    print(f"  core states in-process: {out['core_rss']:.0f} MB", flush=True)
    topic_half = f"bench.half.{uuid.uuid4().hex[:6]}"
    topic_whole = f"bench.whole.{uuid.uuid4().hex[:6]}"
    from justwalk.kafka_topics import ensure_topics

    await ensure_topics(base.replace(topic_chunks=topic_half))
    await ensure_topics(base.replace(topic_chunks=topic_whole))
    await load.preload(base, topic_half, half)
    await load.preload(base, topic_whole, whole)
    print("  pre-loaded", flush=True)
    out["bare"] = await bare_loop(base, topic_half, len(half))
    print(f"  bare loop: {out['bare']:,.0f} msg/s", flush=True)
    out["idle_rss"] = await idle_rss_mb(base, work)
    out["half"] = await processor_run(base, topic_half, len(half), work, "half")
    print(f"  processor 0.5 s: {out['half'].per_s:,.0f} chunks/s", flush=True)
    out["whole"] = await processor_run(base, topic_whole, len(whole), work, "whole")
    print(f"  processor 1 s: {out['whole'].per_s:,.0f} chunks/s", flush=True)
    out["two"] = await processor_run(base, topic_half, len(half), work, "two", processors=2,
                                     second_at=1 / 3)
    print(f"  two processors: {out['two'].per_s:,.0f} chunks/s", flush=True)
    return out


def report(args: argparse.Namespace, tp: dict, rt: object | None) -> str:
    """The table."""
    c, half, whole, two = tp["core"], tp["half"], tp["whole"], tp["two"]
    ratio = half.per_s / tp["bare"]
    rss = max(half.rss_mb)
    per_1000 = (rss - tp["idle_rss"]) / args.patients * 1000
    states = np.asarray(c.state_bytes or [0])  # mid-run, while the patients walk
    same = two.points == half.points
    lines = [
        f"JustWalk processor benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {machine()}",
        f"input: {args.patients:,} patients x {args.seconds:g} s at 100 Hz (simulated clinic "
        "population and the real Mobilise-D MS recording), pre-loaded in the local broker "
        "(Tansu), 8 partitions",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        _row("bare aiokafka consume -> produce loop (msg/s)", f"{tp['bare']:,.0f}"),
        _row("processor, 0.5 s chunks (chunks/s)", f"{half.per_s:,.0f}", ">= 4,000"),
        _row("processor / bare loop", f"{ratio:.2f}", ">= 0.1 (moonshot 0.5)"),
        _row("patients at 100 Hz per process, 0.5 s chunks", f"{half.per_s / 2:,.0f}",
             ">= 2,000 (moonshot 10,000)"),
        _row("processor, 1 s chunks (chunks/s)", f"{whole.per_s:,.0f}"),
        _row("patients at 100 Hz per process, 1 s chunks", f"{whole.per_s:,.0f}"),
        _row("core only, per 0.5 s chunk (us): decode / process / risk / JSON = total",
             f"{c.decode_us:.0f} / {c.process_us:.0f} / {c.risk_us:.0f} / {c.json_us:.0f} = "
             f"{c.total_us:.0f}"),
        _row("processor RSS, peak with all patients / idle (MB)", f"{rss:.0f} / "
             f"{tp['idle_rss']:.0f}"),
        _row("RSS per 1,000 active patients (MB, above idle)", f"{per_1000:.0f}", "<= 100"),
        _row("  of which the patients' states (same work in-process, no Kafka; MB per 1,000)",
             f"{tp['core_rss'] / args.patients * 1000:.0f}"),
        _row("session state mid-walk (bytes, median / p99 / max)",
             f"{np.median(states):,.0f} / {np.percentile(states, 99):,.0f} / "
             f"{states.max():,.0f}", "<= 20,000"),
        _row("two processors on one topic, second joining at 1/3 (chunks/s)",
             f"{two.per_s:,.0f}"),
        _row("two processors: records identical to one processor's",
             f"{'yes' if same else 'NO'} ({len(two.points):,} points)", "yes"),
    ]
    if rt is not None:
        infl = rt.to_influx  # type: ignore[attr-defined]
        alerts = np.asarray(rt.alerts or [np.nan])  # type: ignore[attr-defined]
        lines += [
            _row(f"gateway receipt -> InfluxDB, {rt.patients} patients real time "  # type: ignore[attr-defined]
                 "(p50 / p99 / max s)",
                 "-" if infl is None else f"{infl[1]:.2f} / {infl[2]:.2f} / {infl[3]:.2f} "
                 f"({infl[0]:,} records)", "p99 <= 1.5 (moonshot 0.5)"),
            *[_row(f"  of which {what} (p50 / p99 / max s)",
                   f"{v[1]:.2f} / {v[2]:.2f} / {v[3]:.2f}")
              for stage, what in (("processor", "gateway receipt -> sent by the processor"),
                                  ("sink", "sent by the processor -> InfluxDB"))
              if (v := rt.stages.get(stage)) is not None],  # type: ignore[attr-defined]
            _row(f"processor RSS with {rt.patients} patients in real time: peak / at start, "  # type: ignore[attr-defined]
                 "per 1,000 patients (MB)",
                 f"{rt.processor_rss_mb[1]:.0f} / {rt.processor_rss_mb[0]:.0f}, "  # type: ignore[attr-defined]
                 f"{(rt.processor_rss_mb[1] - rt.processor_rss_mb[0]) / rt.patients * 1000:.0f}",  # type: ignore[attr-defined]
                 "<= 100 per 1,000"),
            _row("CPU while streaming (cores busy, of "
                 f"{os.cpu_count()}): " + ", ".join(rt.cpu),  # type: ignore[attr-defined]
                 " / ".join(f"{v:.2f}" for v in rt.cpu.values())),  # type: ignore[attr-defined]
            _row("fall and near-fall alerts, gateway -> webhook (p50 / p99 s)",
                 f"{np.nanmedian(alerts):.2f} / {np.nanpercentile(alerts, 99):.2f} "
                 f"({len(rt.alerts)} alerts, {rt.injected} injected)", "p99 <= 1"),  # type: ignore[attr-defined]
        ]
    return "\n".join(lines)


def main() -> None:
    """Run everything and print the table."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--realtime-patients", type=int, default=500)
    ap.add_argument("--realtime-seconds", type=float, default=60.0)
    ap.add_argument("--events", type=int, default=60)
    ap.add_argument("--chunk-s", type=float, default=0.5,
                    help="chunk length of the real-time devices")
    ap.add_argument("--checkpoint-s", type=float,
                    default=Settings().processor_checkpoint_interval_s,
                    help="the processors' checkpoint interval")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="justwalk-bench-") as tmp:
        work = Path(tmp)
        stack = LocalStack(log_dir=work / "stack-logs", workdir=work / "stack")
        stack.start()
        try:
            base = stack.settings(Settings()).replace(
                topic_partitions=8, processor_checkpoint_interval_s=args.checkpoint_s)
            print("throughput on pre-loaded messages ...", flush=True)
            tp = asyncio.run(_throughput(base, work, args))
            rt = None
            if args.realtime_patients > 0:
                print(f"{args.realtime_patients} patients in real time for "
                      f"{args.realtime_seconds:g} s ...", flush=True)
                rt_dir = work / "realtime"
                rt_dir.mkdir()
                rt = asyncio.run(realtime(base, rt_dir, patients=args.realtime_patients,
                                          duration_s=args.realtime_seconds,
                                          chunk_s=args.chunk_s, events=args.events))
        finally:
            stack.stop()
    print()
    print(report(args, tp, rt))


if __name__ == "__main__":
    main()
