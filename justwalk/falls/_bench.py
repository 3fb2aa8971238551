"""Cost of ``FallMonitor.process`` per chunk and size of its packed state; prints a table.

    python -m justwalk.falls._bench [--data DIR] [--chunk-s 0.5] [--repeat 3]

Streams every Mobilise-D lab recording of ``DIR`` (default ``../shared/data/mobilised``;
simulated walking if absent) at 100 Hz in chunks of ``--chunk-s``, as the stream processor
does: the gait pipeline's released steps are computed first (not timed), then each
``FallMonitor.process`` call is timed alone. The first pass warms the JIT caches; the figures
are over the later passes. The state size is ``len(msgpack.packb(state.pack()))`` after each
chunk once 10 s of data are in (a full ring, mid-walk).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import msgpack
import numba
import numpy as np
import numpy.typing as npt

from justwalk.falls import FallMonitor, FallMonitorState
from justwalk.gait.pipeline import GaitPipeline

FS = 100.0
Chunks = list[tuple[npt.NDArray[np.float64], int, list[int]]]


def _recordings(data: Path) -> list[npt.NDArray[np.float64]]:
    from justwalk.evaluation import sisfall

    if (data / "data").is_dir():
        from scipy import io

        out = []
        for mat in sorted(data.glob("data/lab/*/*/data.mat")):
            d = io.loadmat(mat, squeeze_me=True, struct_as_record=False, mat_dtype=True)
            tm = d["data"].TimeMeasure1
            for test in tm._fieldnames:
                for trial in getattr(tm, test)._fieldnames:
                    imu = getattr(getattr(tm, test), trial).SU.LowerBack
                    x = np.concatenate([np.asarray(imu.Acc, float) * 9.80665,
                                        np.deg2rad(np.asarray(imu.Gyr, float))], axis=1)
                    out.append(sisfall.resample(x, float(imu.Fs.Acc), FS))
        return out
    from justwalk.simulator.gait_model import GaitProfile, synthesize

    rec = synthesize(GaitProfile(), 600.0, FS, np.random.default_rng(0))
    return [np.asarray(rec.samples, dtype=np.float64)]


def _chunks(x: npt.NDArray[np.float64], n: int) -> Chunks:
    """The recording's chunks with the steps the gait pipeline released for each."""
    pipeline = GaitPipeline(sensor_height_m=1.0)
    gait = pipeline.initial_state(t0_us=0, sample_rate_hz=FS)
    out = []
    for i in range(0, x.shape[0], n):
        c = np.ascontiguousarray(x[i : i + n])
        steps = [s.t_us for s in pipeline.process(gait, c[:, 0:3], c[:, 3:6]).steps]
        out.append((c, round(i * 1e6 / FS), steps))
    return out


def run(recordings: list[Chunks], repeat: int) -> dict[str, float]:
    """Per-call times (us) of ``FallMonitor.process`` and packed state sizes (bytes)."""
    mon = FallMonitor()
    times: list[float] = []
    sizes: list[int] = []
    pack_us: list[float] = []
    clock = time.perf_counter_ns
    for rep in range(repeat + 1):
        for chunks in recordings:
            state = mon.initial_state()
            for j, (x, t0, steps) in enumerate(chunks):
                a = clock()
                mon.process(state, x, t0, FS, steps)
                b = clock()
                if rep == 0:
                    continue
                times.append((b - a) / 1e3)
                if rep == 1 and t0 >= 10_000_000 and j % 10 == 0:
                    a = clock()
                    data = msgpack.packb(state.pack())
                    FallMonitorState.unpack(msgpack.unpackb(data))
                    pack_us.append((clock() - a) / 1e3)
                    sizes.append(len(data))
    t = np.asarray(times)
    return {"chunks": float(t.size), "median_us": float(np.median(t)),
            "p90_us": float(np.percentile(t, 90)), "p99_us": float(np.percentile(t, 99)),
            "mean_us": float(t.mean()), "state_median_b": float(statistics.median(sizes)),
            "state_max_b": float(max(sizes)), "pack_unpack_us": float(np.median(pack_us))}


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the table."""
    p = argparse.ArgumentParser(prog="python -m justwalk.falls._bench")
    here = Path.cwd() / ".." / "shared" / "data" / "mobilised"
    p.add_argument("--data", type=Path, default=here)
    p.add_argument("--chunk-s", type=float, default=0.5)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    n = round(args.chunk_s * FS)
    recs = [_chunks(x, n) for x in _recordings(args.data.resolve())]
    r = run(recs, args.repeat)
    print(f"FallMonitor.process, {args.chunk_s:g} s chunks at {FS:g} Hz, "
          f"{int(r['chunks'])} timed calls ({len(recs)} recordings x {args.repeat})")
    print(f"  machine: {platform.machine()} {os.cpu_count()} CPUs, {platform.processor() or ''}"
          f" Python {platform.python_version()}, numpy {np.__version__}, "
          f"numba {numba.__version__}")
    rows = [("per chunk, median", f"{r['median_us']:.1f} us"),
            ("per chunk, p90 / p99", f"{r['p90_us']:.1f} / {r['p99_us']:.1f} us"),
            ("per chunk, mean", f"{r['mean_us']:.1f} us"),
            ("packed state (msgpack), median / max", f"{r['state_median_b']:.0f} / "
                                                     f"{r['state_max_b']:.0f} bytes"),
            ("pack + msgpack + unpack, median", f"{r['pack_unpack_us']:.1f} us")]
    for name, value in rows:
        print(f"  {name:40s} {value:>20s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
