"""Child processes that never outlive their parent.

Used by the local stack, the demo and the integration tests to run the broker, InfluxDB
and the pipeline's own processes. Each child gets PR_SET_PDEATHSIG (Linux), so even a
parent killed with SIGKILL takes its children with it, and ``stop`` terminates politely
first (SIGTERM) and forcefully after a grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child receive SIGTERM when its parent dies (Linux).

    The signal is tied to the thread that starts the child: start children from a thread
    that lives as long as they should (the main thread, in our programs).
    """
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        # Loaded in the parent: the child must do nothing heavier than a system call.
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = _libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def spawn(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with stdout and stderr appended to ``log_path`` (as ``user``, if given).

    The child gets its own session, so Ctrl-C in a terminal reaches only the parent, which
    stops its children in the order it chooses.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [str(c) for c in cmd],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            user=user,
            preexec_fn=_die_with_parent(),  # a single prctl; safe with threads
        )


def stop(proc: subprocess.Popen[bytes], *, grace_s: float = 10.0) -> int | None:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL. Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    return proc.returncode


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
