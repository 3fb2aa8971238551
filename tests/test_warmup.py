"""The compiled kernels' cache: written where ``NUMBA_CACHE_DIR`` says, and filled by the
container image at build time as the user the services run as."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_warm_up_fills_the_cache_directory_it_is_given_with_every_kernel_the_cores_call(
        tmp_path: Path) -> None:
    """``python -m justwalk.warmup`` (the image's build step) with ``NUMBA_CACHE_DIR`` set
    writes its kernels there, and leaves none that the processor's path calls from Python
    uncompiled: kernels called only when something happens (a step's length, a
    sit-to-stand, a turn, a fall candidate) are compiled too, not on a live chunk.

    One process does both (a cold compile costs tens of seconds on a CI machine): it runs
    the module as ``-m`` does, then lists the kernels it left without a signature.
    """
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    code = (
        "import runpy; runpy.run_module('justwalk.warmup', run_name='__main__');"
        "import numba, justwalk.gait._kernels as g, justwalk.falls._frontend as f;"
        "import justwalk.falls._advance as a;"
        "print(','.join(f'{m.__name__}.{k}' for m in (g, f, a) for k, v in vars(m).items()"
        " if isinstance(v, numba.core.registry.CPUDispatcher) and not v.signatures));"
        "print(' '.join(str(t.dtype) + ('-ro' if not t.mutable else '')"
        " for t in (sig[0] for sig in a.advance.signatures)))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    ready, never_line, advance_samples = out.stdout.splitlines()
    assert ready.startswith("compiled kernels ready in ")
    index = {p.name.split(".")[0] for p in (tmp_path / "cache").rglob("*.nbi")}
    # the gait pipeline's block kernel and the fall front end's reduction, at least
    assert any(name.startswith("_kernels") for name in index), index
    assert any(name.startswith("_frontend") for name in index), index
    never = set(filter(None, never_line.strip().split(",")))
    # what the processor's path calls from Python: the pipeline's block kernel (and
    # a window's values, nothing else from pipeline.py), step lengths, the fall monitor's
    # per-chunk kernel and its candidate scan
    pipeline_calls = {w.split("(")[0] for w in
                      (ROOT / "justwalk/gait/pipeline.py").read_text().split("_kernels.")[1:]
                      if "(" in w.split()[0]}
    assert pipeline_calls == {"pipeline_block", "window_values"}, pipeline_calls
    called = {"justwalk.gait._kernels.pipeline_block", "justwalk.gait._kernels.step_length",
              "justwalk.gait._kernels.window_values",
              "justwalk.falls._advance.advance", "justwalk.falls._frontend._next_candidate"}
    assert not (never & called), sorted(never & called)
    # the fall monitor's kernel for the wire's read-only float32 samples (what decode_chunk
    # gives the processor), not only for the float64 samples warm_up feeds
    assert "float32-ro" in advance_samples.split(), advance_samples


def test_the_image_compiles_the_kernels_as_its_user_into_its_home() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    user = lines.index("USER justwalk")
    cache = next(i for i, line in enumerate(lines) if line.startswith("ENV NUMBA_CACHE_DIR="))
    warm = lines.index("RUN python -m justwalk.warmup")
    assert user < warm and cache < warm
    assert lines[cache].split("=", 1)[1].startswith("/var/lib/justwalk/")  # the user's home


def test_freeze_heap_takes_the_start_up_objects_out_of_full_collections() -> None:
    """After ``freeze_heap`` a full collection walks only what was allocated since (in a
    child process: freezing the test runner's own heap would outlive the test)."""
    code = (
        "import gc; from justwalk.warmup import freeze_heap, warm_up; warm_up(); gc.collect();"
        "before = len(gc.get_objects()); frozen = freeze_heap(); after = len(gc.get_objects());"
        "print(before, frozen, after)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=True)
    before, frozen, after = map(int, out.stdout.split())
    assert before > 50_000  # imports and compiled kernels
    assert frozen >= before and after < 1_000, (before, frozen, after)
