"""A private PostgreSQL server on loopback, for the local stack and the tests.

::

    with LocalPostgres() as pg:
        pg.create_database("justwalk")
        url = pg.url("justwalk")   # postgresql://justwalk:...@127.0.0.1:PORT/justwalk

The server runs Debian's PostgreSQL binaries (``/usr/lib/postgresql/<version>/bin``, the
``postgresql`` package, installed with apt when missing and we are root) on a fresh cluster
in a temporary directory: TCP on 127.0.0.1 only, no Unix socket, password authentication
(SCRAM) for the one superuser ``justwalk`` with a random password. PostgreSQL refuses to
run as root, so as root the cluster belongs to the ``postgres`` system user that Debian's
package creates. Like the rest of the local stack, the child dies with its parent.
"""

from __future__ import annotations

import atexit
import logging
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from types import TracebackType

from justwalk import procs

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
SUPERUSER = "justwalk"
START_TIMEOUT_S = 60.0
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_TOOLS = ("initdb", "postgres", "psql")
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresError(RuntimeError):
    """PostgreSQL could not be found, installed, started or used."""


def _bin_dir() -> Path | None:
    if not _DEBIAN_ROOT.is_dir():
        return None
    versions = sorted((p for p in _DEBIAN_ROOT.iterdir() if p.name.isdigit()),
                      key=lambda p: int(p.name), reverse=True)
    for version in versions:
        if all((version / "bin" / tool).is_file() for tool in _TOOLS):
            return version / "bin"
    return None


def ensure_postgres(*, install: bool = True) -> Path:
    """The directory holding ``initdb``, ``postgres`` and ``psql``; apt-installs if allowed."""
    found = _bin_dir()
    if found is not None:
        return found
    is_root = os.geteuid() == 0
    apt = shutil.which("apt-get")
    if not (install and is_root and apt):
        why = ("install=False" if not install
               else "not running as root" if not is_root else "apt-get not found")
        raise PostgresError(
            f"PostgreSQL server binaries are not under {_DEBIAN_ROOT} and cannot be installed "
            f"here ({why}): run `sudo apt-get install -y postgresql`"
        )
    log.info("PostgreSQL not found; installing Debian's postgresql package")
    env = {**_ENV, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "update"], [apt, "install", "-y", "--no-install-recommends", "postgresql"]):
        result = subprocess.run(cmd, env=env, check=False)
        if result.returncode != 0:
            raise PostgresError(f"`{' '.join(cmd)}` failed with exit code {result.returncode}")
    found = _bin_dir()
    if found is None:
        raise PostgresError(f"apt-get installed postgresql but {_DEBIAN_ROOT} has no server")
    return found


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    """One PostgreSQL cluster on a loopback port, removed again by :meth:`stop`."""

    def __init__(self, *, port: int = 0, install: bool = True, fsync: bool = True) -> None:
        self.port = port or _free_port()
        self.password = secrets.token_urlsafe(18)
        self.install = install
        self.fsync = fsync
        self.root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._bin: Path | None = None
        self._user: str | None = None

    # -- addresses ----------------------------------------------------------------------

    def url(self, database: str = "postgres", *, driver: str = "postgresql") -> str:
        """URL of ``database`` as the superuser; ``driver`` e.g. ``postgresql+psycopg``."""
        password = urllib.parse.quote(self.password, safe="")
        return f"{driver}://{SUPERUSER}:{password}@{LOOPBACK}:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        if self.root is None:
            raise PostgresError("the server has not been started")
        return self.root / "postgres.log"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, *, timeout_s: float = START_TIMEOUT_S) -> LocalPostgres:
        """Create the cluster, start the server and wait until it answers a query."""
        if self._proc is not None:
            return self
        self._bin = ensure_postgres(install=self.install)
        self._user = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="justwalk-pg-"))
        atexit.register(self.stop)
        try:
            self._initdb()
            self._spawn()
            self._wait_ready(time.monotonic() + timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("PostgreSQL up on %s:%d (cluster in %s)", LOOPBACK, self.port, self.root)
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete the cluster. Idempotent."""
        if self._proc is not None:
            # SIGTERM is PostgreSQL's "smart" shutdown, which waits for clients; SIGINT is
            # "fast": it disconnects them and shuts down cleanly.
            if self._proc.poll() is None:
                self._proc.send_signal(2)
                try:
                    self._proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            atexit.unregister(self.stop)

    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- use ----------------------------------------------------------------------------

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run ``sql`` with psql as the superuser; the unaligned output, or an error."""
        if self._bin is None or not self.running():
            raise PostgresError("the server is not running")
        result = subprocess.run(
            [str(self._bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", LOOPBACK, "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql],
            env={**_ENV, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "5"},
            capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise PostgresError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create database ``name`` (lower-case identifier) and return its URL."""
        if not _NAME.fullmatch(name):
            raise PostgresError(f"database name {name!r} is not a plain lower-case identifier")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    # -- internals ----------------------------------------------------------------------

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        assert self.root is not None and self._bin is not None
        self._chown(self.root)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        result = subprocess.run(
            [str(self._bin / "initdb"), "-D", str(self.root / "data"), "-U", SUPERUSER,
             f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"],
            env=_ENV, user=self._user, capture_output=True, text=True, timeout=120, check=False)
        pwfile.unlink()
        if result.returncode != 0:
            raise PostgresError(f"initdb failed ({result.returncode}):\n{result.stdout}\n"
                                f"{result.stderr}")

    def _spawn(self) -> None:
        assert self.root is not None and self._bin is not None
        log_path = self.root / "postgres.log"
        log_path.touch()
        self._chown(log_path)
        argv = [str(self._bin / "postgres"), "-D", str(self.root / "data"),
                "-h", LOOPBACK, "-p", str(self.port), "-k", "",
                "-c", f"fsync={'on' if self.fsync else 'off'}",
                "-c", "logging_collector=off", "-c", "log_min_messages=warning"]
        try:
            self._proc = procs.spawn(argv, log_path=log_path, env=_ENV, cwd=self.root,
                                     user=self._user)
        except OSError as exc:
            raise PostgresError(f"cannot start postgres: {exc}") from exc

    def _wait_ready(self, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            if not self.running():
                raise PostgresError(
                    f"postgres exited at start; last lines of its log:\n"
                    f"{procs.log_tail(self.log_path)}")
            try:
                if self.psql("SELECT 1") == "1":
                    return
            except (PostgresError, subprocess.TimeoutExpired) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise PostgresError(f"postgres did not answer within the timeout ({last}); last lines "
                            f"of its log:\n{procs.log_tail(self.log_path)}")
