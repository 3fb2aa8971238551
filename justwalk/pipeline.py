"""The pipeline's own processes (gateway, processor, sink) run as children.

The demo and the integration tests start exactly the commands production runs
(``justwalk gateway`` and so on), configured through JUSTWALK_* variables.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from justwalk import procs
from justwalk.config import Settings, child_env
from justwalk.device_protocol import HEALTH_PATH

READY_LINE = "assigned partitions"
"""What a processor logs (at info level) once it owns partitions and read their states."""


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
                 log_level: str = "info", with_alerts: bool = False) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.n_processors = n_processors
        self.log_level = log_level
        self.with_alerts = with_alerts
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def gateway_url(self) -> str:
        """Base URL of the gateway."""
        return f"http://{self.settings.gateway_host}:{self.settings.gateway_port}"

    def _start(self, name: str, command: str) -> None:
        cmd = [sys.executable, "-m", "justwalk.cli", "--log-level", self.log_level, command]
        self.procs[name] = procs.spawn(cmd, log_path=self.log_dir / f"{name}.log",
                                       env=child_env(self.settings))

    def start(self, *, timeout_s: float = 60.0) -> None:
        """Start every process; return once they are ready.

        Ready: the gateway answers its health check and every processor owns partitions (so
        the first chunks do not wait for the group to form).
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
            try:
                with urllib.request.urlopen(self.gateway_url + HEALTH_PATH, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise PipelineError(
                    f"gateway not healthy after {timeout_s:.0f} s:\n"
                    + procs.log_tail(self.log_dir / "gateway.log"))
            time.sleep(0.2)
        self._wait_for_processors(deadline)

    def _wait_for_processors(self, deadline: float) -> None:
        if self.log_level.lower() not in ("debug", "info"):
            return  # the line is not logged
        names = [n for n in self.procs if n.startswith("processor")]
        while names:
            self.check_alive()
            names = [n for n in names if READY_LINE not in _text(self.log_dir / f"{n}.log")]
            if names and time.monotonic() > deadline:
                raise PipelineError(f"{names[0]} took no partitions in time:\n"
                                    + procs.log_tail(self.log_dir / f"{names[0]}.log"))
            time.sleep(0.2)

    def check_alive(self) -> None:
        """Raise PipelineError if any process has exited."""
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise PipelineError(f"{name} exited with code {p.returncode}:\n"
                                    + procs.log_tail(self.log_dir / f"{name}.log"))

    def stop(self) -> dict[str, int | None]:
        """Stop every process (gateway first, sink last so it can flush); exit codes."""
        codes = {}
        order = ["gateway"] + [n for n in self.procs if n.startswith("processor")] + [
            "sink", "alerts"]
        for name in order:
            if name in self.procs:
                codes[name] = procs.stop(self.procs[name])
        self.procs.clear()
        return codes

    def __enter__(self) -> Pipeline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
