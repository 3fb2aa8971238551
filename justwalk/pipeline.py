"""The pipeline's own processes (gateway, processor, sink) run as children.

The demo and the integration tests start exactly the commands production runs
(``justwalk gateway`` and so on), configured through JUSTWALK_* variables.

With ``supervise=True`` the pipeline is also their supervisor, as compose's ``restart:``
is in production: a process that exits (a service that found the broker lost its data
exits non-zero on purpose) is logged and started again after a back-off.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from justwalk import procs
from justwalk.config import Settings, child_env
from justwalk.device_protocol import HEALTH_PATH

log = logging.getLogger(__name__)

READY_LINES = {"processor": "stream_processors.app: assigned partitions",
               "sink": "sinks.kafka_sink: sink assigned",
               "alerts": "sinks.alerts.service: alert service assigned"}
"""What each consumer logs (at info level, ``logger: message`` as ``justwalk.cli`` formats
it) once it owns partitions (the processor: and read their states); ``start`` returns when
all have, so data sent then meets no group join. The logger is part of the line: aiokafka
logs "Revoking previously assigned partitions" as a group join *begins*, seconds before the
processor owns anything."""


def consumer_ready(kind: str, log_text: str) -> bool:
    """Whether a consumer of ``kind`` (``READY_LINES``) says in its log that it owns partitions."""
    return READY_LINES[kind] in log_text


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class PipelineError(RuntimeError):
    """A pipeline process failed to start or died."""


class Pipeline:
    """The pipeline's processes as children.

    Gateway, ``n_processors`` processor workers, the sink and, with ``with_alerts``, the
    alert service (which needs ``settings.alert_channels``).
    """

    def __init__(self, settings: Settings, *, log_dir: Path, n_processors: int = 1,
                 log_level: str = "info", with_alerts: bool = False,
                 supervise: bool = False, restart_delay_s: float = 0.5) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.n_processors = n_processors
        self.log_level = log_level
        self.with_alerts = with_alerts
        self.supervise = supervise
        self.restart_delay_s = restart_delay_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.exits: list[tuple[str, int]] = []
        """(name, exit code) of every exit the supervisor saw, in order."""
        self.restarts: Counter[str] = Counter()
        self._commands: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def gateway_url(self) -> str:
        """Base URL of the gateway."""
        return f"http://{self.settings.gateway_host}:{self.settings.gateway_port}"

    def _start(self, name: str, command: str) -> None:
        self._commands[name] = command
        cmd = [sys.executable, "-m", "justwalk.cli", "--log-level", self.log_level, command]
        self.procs[name] = procs.spawn(cmd, log_path=self.log_dir / f"{name}.log",
                                       env=child_env(self.settings))

    def start(self, *, timeout_s: float = 60.0) -> None:
        """Start every process; return once they are ready.

        Ready: the gateway answers its health check and every consumer (processors, sink,
        alert service) owns partitions, so the first chunks and records do not wait for a
        group to form.
        """
        self._start("gateway", "gateway")
        for i in range(self.n_processors):
            self._start(f"processor-{i}", "processor")
        self._start("sink", "sink")
        if self.with_alerts:
            self._start("alerts", "alerts")
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            if self._healthy():
                break
            if time.monotonic() > deadline:
                raise PipelineError(
                    f"gateway not healthy after {timeout_s:.0f} s:\n"
                    + procs.log_tail(self.log_dir / "gateway.log"))
            time.sleep(0.2)
        self._wait_for_consumers(deadline)
        if self.supervise:
            # children die with the thread that started them (PR_SET_PDEATHSIG): this one
            # lives until stop() has stopped them
            self._supervisor = threading.Thread(target=self._watch, name="pipeline-supervisor",
                                                daemon=True)
            self._supervisor.start()

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.gateway_url + HEALTH_PATH, timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Wait until the gateway answers its health check (after a restart, say)."""
        deadline = time.monotonic() + timeout_s
        while not self._healthy():
            if time.monotonic() > deadline:
                raise PipelineError(f"gateway not healthy after {timeout_s:.0f} s")
            time.sleep(0.2)

    def _watch(self) -> None:
        due: dict[str, float] = {}
        while not self._stopping.wait(0.1):
            with self._lock:
                for name, p in list(self.procs.items()):
                    if name in due or p.poll() is None:
                        continue
                    self.exits.append((name, p.returncode))
                    delay = min(self.restart_delay_s * 2 ** min(self.restarts[name], 5), 10.0)
                    log.warning("%s exited with code %d; starting it again in %.1f s:\n%s",
                                name, p.returncode, delay,
                                procs.log_tail(self.log_dir / f"{name}.log", 5))
                    due[name] = time.monotonic() + delay
                for name, at in list(due.items()):
                    if time.monotonic() >= at and not self._stopping.is_set():
                        del due[name]
                        self.restarts[name] += 1
                        self._start(name, self._commands[name])

    def _wait_for_consumers(self, deadline: float) -> None:
        if self.log_level.lower() not in ("debug", "info"):
            return  # the lines are not logged
        waiting = {n: n.split("-")[0] for n in self.procs if n.split("-")[0] in READY_LINES}
        while waiting:
            self.check_alive()
            waiting = {n: kind for n, kind in waiting.items()
                       if not consumer_ready(kind, _text(self.log_dir / f"{n}.log"))}
            if waiting and time.monotonic() > deadline:
                name = next(iter(waiting))
                raise PipelineError(f"{name} took no partitions in time:\n"
                                    + procs.log_tail(self.log_dir / f"{name}.log"))
            time.sleep(0.2)

    def check_alive(self) -> None:
        """Raise PipelineError if any process has exited (and is not being restarted)."""
        if self._supervisor is not None:
            return
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise PipelineError(f"{name} exited with code {p.returncode}:\n"
                                    + procs.log_tail(self.log_dir / f"{name}.log"))

    def stop(self) -> dict[str, int | None]:
        """Stop every process (gateway first, sink last so it can flush); exit codes."""
        self._stopping.set()
        codes = {}
        order = ["gateway"] + [n for n in self.procs if n.startswith("processor")] + [
            "sink", "alerts"]
        with self._lock:
            for name in order:
                if name in self.procs:
                    codes[name] = procs.stop(self.procs[name])
            self.procs.clear()
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        return codes

    def __enter__(self) -> Pipeline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
