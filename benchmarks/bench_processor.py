"""Per-chunk cost of the stream processor's work, stage by stage, measured in one run.

    .venv/bin/python benchmarks/bench_processor.py [--patients 200] [--seconds 60]

Prints a table: microseconds per chunk for each stage (wire decode, state load, gait
maths, state snapshot, record encoding; load and snapshot as the processor does them:
a state is decoded once and written every ``--snapshot-every`` chunks) and the patients
one core could serve at 100 Hz if it did nothing else. Kafka and Faust
overheads are not included: this is the ceiling the processor's own code sets.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from justwalk.simulator.gait_model import GaitProfile, synthesize
from justwalk.wire import ImuChunk, Placement, decode_chunk, encode_chunk
from stream_processors.session import SessionProcessor


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--chunk-s", type=float, default=0.5)
    ap.add_argument("--snapshot-every", type=int, default=20,
                    help="the processor writes a state every this many chunks "
                         "(Settings.processor_snapshot_every)")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    rec = synthesize(GaitProfile(cadence_spm=105.0, walking_s=((0.0, args.seconds),)),
                     args.seconds, 100.0, rng)
    per = round(args.chunk_s * 100)
    t0 = 1_700_000_000_000_000
    messages = []
    for p in range(args.patients):
        for k in range(0, rec.samples.shape[0] - per + 1, per):
            messages.append((p, encode_chunk(ImuChunk(
                f"pt-{p:05d}", f"dev-{p:05d}", "s1", k // per, t0 + k * 10_000, 100.0,
                Placement.LOWER_BACK, rec.samples[k:k + per]))))
    # interleave patients as a partition would deliver them
    messages.sort(key=lambda m: (decode_chunk(m[1]).sequence, m[0]))

    proc = SessionProcessor(window_s=5.0)
    saved = {p: proc.dump_state(proc.new_state()) for p in range(args.patients)}
    live: dict[int, object] = {}
    since: dict[int, int] = dict.fromkeys(range(args.patients), 0)
    totals = dict.fromkeys(("decode", "state load", "gait maths", "snapshot", "encode"), 0.0)
    n_records = 0
    for p, msg in messages:
        a = time.perf_counter()
        chunk = decode_chunk(msg)
        b = time.perf_counter()
        # as stream_processors.live_state: decoded once, written every N chunks
        if p not in live:
            live[p] = proc.load_state(saved[p])
        state = live[p]
        c = time.perf_counter()
        result = proc.process(state, chunk)  # type: ignore[arg-type]
        d = time.perf_counter()
        since[p] += 1
        if since[p] >= args.snapshot_every:
            saved[p] = proc.dump_state(state)  # type: ignore[arg-type]
            since[p] = 0
        e = time.perf_counter()
        out = [r.to_json() for r in result.steps] + [r.to_json() for r in result.windows]
        f = time.perf_counter()
        n_records += len(out)
        for key, dt in zip(totals, (b - a, c - b, d - c, e - d, f - e), strict=True):
            totals[key] += dt
    n = len(messages)
    total = sum(totals.values())
    print(f"{n} chunks of {per} samples, {args.patients} patients, {n_records} records\n")
    print(f"{'stage':<12} {'us/chunk':>9} {'share':>7}")
    for key, v in totals.items():
        print(f"{key:<12} {v / n * 1e6:>9.1f} {v / total:>7.1%}")
    print(f"{'total':<12} {total / n * 1e6:>9.1f}")
    per_s = 1 / args.chunk_s
    print(f"\npatients per core at 100 Hz ({per_s:g} chunks/s each), processor code only: "
          f"{n / total / per_s:,.0f}")


if __name__ == "__main__":
    main()
