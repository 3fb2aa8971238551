"""Headless Chromium: the one renderer of the report's PDF, and the browser of its tests.

Debian's ``chromium`` package is used: :func:`ensure_chromium` installs it with apt-get when
missing and running as root, like ``justwalk.localstack.ensure_influxd`` does InfluxDB
(``make chromium``, ``make test`` and the browser tests call it); rendering itself never
installs anything and says what to install instead.
Every run gets a new, empty profile directory and the flags that keep a headless browser
off the network (no sync, component updates, background networking or QUIC) and able to run
as root in a container (``--no-sandbox``). Pages are loaded from ``file://`` or loopback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "chromium"
NAMES = ("chromium", "chromium-browser")
TIMEOUT_S = 90.0
WINDOW = (1280, 1800)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio")
_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": tempfile.gettempdir(), "LANG": "C.UTF-8"}


class BrowserError(RuntimeError):
    """Chromium is missing and cannot be installed, or failed to render."""


def find_chromium(configured: str = "") -> Path | None:
    """Chromium: the ``configured`` binary if given, else the one on PATH, or None.

    ``configured``: ``Settings.chromium_binary``; a path that is no executable file there
    is a ``BrowserError`` naming the setting.
    """
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BrowserError(f"chromium_binary {configured!r} is not an executable file: "
                               "install Debian's chromium or correct JUSTWALK_CHROMIUM_BINARY")
        return path
    for name in NAMES:
        found = shutil.which(name) or shutil.which(name, path=_ENV["PATH"])
        if found:
            return Path(found)
    return None


def ensure_chromium(*, install: bool = True) -> Path:
    """Path of Chromium; installs Debian's ``chromium`` package if allowed (root + apt)."""
    found = find_chromium()
    if found is not None:
        return found
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    apt = shutil.which("apt-get")
    if not (install and is_root and apt):
        why = ("install=False" if not install
               else "not running as root" if not is_root else "apt-get not found")
        raise BrowserError(f"chromium is not on PATH and cannot be installed here ({why}): run "
                           "`sudo apt-get install -y chromium` (Debian/Ubuntu)")
    log.info("chromium not found; installing Debian's chromium package")
    env = {**_ENV, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "update"], [apt, "install", "-y", PACKAGE]):
        result = subprocess.run(cmd, env=env, check=False)
        if result.returncode != 0:
            raise BrowserError(f"`{' '.join(cmd)}` failed with exit code {result.returncode}")
    found = find_chromium()
    if found is None:
        raise BrowserError("apt-get installed chromium but it is still not on PATH")
    return found


def argv(binary: Path, profile: Path, extra: Sequence[str], url: str,
         window: tuple[int, int] = WINDOW) -> list[str]:
    """The command line of one headless run on a fresh profile directory."""
    return [str(binary), *FLAGS, f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}", *extra, url]


async def run(url: str, extra: Sequence[str], *, binary: Path | None = None,
              timeout_s: float = TIMEOUT_S, window: tuple[int, int] = WINDOW) -> bytes:
    """Run headless Chromium once on ``url`` with ``extra`` flags; its stdout."""
    exe = binary if binary is not None else find_chromium()
    if exe is None:  # never apt-get from a request: `make chromium` or ensure_chromium()
        raise BrowserError("chromium is not installed: run `make chromium` or `sudo apt-get "
                           "install -y chromium` (Debian/Ubuntu)")
    with tempfile.TemporaryDirectory(prefix="justwalk-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            *argv(exe, Path(profile), extra, url, window), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**_ENV, "HOME": profile}, start_new_session=True)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BrowserError(f"chromium did not finish {url} within {timeout_s:g} s") from None
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise BrowserError(f"chromium exited with {proc.returncode} on {url}: "
                           + " | ".join(tail))
    return out


def _written(path: Path, magic: bytes) -> bool:
    """The file is there and starts with ``magic`` (Chromium exits 0 on a failed write)."""
    try:
        with path.open("rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


async def dump_dom(url: str) -> str:
    """The page's DOM after rendering (``--dump-dom``)."""
    return (await run(url, ["--dump-dom"])).decode("utf-8")


async def screenshot(url: str, out: Path, window: tuple[int, int] = WINDOW) -> Path:
    """A PNG of the page's first ``window`` pixels (``--screenshot``)."""
    await run(url, [f"--screenshot={out}"], window=window)
    if not await asyncio.to_thread(_written, out, b"\x89PNG"):
        raise BrowserError(f"chromium wrote no screenshot to {out}")
    return out


async def print_pdf(url: str, out: Path, *, binary: Path | None = None) -> Path:
    """The page printed to PDF (the page's own print CSS; no header or footer)."""
    await run(url, [f"--print-to-pdf={out}", "--no-pdf-header-footer",
                    "--generate-pdf-document-outline"], binary=binary)
    if not await asyncio.to_thread(_written, out, b"%PDF-"):
        raise BrowserError(f"chromium wrote no PDF to {out}")
    return out


async def html_to_pdf(html: str, *, chromium_binary: str = "") -> bytes:
    """PDF of an HTML page (written to a private temporary file for Chromium to load).

    ``chromium_binary``: ``Settings.chromium_binary`` (empty: Chromium on PATH).
    """
    binary = find_chromium(chromium_binary)
    with tempfile.TemporaryDirectory(prefix="justwalk-report-") as folder:
        page = Path(folder) / "report.html"
        page.write_text(html, encoding="utf-8")
        pdf = await print_pdf(page.as_uri(), Path(folder) / "report.pdf", binary=binary)
        return pdf.read_bytes()
