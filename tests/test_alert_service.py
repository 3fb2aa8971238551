"""The alert service against the real broker, a real HTTP receiver and a real SMTP server.

The receiver is an aiohttp server started here that checks every request's signature the
way sinks/alerts/webhook.py tells a clinic to (its own HMAC code, not the service's); the
SMTP server is aiosmtpd on a free loopback port.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiosmtpd.controller import Controller

from justwalk.config import Settings, child_env
from justwalk.kafka_topics import ensure_topics
from justwalk.records import AlertRecord
from sinks.alerts import AlertService, Outbox, verify_signature

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
SECRET_A = "clinic-a-webhook-secret-0001"
SECRET_B = "clinic-b-webhook-secret-0002"
# 2024-05-06 14:03:22 UTC
T0_US = int(datetime(2024, 5, 6, 14, 3, 22, tzinfo=UTC).timestamp() * 1_000_000)
FAST = {"retry_initial_s": 0.1, "retry_max_s": 0.4, "poll_max_s": 0.1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_alert(patient: str, type_: str = "fall", dt_s: float = 0.0,
               clinic: str = "clinic-a") -> AlertRecord:
    start = T0_US + int(dt_s * 1e6)
    return AlertRecord(
        alert_id=AlertRecord.make_id(patient, "sess-1", type_, start),
        clinic_id=clinic, patient_id=patient, device_id=f"dev-{patient}", session_id="sess-1",
        type=type_, severity="critical" if type_ == "fall" else "warning",
        event_start_us=start, event_end_us=start + 800_000, raised_at_us=int(time.time() * 1e6),
        evidence={"peak_acc_g": 3.2, "trunk_tilt_after_deg": 84.5, "confidence": 0.93},
    )


# -- the receivers ----------------------------------------------------------------------------


def documented_check(secret: str, headers: Any, body: bytes) -> bool:
    """The receiver side, written from the scheme in sinks/alerts/webhook.py's docstring."""
    ts = headers.get("X-JustWalk-Timestamp", "")
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = ts.isdigit() and abs(time.time() - int(ts)) <= 300
    return fresh and hmac.compare_digest(headers.get("X-JustWalk-Signature", ""),
                                         "sha256=" + mac)


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    valid: bool
    status: int
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


