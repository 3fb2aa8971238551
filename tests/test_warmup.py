"""The compiled kernels' cache: written where ``NUMBA_CACHE_DIR`` says, and filled by the
container image at build time as the user the services run as."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_warm_up_fills_the_cache_directory_it_is_given(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "justwalk.warmup"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.startswith("compiled kernels ready in ")
    index = {p.name.split(".")[0] for p in tmp_path.rglob("*.nbi")}
    # the gait pipeline's block kernel and the fall front end's reduction, at least
    assert any(name.startswith("_kernels") for name in index), index
    assert any(name.startswith("_frontend") for name in index), index


def test_the_image_compiles_the_kernels_as_its_user_into_its_home() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    user = lines.index("USER justwalk")
    cache = next(i for i, line in enumerate(lines) if line.startswith("ENV NUMBA_CACHE_DIR="))
    warm = lines.index("RUN python -m justwalk.warmup")
    assert user < warm and cache < warm
    assert lines[cache].split("=", 1)[1].startswith("/var/lib/justwalk/")  # the user's home
