"""The local broker on memory and on s3 storage, side by side in one run.

    .venv/bin/python -m benchmarks.broker_storage [--patients 100] [--seconds 60]
                                                  [--acked 300]

For each storage (``LocalStack(broker_storage=...)``: Tansu on ``memory://``, and on
``s3://`` in moto's S3 server on loopback) on a fresh stack, on this machine:

1. produce: the patients' 0.5 s chunk messages (``benchmarks.load``) sent with acks=all,
   batched as a busy gateway's publisher batches them (msg/s);
2. acked one by one: ``--acked`` chunks, each sent and awaited alone (one record per
   produce request, as a gateway with one quiet device waits for its ack): msg/s and the
   ack latency p50/p99;
3. consume -> produce: the bare aiokafka loop of ``benchmarks.throughput`` (read each,
   write one small record, commit), msg/s, over the batched messages of 1, and over the
   ``--acked`` messages of 2, stored one record per produce request as a live stream
   stores them.

Tansu's s3 engine stores each produce request's records as one object; moto's server
lists a bucket's objects by scanning all of them, so the cost of a fetch grows with
everything stored so far: row 3b shows what that does to a live stream.

Prints one table. Every figure comes from this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaProducer

from benchmarks import load
from benchmarks.bench import machine
from benchmarks.throughput import bare_loop
from justwalk.config import Settings
from justwalk.kafka_topics import ensure_topics
from justwalk.localstack import BROKER_STORAGES, LocalStack


async def acked_one_by_one(settings: Settings, topic: str, msgs: list[load.Message]
                           ) -> tuple[float, float, float]:
    """(msg/s, p50 ms, p99 ms) of sending each message and awaiting its ack alone."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=False)
    await producer.start()
    try:
        latencies = []
        t0 = time.perf_counter()
        for key, value, headers in msgs:
            t = time.perf_counter()
            await producer.send_and_wait(topic, value, key=key, headers=headers)
            latencies.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
    finally:
        await producer.stop()
    ms = np.array(latencies) * 1e3
    return len(msgs) / total, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def measure(storage: str, msgs: list[load.Message], n_acked: int, work: Path) -> dict:
    """The three figures on a fresh stack with ``storage``."""
    out: dict = {}
    with LocalStack(log_dir=work / storage, broker_storage=storage) as stack:
        suffix = uuid.uuid4().hex[:6]
        settings = stack.settings(Settings()).replace(topic_chunks=f"bench.chunks.{suffix}")

        async def run() -> None:
            await ensure_topics(settings)
            t = time.perf_counter()
            await load.preload(settings, settings.topic_chunks, msgs)
            out["produce"] = len(msgs) / (time.perf_counter() - t)
            out["acked"] = await acked_one_by_one(settings, f"bench.acked.{suffix}",
                                                  msgs[:n_acked])
            out["loop"] = await bare_loop(settings, settings.topic_chunks, len(msgs))
            out["loop_small"] = await bare_loop(settings, f"bench.acked.{suffix}", n_acked)

        asyncio.run(run())
    return out


def main(argv: list[str] | None = None) -> None:
    """Run both storages and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--acked", type=int, default=300)
    args = parser.parse_args(argv)
    msgs = load.messages(args.patients, args.seconds, 0.5, load.recording_pool(args.seconds))
    size = sum(len(v) for _, v, _ in msgs) / len(msgs)
    print(f"{len(msgs):,} chunk messages ({size:.0f} B each) of {args.patients} patients",
          flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        for storage in BROKER_STORAGES:
            print(f"  {storage} ...", flush=True)
            results[storage] = measure(storage, msgs, min(args.acked, len(msgs)), Path(tmp))
    print(f"\n{machine()}\n")
    print("| local broker storage | " + " | ".join(BROKER_STORAGES) + " |")
    print("|---|" + "---:|" * len(BROKER_STORAGES))
    rows = [
        ("produce, batched, acks=all (msg/s)", lambda r: f"{r['produce']:,.0f}"),
        ("produce, one at a time, acks=all (msg/s)", lambda r: f"{r['acked'][0]:,.0f}"),
        ("  ack latency p50 / p99 (ms)",
         lambda r: f"{r['acked'][1]:.1f} / {r['acked'][2]:.1f}"),
        ("consume -> produce loop, batched input (msg/s)", lambda r: f"{r['loop']:,.0f}"),
        ("consume -> produce loop, one record per batch (msg/s)",
         lambda r: f"{r['loop_small']:,.0f}"),
    ]
    for name, cell in rows:
        print(f"| {name} | " + " | ".join(cell(results[s]) for s in BROKER_STORAGES) + " |")


if __name__ == "__main__":
    main()
