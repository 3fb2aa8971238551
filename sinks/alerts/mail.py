"""E-mail delivery over SMTP: one plain-text message per alert and recipient.

The stdlib ``smtplib`` runs in a worker thread (one connection per message: alerts are
rare, and a fresh connection never trips over a server that closed an idle one).
``security`` is "starttls" (RFC 3207 upgrade, the usual port 587), "tls" (implicit TLS,
port 465) or "none" (loopback and test servers only).

Outcomes: accepted by the server -> delivered. A 5xx answer to the sender, a recipient or
the message -> permanent failure. Connection errors, timeouts, 4xx answers, and login or
STARTTLS problems (a configuration error an operator can fix without losing the alert)
-> retried.

The message carries ``X-JustWalk-Alert-Id`` and a ``Message-ID`` derived from the alert id,
so a mail client can recognise a re-sent copy.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from sinks.alerts.base import Outcome
from sinks.alerts.channels import EmailRecipient, SmtpServer
from sinks.alerts.messages import email_subject, email_text
from sinks.alerts.webhook import HEADER_ALERT_ID

log = logging.getLogger(__name__)

__all__ = ["SmtpSender", "build_message"]


def build_message(body: dict[str, Any], *, sender: str, to: str) -> EmailMessage:
    """The e-mail for one delivery body (see :mod:`sinks.alerts.messages`)."""
    msg = EmailMessage()
    msg["Subject"] = email_subject(body)
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = email.utils.formatdate(usegmt=True)
    domain = sender.rsplit("@", 1)[-1]
    digest = hashlib.sha256(f"{body['alert_id']}|{to}".encode()).hexdigest()[:24]
    msg["Message-ID"] = f"<{body['alert_id']}.{digest}@{domain}>"
    msg[HEADER_ALERT_ID] = body["alert_id"]
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    msg.set_content(email_text(body))
    return msg


class SmtpSender:
    """Sends through one SMTP server."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def send(self, recipient: EmailRecipient, body: dict[str, Any]) -> Outcome:
        """One attempt; never raises for SMTP or network errors."""
        msg = build_message(body, sender=self.server.sender, to=recipient.address)
        return await asyncio.to_thread(self._send_sync, msg, recipient.address)

    def _send_sync(self, msg: EmailMessage, to: str) -> Outcome:
        s = self.server
        try:
            smtp: smtplib.SMTP
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            with smtp:
                if s.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if s.username is not None and s.password is not None:
                    smtp.login(s.username, s.password)
                refused = smtp.send_message(msg, from_addr=s.sender, to_addrs=[to])
        except smtplib.SMTPRecipientsRefused as exc:
            return _by_code(exc.recipients.get(to, (550, b""))[0], f"recipient refused: {exc}")
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            return _by_code(exc.smtp_code, f"{type(exc).__name__}: {exc}")
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError,
                ssl.SSLError) as exc:
            log.error("SMTP login/TLS problem with %s:%d (check the smtp section): %s",
                      s.host, s.port, exc)
            return Outcome.retry(f"{type(exc).__name__}: {exc}")
        except (smtplib.SMTPException, OSError) as exc:  # incl. timeouts, refused
            return Outcome.retry(f"{type(exc).__name__}: {exc}")
        if refused:
            return Outcome.failed(f"recipient refused: {refused}")
        return Outcome.delivered(f"accepted by {s.host}:{s.port}")


def _by_code(code: int, detail: str) -> Outcome:
    return Outcome.failed(detail) if 500 <= code < 600 else Outcome.retry(detail)
