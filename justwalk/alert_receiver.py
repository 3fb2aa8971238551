"""A clinic-side webhook receiver: verifies JustWalk signatures and keeps what arrived.

What a clinic would run behind its webhook URL, in miniature. The demo shows the alerts it
receives live, the end-to-end tests assert on them, and the latency benchmark measures
from the gateway's receipt of the completing chunk (``chunk_received_at_us``) to here.
Duplicates (same ``alert_id``, e.g. a retry after a lost answer) are recognised and counted
once. A receiver bound to a clinic (``clinic_id``) refuses, with 403, a delivery about
another clinic's patients, as a clinic's endpoint should.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sinks.alerts.webhook import verify_signature

PATH = "/hooks/justwalk"


@dataclass
class ReceivedAlert:
    """One delivery as it arrived."""

    body: dict[str, Any]
    received_at_us: int

    @property
    def alert(self) -> dict[str, Any]:
        """The alert itself (for a grouped follow-up: the first alert of the group)."""
        if "alert" in self.body:
            return dict(self.body["alert"])
        return dict(self.body["alerts"][0])

    @property
    def latency_s(self) -> float | None:
        """Gateway receipt of the completing chunk -> arrival here."""
        received = self.alert.get("chunk_received_at_us")
        return None if received is None else (self.received_at_us - int(received)) / 1e6


@dataclass
class AlertReceiver:
    """An aiohttp server on loopback that accepts signed alert deliveries."""

    secret: bytes
    host: str = "127.0.0.1"
    port: int = 0
    clinic_id: str | None = None
    """The clinic this endpoint belongs to (None: accept any clinic's deliveries)."""
    received: list[ReceivedAlert] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    bad_signatures: int = 0
    wrong_clinic: int = 0
    """Deliveries refused because they were about another clinic's patients."""
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        """The webhook URL to put in the channels file."""
        return f"http://{self.host}:{self.port}{PATH}"

    async def start(self) -> None:
        """Listen (on a free port when ``port`` is 0)."""
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def wait_for(self, n: int, timeout_s: float) -> bool:
        """Wait until ``n`` distinct alerts have arrived; False on timeout."""
        async with self._arrived:
            try:
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: len(self.received) >= n), timeout_s)
            except TimeoutError:
                return False
        return True

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now_us = time.time_ns() // 1000
        if not verify_signature(self.secret, body, request.headers):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        parsed = json.loads(body)
        if self.clinic_id is not None:
            clinics = {a.get("clinic_id") for a in
                       ([parsed["alert"]] if "alert" in parsed else parsed.get("alerts", []))}
            if "clinic_id" in parsed:
                clinics.add(parsed["clinic_id"])
            if clinics != {self.clinic_id}:
                self.wrong_clinic += 1
                return web.Response(status=403, text=f"this endpoint is clinic "
                                    f"{self.clinic_id}'s; the delivery is about {clinics}")
        alert_id = str(parsed.get("alert_id"))
        if alert_id in self.seen_ids:
            self.duplicates += 1
        else:
            self.seen_ids.add(alert_id)
            self.received.append(ReceivedAlert(parsed, now_us))
            async with self._arrived:
                self._arrived.notify_all()
        return web.Response(status=204)


def channels_for(receiver: AlertReceiver, clinic_ids: list[str]) -> dict[str, Any]:
    """A channels file (see sinks.alerts.channels) that sends ``clinic_ids`` to ``receiver``.

    One clinic per receiver: the channels file refuses a webhook shared by two clinics.
    """
    if receiver.clinic_id is not None and clinic_ids != [receiver.clinic_id]:
        raise ValueError(f"this receiver is clinic {receiver.clinic_id}'s, not {clinic_ids}")
    hook = {"url": receiver.url, "secret": receiver.secret.decode(), "timeout_s": 5}
    return {"clinics": {c: {"webhooks": [hook]} for c in clinic_ids}}
