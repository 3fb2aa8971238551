"""The alert channels file: which clinic hears about its patients' alerts, and how.

One JSON file (``JUSTWALK_ALERT_CHANNELS``, see ``deploy/alert_channels.example.json``)::

    {
      "smtp": {                                  # needed when any clinic has "email_to"
        "host": "smtp.example.org",
        "port": 587,                             # default: 587 starttls, 465 tls, 25 none
        "from": "alerts@justwalk.example",
        "security": "starttls",                  # "starttls" (default) | "tls" | "none"
        "username": "justwalk",                  # optional; then password or password_env
        "password_env": "JUSTWALK_SMTP_PASSWORD",
        "timeout_s": 10
      },
      "clinics": {
        "clinic-a": {
          "webhooks": [{"url": "https://clinic-a.example/hooks/justwalk",
                        "secret_env": "JUSTWALK_WEBHOOK_SECRET_CLINIC_A",
                        "timeout_s": 5}],
          "email_to": ["falls-oncall@clinic-a.example"]
        }
      }
    }

Secrets are given either as the NAME of an environment variable (``secret_env``,
``password_env``; resolved through :func:`justwalk.config.env_secret`), which is what
production uses, or inline (``secret``, ``password``) for local and development setups.
Keys starting with ``_`` are comments and ignored. Every other unknown key, a missing key
or a bad value is an error naming the key (``clinics.clinic-a.webhooks[0].secret_env:
...``), raised when the service starts.

Each webhook URL and each e-mail recipient of a clinic is one *channel*: deliveries are
queued and retried per channel, so one receiver that is down delays nobody else.

A clinic's alerts go to its own channels only, and a channel belongs to one clinic: a
webhook URL or an e-mail address listed under two clinics is refused (it would receive
both clinics' patients).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from justwalk.config import env_secret

log = logging.getLogger(__name__)

__all__ = [
    "Channel",
    "ChannelConfig",
    "ChannelConfigError",
    "EmailRecipient",
    "SmtpServer",
    "Webhook",
    "load_channels",
    "parse_channels",
]

MIN_SECRET_CHARS = 16
_SECURITY_PORTS = {"starttls": 587, "tls": 465, "none": 25}
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


class ChannelConfigError(ValueError):
    """The alert channels file is invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """The outgoing mail server shared by all clinics."""

    host: str
    port: int
    sender: str
    """The From address (key ``from`` in the file)."""
    security: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Webhook:
    """One HTTPS endpoint of a clinic; requests are signed with ``secret`` (HMAC-SHA256)."""

    clinic_id: str
    url: str
    secret: bytes = field(repr=False)
    timeout_s: float = 5.0

    @property
    def key(self) -> str:
        """The channel's identity in the outbox."""
        return f"{self.clinic_id}/webhook/{self.url}"


@dataclass(frozen=True, slots=True)
class EmailRecipient:
    """One e-mail address of a clinic."""

    clinic_id: str
    address: str

    @property
    def key(self) -> str:
        """The channel's identity in the outbox."""
        return f"{self.clinic_id}/email/{self.address}"


Channel = Webhook | EmailRecipient


@dataclass(frozen=True)
class ChannelConfig:
    """The validated channels file."""

    clinics: Mapping[str, tuple[Channel, ...]]
    smtp: SmtpServer | None = None

    def channels_for(self, clinic_id: str) -> tuple[Channel, ...] | None:
        """The clinic's channels, or None for a clinic that is not configured."""
        return self.clinics.get(clinic_id)

    def channel_keys(self, clinic_id: str) -> list[str] | None:
        """Outbox keys of the clinic's channels, or None for an unknown clinic."""
        channels = self.clinics.get(clinic_id)
        return None if channels is None else [c.key for c in channels]

    def channel(self, key: str) -> Channel | None:
        """The channel with this outbox key (None if it is no longer configured)."""
        for channels in self.clinics.values():
            for c in channels:
                if c.key == key:
                    return c
        return None


