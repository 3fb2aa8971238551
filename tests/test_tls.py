"""The gateway over TLS: the real ``justwalk gateway`` process with a certificate, real Tansu.

A throwaway CA and a server certificate for 127.0.0.1 are made here with the ``openssl``
command (the ``cryptography`` package is not installed). Devices stream over ``wss://`` and
upload over ``https://`` trusting that CA; a client that does not trust it, and plain HTTP
on the TLS port, get no answer at all. The simulator's ``--ca-file`` is run as a command.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from ingest.registry import provision
from ingest.tls import TLSConfigError, client_context, gateway_ssl_context
from justwalk import procs
from justwalk.config import Settings, child_env
from justwalk.device_protocol import (
    HEALTH_PATH,
    STREAM_PATH,
    UPLOAD_PATH,
    DeviceCredential,
    auth_headers,
)
from justwalk.kafka_topics import ensure_topics
from justwalk.simulator.device import make_chunks
from justwalk.wire import encode_chunk, frame_upload

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path
    """A second CA that did not sign the gateway's certificate."""


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True,
                   timeout=60)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = make_ca(d, "justwalk-test-ca")
    other_ca, _ = make_ca(d, "someone-else-ca")
    key, csr, cert = d / "gateway.key", d / "gateway.csr", d / "gateway.pem"
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=justwalk-gateway", cwd=d)
    ext = d / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext, cwd=d)
    return Pki(ca, cert, key, other_ca)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class TlsGateway:
    url: str
    settings: Settings
    creds: list[DeviceCredential]
    log: Path