class Receiver:
    """A clinic's webhook endpoint; ``status`` is what it answers (valid requests only)."""

    def __init__(self, secret: str, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.status = 200
        self.requests: list[Request] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        valid = documented_check(self.secret, request.headers, body)
        status = self.status if valid else 401
        self.requests.append(Request(dict(request.headers), body, valid, status, time.time()))
        return web.Response(status=status)

    @property
    def accepted(self) -> list[Request]:
        return [r for r in self.requests if r.status == 200]

    def accepted_ids(self) -> list[str]:
        return [r.headers["X-JustWalk-Alert-Id"] for r in self.accepted]


class Mailbox:
    """aiosmtpd handler collecting every message."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterable[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def channels_file(path: Path, clinics: dict[str, Any], smtp_port: int | None = None) -> Path:
    config: dict[str, Any] = {"clinics": clinics}
    if smtp_port is not None:
        config["smtp"] = {"host": "127.0.0.1", "port": smtp_port,
                          "from": "alerts@justwalk.test", "security": "none", "timeout_s": 5}
    path.write_text(json.dumps(config))
    return path


def hook(receiver: Receiver) -> dict[str, Any]:
    return {"url": receiver.url, "secret": receiver.secret, "timeout_s": 2}


# -- Kafka and service helpers ---------------------------------------------------------------


async def produce(settings: Settings, values: Iterable[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_idempotence=False)
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(settings.topic_alerts, value, key=key)
    finally:
        await producer.stop()


def alerts(*records: AlertRecord) -> list[tuple[bytes | None, bytes]]:
    return [(r.patient_id.encode(), r.to_json()) for r in records]


async def committed_total(settings: Settings) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                group_id=settings.alert_group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic_alerts, p)
               for p in range(settings.topic_partitions)]
        return sum([await consumer.committed(tp) or 0 for tp in tps])
    finally:
        await consumer.stop()


@asynccontextmanager
async def running(settings: Settings, **kwargs: Any) -> AsyncIterator[AlertService]:
    service = AlertService.from_settings(settings, **{**FAST, **kwargs})
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def until(cond: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def topics(stack_settings: Settings) -> Settings:
    await ensure_topics(stack_settings)
    return stack_settings


# -- tests -----------------------------------------------------------------------------------


async def test_webhook_and_email_delivery_bad_messages_and_unknown_clinic(
        topics: Settings, tmp_path: Path, smtp_server: tuple[Mailbox, int]) -> None:
    mailbox, smtp_port = smtp_server
    receiver = Receiver(SECRET_A)
    await receiver.start()
    settings = topics.replace(alert_channels=channels_file(tmp_path / "channels.json", {
        "clinic-a": {"webhooks": [hook(receiver)], "email_to": ["oncall@clinic-a.test"]},
    }, smtp_port))
    fall = make_alert("pt-012")
    stray = make_alert("pt-900", clinic="clinic-unknown")
    await produce(settings, [(b"pt-x", b"\xff not json"), (b"pt-x", b'{"kind":"step"}'),
                             *alerts(stray, fall)])
    try:
        async with running(settings) as service:
            await until(lambda: bool(receiver.accepted and mailbox.messages),
                        what="both channels")
            await until(lambda: service.messages_skipped_ == 2 and service.alerts_unroutable_ == 1)
            await asyncio.sleep(0.3)  # nothing else arrives
    finally:
        await receiver.stop()

    # the webhook: one request, signed as documented, carrying the alert
    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    assert req.valid and req.status == 200
    assert req.headers["X-JustWalk-Alert-Id"] == fall.alert_id
    assert req.headers["Content-Type"] == "application/json"
    body = req.json
    assert body["kind"] == "alert" and body["alert_id"] == fall.alert_id
    assert AlertRecord.from_dict(body["alert"]) == fall
    assert body["grouping"]["group_key"] == "clinic-a/pt-012/fall"
    assert verify_signature(SECRET_A.encode(), req.body, req.headers)
    tampered = req.body.replace(b"pt-012", b"pt-013")
    assert not verify_signature(SECRET_A.encode(), tampered, req.headers)
    assert not documented_check(SECRET_A, req.headers, tampered)

    # the e-mail
    assert len(mailbox.messages) == 1
    msg = mailbox.messages[0]
    assert msg["Subject"] == "[JustWalk] FALL: patient pt-012 (clinic-a) at 14:03:22 UTC"
    assert msg["To"] == "oncall@clinic-a.test" and msg["X-JustWalk-Alert-Id"] == fall.alert_id
    text = msg.get_content()
    assert "peak_acc_g: 3.2" in text and "trunk_tilt_after_deg: 84.5" in text
    assert fall.alert_id in text

    # bad messages skipped, the unknown clinic's alert kept; every offset committed
    assert await committed_total(settings) == 4
    box = Outbox(settings.alert_outbox, window_s=0)
    try:
        assert box.unroutable_ids() == [stray.alert_id]
        assert box.counts()["delivered"] == 2
    finally:
        box.close()


async def test_receiver_down_then_up_gets_each_alert_exactly_once(
        topics: Settings, tmp_path: Path) -> None:
    flaky, healthy = Receiver(SECRET_A), Receiver(SECRET_B)
    flaky.status = 503
    await flaky.start()
    await healthy.start()
    settings = topics.replace(alert_channels=channels_file(tmp_path / "channels.json", {
        "clinic-a": {"webhooks": [hook(flaky)]},
        "clinic-b": {"webhooks": [hook(healthy)]},
    }))
    a_alerts = [make_alert(f"pt-a{i}", dt_s=i) for i in range(5)]
    b_alerts = [make_alert(f"pt-b{i}", clinic="clinic-b", dt_s=i) for i in range(3)]
    try:
        async with running(settings) as service:
            await produce(settings, alerts(*a_alerts, *b_alerts))
            # clinic-b is served while clinic-a's receiver answers 503 ...
            await until(lambda: len(healthy.accepted) == 3, what="clinic-b")
            await until(lambda: len(flaky.requests) >= 3, what="retries")
            # ... then refuses connections ...
            await flaky.stop()
            await asyncio.sleep(1.0)
            assert service.retries_ >= 4 and not flaky.accepted
            # ... then is back
            flaky.status = 200
            await flaky.start()
            await until(lambda: len(flaky.accepted) == 5, what="clinic-a after recovery")
            await asyncio.sleep(0.5)  # no duplicates trickling in
    finally:
        await flaky.stop()
        await healthy.stop()
    assert sorted(flaky.accepted_ids()) == sorted(a.alert_id for a in a_alerts)
    assert sorted(healthy.accepted_ids()) == sorted(b.alert_id for b in b_alerts)
    assert all(r.valid for r in flaky.requests + healthy.requests)
    assert service.delivered_ == 8 and service.failed_ == 0


async def test_pending_jobs_survive_a_restart(topics: Settings, tmp_path: Path) -> None:
    receiver = Receiver(SECRET_A)  # not started yet: connections are refused
    settings = topics.replace(alert_channels=channels_file(tmp_path / "channels.json", {
        "clinic-a": {"webhooks": [hook(receiver)]},
    }), kafka_session_timeout_s=3.0)  # Tansu forgets the first process's member sooner
    records = [make_alert(f"pt-{i:03d}", dt_s=i) for i in range(3)]
    log_path = tmp_path / "alerts.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "justwalk.cli", "alerts", cwd=REPO, env=child_env(settings),
            stdout=log_file, stderr=subprocess.STDOUT,
        )
        try:
            await produce(settings, alerts(*records))
            await until(lambda: _pending(settings) == 3, timeout_s=20,
                        what="3 pending jobs in the first service's outbox")
            proc.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(proc.wait(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert returncode == 0, log_path.read_text()
    assert "retrying" in log_path.read_text()
    assert await committed_total(settings) == 3

    await receiver.start()
    try:
        async with running(settings) as service:
            await until(lambda: len(receiver.accepted) == 3, what="delivery after restart")
            await asyncio.sleep(0.5)
    finally:
        await receiver.stop()
    assert sorted(receiver.accepted_ids()) == sorted(r.alert_id for r in records)
    assert service.alerts_received_ == 0  # the first service committed what it took in


def _pending(settings: Settings) -> int:
    if not settings.alert_outbox.exists():
        return 0
    with suppress(sqlite3.Error):
        db = sqlite3.connect(f"file:{settings.alert_outbox}?mode=ro", uri=True)
        try:
            return int(db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status = 'pending'").fetchone()[0])
        finally:
            db.close()
    return 0


async def test_repeated_alerts_are_grouped_within_the_suppression_window(
        topics: Settings, tmp_path: Path) -> None:
    receiver = Receiver(SECRET_A)
    await receiver.start()
    settings = topics.replace(alert_suppression_s=1.5, alert_channels=channels_file(
        tmp_path / "channels.json", {"clinic-a": {"webhooks": [hook(receiver)]}}))
    nf1, nf2, nf3 = (make_alert("pt-001", "near_fall", t) for t in (0.0, 0.2, 0.4))
    fall = make_alert("pt-001", "fall", 0.3)
    other = make_alert("pt-002", "near_fall", 0.1)
    try:
        async with running(settings) as service:
            # one key, one partition: the order on the topic is the order produced
            await produce(settings, alerts(nf1, other, fall, nf2, nf3))
            await until(lambda: len(receiver.accepted) == 3, what="first alerts")
            t_first = time.monotonic()
            assert {r.json["kind"] for r in receiver.accepted} == {"alert"}
            assert set(receiver.accepted_ids()) == {nf1.alert_id, fall.alert_id,
                                                    other.alert_id}
            await until(lambda: len(receiver.accepted) == 4, timeout_s=5, what="the group")
            waited = time.monotonic() - t_first
            await asyncio.sleep(0.3)
    finally:
        await receiver.stop()
    assert len(receiver.accepted) == 4
    group = receiver.accepted[3].json
    assert group["kind"] == "alert_group" and group["count"] == 2
    assert group["alert_ids"] == [nf2.alert_id, nf3.alert_id]
    assert group["first_event_us"] == nf2.event_start_us
    assert group["last_event_us"] == nf3.event_start_us
    assert group["grouping"]["window_opened_by"] == nf1.alert_id
    assert receiver.accepted[3].headers["X-JustWalk-Alert-Id"] == group["alert_id"]
    assert 0.8 < waited < 3.0  # sent when the 1.5 s window closed, not at once
    assert service.alerts_suppressed_ == 2 and service.groups_queued_ == 1


def test_cli_refuses_a_bad_channels_file(tmp_path: Path) -> None:
    bad = tmp_path / "channels.json"
    bad.write_text(json.dumps({"clinics": {"clinic-a": {"webhooks": [{"url": "x"}]}}}))
    env = {**os.environ, "JUSTWALK_ALERT_CHANNELS": str(bad)}
    out = subprocess.run([sys.executable, "-m", "justwalk.cli", "alerts"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "clinics.clinic-a.webhooks[0].url: 'x' is not an http(s) URL" in out.stderr