def load_channels(path: Path, environ: Mapping[str, str] | None = None) -> ChannelConfig:
    """Read and validate the channels file; raise ``ChannelConfigError`` naming the fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChannelConfigError(f"{path}: cannot read the alert channels file: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChannelConfigError(f"{path}: not valid JSON: {exc}") from exc
    return parse_channels(data, environ=environ, source=str(path))


def parse_channels(
    data: Any, *, environ: Mapping[str, str] | None = None, source: str = "alert channels"
) -> ChannelConfig:
    """Validate the parsed JSON of a channels file (see the module docstring)."""
    return _Parser(source, environ).config(data)


class _Parser:
    def __init__(self, source: str, environ: Mapping[str, str] | None) -> None:
        self.source = source
        self.environ = environ

    def fail(self, where: str, problem: str) -> ChannelConfigError:
        return ChannelConfigError(f"{self.source}: {where}: {problem}")

    def obj(self, value: Any, where: str, allowed: Collection[str] | None,
            required: Collection[str] = ()) -> dict[str, Any]:
        """A JSON object without its comment keys; ``allowed=None`` accepts any key."""
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a JSON object, not {type(value).__name__}")
        out = {k: v for k, v in value.items() if not k.startswith("_")}
        for key in out:
            if allowed is not None and key not in allowed:
                raise self.fail(_join(where, key),
                                f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required):
            if key not in out:
                raise self.fail(_join(where, key), "missing")
        return out

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, "must be a non-empty string")
        if any(ord(ch) < 32 for ch in value):
            raise self.fail(where, "must not contain control characters")
        return value

    def number(self, value: Any, where: str, *, integer: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value) or (integer and not isinstance(value, int)):
            raise self.fail(where, "must be an integer" if integer else "must be a number")
        return value

    def secret(self, d: dict[str, Any], where: str, inline: str, env: str) -> str | None:
        if inline in d and env in d:
            raise self.fail(_join(where, inline), f"give either {inline!r} or {env!r}, not both")
        if env in d:
            name = self.string(d[env], _join(where, env))
            try:
                return env_secret(name, self.environ)
            except ValueError as exc:
                raise self.fail(_join(where, env), str(exc)) from None
        if inline in d:
            return self.string(d[inline], _join(where, inline))
        return None

    def address(self, value: Any, where: str) -> str:
        text = self.string(value, where)
        if not _ADDRESS.match(text):
            raise self.fail(where, f"{text!r} is not an e-mail address")
        return text

    def config(self, data: Any) -> ChannelConfig:
        top = self.obj(data, "(top level)", {"smtp", "clinics"}, {"clinics"})
        clinics_raw = self.obj(top["clinics"], "clinics", None)
        if not clinics_raw:
            raise self.fail("clinics", "no clinic configured")
        clinics = {cid: self.clinic(cid, raw) for cid, raw in clinics_raw.items()}
        self.one_clinic_per_channel(clinics)
        smtp = self.smtp(top["smtp"]) if "smtp" in top else None
        if smtp is None:
            for cid, channels in clinics.items():
                if any(isinstance(c, EmailRecipient) for c in channels):
                    raise self.fail("smtp", f"missing, but clinics.{cid}.email_to needs it")
        return ChannelConfig(clinics=clinics, smtp=smtp)

    def clinic(self, clinic_id: str, raw: Any) -> tuple[Channel, ...]:
        where = f"clinics.{clinic_id}"
        self.string(clinic_id, where)
        d = self.obj(raw, where, {"webhooks", "email_to"})
        channels: list[Channel] = []
        hooks = d.get("webhooks", [])
        if not isinstance(hooks, list):
            raise self.fail(f"{where}.webhooks", "must be a list")
        for i, hook in enumerate(hooks):
            channels.append(self.webhook(clinic_id, hook, f"{where}.webhooks[{i}]"))
        emails = d.get("email_to", [])
        if not isinstance(emails, list):
            raise self.fail(f"{where}.email_to", "must be a list of e-mail addresses")
        for i, addr in enumerate(emails):
            channels.append(EmailRecipient(clinic_id, self.address(addr,
                                                                    f"{where}.email_to[{i}]")))
        if not channels:
            raise self.fail(where, "no channel: give 'webhooks' and/or 'email_to'")
        keys = [c.key for c in channels]
        for key in keys:
            if keys.count(key) > 1:
                raise self.fail(where, f"channel listed twice: {key.split('/', 2)[2]}")
        return tuple(channels)

    def one_clinic_per_channel(self, clinics: Mapping[str, tuple[Channel, ...]]) -> None:
        owner: dict[str, str] = {}
        for cid, channels in clinics.items():
            for c in channels:
                target = c.url if isinstance(c, Webhook) else c.address.lower()
                other = owner.setdefault(target, cid)
                if other != cid:
                    kind = "webhooks" if isinstance(c, Webhook) else "email_to"
                    raise self.fail(f"clinics.{cid}.{kind}",
                                    f"{target} is also a channel of clinic {other}; a channel "
                                    "receives one clinic's patients only")

    def webhook(self, clinic_id: str, raw: Any, where: str) -> Webhook:
        d = self.obj(raw, where, {"url", "secret", "secret_env", "timeout_s"}, {"url"})
        url = self.string(d["url"], f"{where}.url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.fail(f"{where}.url", f"{url!r} is not an http(s) URL")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
            log.warning("%s: %s.url uses plain http outside loopback: %s", self.source, where,
                        url)
        secret = self.secret(d, where, "secret", "secret_env")
        if secret is None:
            raise self.fail(f"{where}.secret_env", "missing (or 'secret' inline, for dev only)")
        if len(secret) < MIN_SECRET_CHARS:
            raise self.fail(f"{where}.secret", f"shorter than {MIN_SECRET_CHARS} characters")
        timeout_s = self.number(d.get("timeout_s", 5.0), f"{where}.timeout_s")
        if timeout_s <= 0:
            raise self.fail(f"{where}.timeout_s", "must be positive")
        return Webhook(clinic_id, url, secret.encode(), float(timeout_s))

    def smtp(self, raw: Any) -> SmtpServer:
        d = self.obj(raw, "smtp", {"host", "port", "from", "security", "username", "password",
                                   "password_env", "timeout_s"}, {"host", "from"})
        host = self.string(d["host"], "smtp.host")
        sender = self.address(d["from"], "smtp.from")
        security = d.get("security", "starttls")
        if security not in _SECURITY_PORTS:
            raise self.fail("smtp.security", f"must be one of {sorted(_SECURITY_PORTS)}")
        port = int(self.number(d.get("port", _SECURITY_PORTS[security]), "smtp.port",
                               integer=True))
        if not 0 < port < 65536:
            raise self.fail("smtp.port", "must be in 1..65535")
        username = self.string(d["username"], "smtp.username") if "username" in d else None
        password = self.secret(d, "smtp", "password", "password_env")
        if (username is None) != (password is None):
            raise self.fail("smtp.username" if username is None else "smtp.password_env",
                            "username and password go together")
        timeout_s = self.number(d.get("timeout_s", 10.0), "smtp.timeout_s")
        if timeout_s <= 0:
            raise self.fail("smtp.timeout_s", "must be positive")
        return SmtpServer(host, port, sender, security, username, password, float(timeout_s))


def _join(where: str, key: str) -> str:
    return key if where == "(top level)" else f"{where}.{key}"