@pytest.fixture
def gateway(stack_settings: Settings, pki: Pki, tmp_path: Path) -> Iterator[TlsGateway]:
    settings = stack_settings.replace(
        device_registry=tmp_path / "devices.json", gateway_port=_free_port(),
        gateway_tls_cert=str(pki.cert), gateway_tls_key=str(pki.key))
    creds = provision(settings.device_registry, tmp_path / "creds.json",
                      [("dev-tls-1", "pt-tls-1", "clinic-a"), ("dev-tls-2", "pt-tls-2",
                                                               "clinic-a")])
    asyncio.run(ensure_topics(settings))
    log = tmp_path / "gateway.log"
    proc = procs.spawn([sys.executable, "-m", "justwalk.cli", "gateway"], log_path=log,
                       env=child_env(settings))
    url = f"https://{LOOPBACK}:{settings.gateway_port}"
    try:
        deadline = time.monotonic() + 30
        ctx = client_context(pki.ca)
        while True:
            assert proc.poll() is None, procs.log_tail(log)
            try:
                import urllib.request

                with urllib.request.urlopen(url + HEALTH_PATH, context=ctx, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, procs.log_tail(log)
            time.sleep(0.2)
        yield TlsGateway(url, settings, creds, log)
    finally:
        assert procs.stop(proc) == 0, procs.log_tail(log)


def chunks_of(cred: DeviceCredential, n: int = 6) -> list[bytes]:
    rng = np.random.default_rng(1)
    gravity = np.array([0, 0, 9.81, 0, 0, 0])
    samples = (rng.normal(0, 0.3, (50 * n, 6)) + gravity).astype(np.float32)
    start_us = time.time_ns() // 1000 - 60_000_000
    return [encode_chunk(c) for c in make_chunks(cred, samples, start_us=start_us,
                                                 sample_rate_hz=100.0, session_id="s-tls")]


async def test_devices_stream_and_upload_over_tls(gateway: TlsGateway, pki: Pki) -> None:
    dev1, dev2 = gateway.creds
    wss = gateway.url.replace("https://", "wss://") + STREAM_PATH
    connector = aiohttp.TCPConnector(ssl=client_context(pki.ca))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.ws_connect(wss, headers=auth_headers(dev1.token)) as ws:
            assert isinstance(ws.get_extra_info("ssl_object"), ssl.SSLObject)
            answers = []
            for data in chunks_of(dev1):
                await ws.send_bytes(data)
                answers.append(json.loads((await ws.receive(timeout=20)).data))
        assert [a["type"] for a in answers] == ["ack"] * 6
        assert [a["sequence"] for a in answers] == list(range(6))

        async with http.post(gateway.url + UPLOAD_PATH, data=frame_upload(chunks_of(dev2)),
                             headers={**auth_headers(dev2.token),
                                      "Content-Type": "application/octet-stream"}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["accepted"] == 6
        # a wrong token is still refused, now over TLS
        async with http.post(gateway.url + UPLOAD_PATH, data=b"",
                             headers=auth_headers("not-a-token")) as resp:
            assert resp.status == 401
    assert "gateway listening on https://" in gateway.log.read_text()


async def test_nothing_is_served_without_tls_or_to_a_client_that_does_not_verify_it(
        gateway: TlsGateway, pki: Pki) -> None:
    dev = gateway.creds[0]
    plain = gateway.url.replace("https://", "http://")
    async with aiohttp.ClientSession() as http:
        for method, path, data in (("GET", HEALTH_PATH, None),
                                   ("POST", UPLOAD_PATH, frame_upload(chunks_of(dev, 2)))):
            with pytest.raises(aiohttp.ClientError):  # no HTTP answer at all
                async with http.request(method, plain + path, data=data,
                                        headers=auth_headers(dev.token)) as resp:
                    pytest.fail(f"plain HTTP got an answer: {resp.status}")
        with pytest.raises(aiohttp.ClientError):
            await http.ws_connect(plain.replace("http://", "ws://") + STREAM_PATH,
                                  headers=auth_headers(dev.token))
    # TLS, but trusting another CA (or only the system's): the handshake fails
    for ctx in (client_context(pki.other_ca), client_context()):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(gateway.url + HEALTH_PATH)


def test_the_simulator_streams_to_an_https_gateway_given_the_ca_file(
        gateway: TlsGateway, pki: Pki, tmp_path: Path) -> None:
    creds = tmp_path / "creds.json"  # written by provision() in the fixture
    ok = subprocess.run([sys.executable, "-m", "justwalk.cli", "simulate", "--devices",
                         str(creds), "--patients", "2", "--duration", "5", "--speed", "0",
                         "--gateway-url", gateway.url, "--ca-file", str(pki.ca)],
                        capture_output=True, text=True, timeout=120,
                        env=child_env(gateway.settings), check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("ok") >= 2, ok.stdout
    # (a client trusting another CA gets no connection: the test above)


def test_tls_settings_are_checked(pki: Pki, tmp_path: Path) -> None:
    s = Settings()
    assert gateway_ssl_context(s) is None  # plain HTTP: loopback or behind a proxy
    ctx = gateway_ssl_context(s.replace(gateway_tls_cert=str(pki.cert),
                                        gateway_tls_key=str(pki.key)))
    assert ctx is not None and ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    with pytest.raises(TLSConfigError, match="JUSTWALK_GATEWAY_TLS_KEY is empty"):
        gateway_ssl_context(s.replace(gateway_tls_cert=str(pki.cert)))
    with pytest.raises(TLSConfigError, match=r"JUSTWALK_GATEWAY_TLS_CERT='/nope\.pem': no such"):
        gateway_ssl_context(s.replace(gateway_tls_cert="/nope.pem", gateway_tls_key=str(pki.key)))
    other_key = tmp_path / "other.key"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
             other_key, cwd=tmp_path)
    with pytest.raises(TLSConfigError, match="cannot serve TLS"):  # key of another cert
        gateway_ssl_context(s.replace(gateway_tls_cert=str(pki.cert),
                                      gateway_tls_key=str(other_key)))
    with pytest.raises(TLSConfigError, match="no such file"):
        client_context(tmp_path / "missing-ca.pem")
    # the settings travel to child processes and back unchanged
    again = Settings.from_env(s.replace(gateway_tls_cert="/a b/c.pem").to_env())
    assert again.gateway_tls_cert == "/a b/c.pem" and again.gateway_tls_key == ""
