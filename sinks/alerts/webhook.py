"""Webhook delivery: a signed HTTP POST of the alert's JSON body to a clinic's endpoint.

Request
-------
``POST <url>`` with the JSON body of :mod:`sinks.alerts.messages` and these headers::

    Content-Type: application/json
    X-JustWalk-Alert-Id: <alert_id>            # also in the body; deduplicate on it
    X-JustWalk-Timestamp: <unix seconds, integer, time of this attempt>
    X-JustWalk-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

How a clinic verifies a request (the same scheme as Stripe's ``Stripe-Signature``, which
signs ``"<timestamp>.<payload>"`` with HMAC-SHA256 [1], written in the ``sha256=<hex>`` form
of GitHub's ``X-Hub-Signature-256`` [2]):

1. Take the raw request body bytes exactly as received (before any JSON parsing) and the
   ``X-JustWalk-Timestamp`` header value as a string.
2. Compute ``hex(HMAC_SHA256(key=secret, msg=timestamp + "." + body))`` where ``secret``
   is the shared secret of this webhook (UTF-8) and ``"."`` a single byte 0x2E.
3. Compare it with the part after ``sha256=`` of ``X-JustWalk-Signature`` using a
   constant-time comparison (``hmac.compare_digest``).
4. Reject timestamps further than 5 minutes from your clock (replay protection). Every
   retry is signed afresh with its own timestamp; the body bytes stay the same.
5. Deduplicate on ``alert_id``: delivery is at least once.

:func:`verify_signature` does 2-4 and is what a Python receiver can copy.

[1] https://docs.stripe.com/webhooks#verify-manually
[2] https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries

Outcome of a request
--------------------
2xx: delivered. 408 and 429: retried (honouring ``Retry-After`` in seconds). Any other
4xx, and 3xx (redirects are not followed: configure the final URL): permanent failure,
logged and kept in the outbox as failed. 5xx, timeouts and connection errors: retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping

import aiohttp

from sinks.alerts.base import Outcome
from sinks.alerts.channels import Webhook

log = logging.getLogger(__name__)

__all__ = [
    "HEADER_ALERT_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "WebhookSender",
    "sign",
    "signature_headers",
    "verify_signature",
]

HEADER_ALERT_ID = "X-JustWalk-Alert-Id"
HEADER_TIMESTAMP = "X-JustWalk-Timestamp"
HEADER_SIGNATURE = "X-JustWalk-Signature"
DEFAULT_TOLERANCE_S = 300.0
USER_AGENT = "JustWalk-Alerts/1"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of ``X-JustWalk-Signature`` for this body and timestamp."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signature_headers(secret: bytes, body: bytes, alert_id: str, *, now_s: float
                      ) -> dict[str, str]:
    """All JustWalk headers of one attempt."""
    timestamp = str(int(now_s))
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        HEADER_ALERT_ID: alert_id,
        HEADER_TIMESTAMP: timestamp,
        HEADER_SIGNATURE: sign(secret, timestamp, body),
    }


def verify_signature(
    secret: bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now_s: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """True if ``headers`` carry a valid, fresh signature of ``body`` (receiver side)."""
    timestamp = headers.get(HEADER_TIMESTAMP, "")
    given = headers.get(HEADER_SIGNATURE, "")
    if not timestamp.isdigit() or not given.startswith("sha256="):
        return False
    now_s = time.time() if now_s is None else now_s
    if abs(now_s - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(given, sign(secret, timestamp, body))


class WebhookSender:
    """POSTs to webhooks over one shared HTTP session (created on first use)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def send(self, hook: Webhook, alert_id: str, body: str) -> Outcome:
        """One attempt; never raises for network or HTTP errors (they become an Outcome)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60))
        data = body.encode()
        headers = signature_headers(hook.secret, data, alert_id, now_s=self.clock())
        try:
            async with self._session.post(
                hook.url, data=data, headers=headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=hook.timeout_s),
            ) as resp:
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                await resp.read()
        except TimeoutError:
            return Outcome.retry(f"timeout after {hook.timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return Outcome.retry(f"{type(exc).__name__}: {exc}")
        except OSError as exc:  # e.g. DNS failures surface as OSError subclasses
            return Outcome.retry(f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return Outcome.delivered(f"HTTP {status}")
        if status >= 500 or status in (408, 429):
            return Outcome.retry(f"HTTP {status}", retry_after_s=retry_after)
        return Outcome.failed(f"HTTP {status}")

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
            await asyncio.sleep(0)  # let the connector close its transports


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
