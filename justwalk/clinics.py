"""The clinics file: every clinic the installation serves, and how it is kept apart.

One JSON file (``JUSTWALK_CLINICS``, see ``deploy/clinics.example.json``)::

    {
      "clinics": {
        "clinic-a": {
          "grafana_org_id": 2,                   # the clinic's Grafana organisation
          "timezone": "Europe/Berlin",           # nights of the silent-device mute timing
          "influx_read_user": "read-clinic-a",   # InfluxDB user with READ on its database only
          "influx_read_password_env": "JUSTWALK_INFLUX_READ_PASSWORD_CLINIC_A",
          "alert_webhook_url": "https://ms-clinic-a.example/hooks/grafana",  # optional
          "alert_emails": ["gait-team@ms-clinic-a.example"]                  # optional
        }
      }
    }

What it drives: ``justwalk influx setup`` creates each clinic's database
(``justwalk.schema.clinic_database``) and its read user with ``GRANT READ`` on that database
alone; ``justwalk dashboards build --clinics`` writes one Grafana organisation per clinic
with that clinic's data source (its database, its read user), dashboards, alert rules and
contact point. Secrets are named by environment variable, never written here.

Organisation ids: Grafana numbers organisations in creation order (1 is its own "Main
Org.", which holds no clinic). ``deploy/grafana/create-orgs.sh`` creates missing ones and
refuses to start Grafana when an id here does not match Grafana's, so give a new clinic the
next free id. Ids, read users, webhook URLs and e-mail addresses belong to one clinic each:
the file is refused otherwise. Keys starting with ``_`` are comments.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from justwalk.config import env_secret
from justwalk.wire import ID_PATTERN

__all__ = ["Clinic", "ClinicsError", "load_clinics", "parse_clinics"]

MIN_ORG_ID = 2
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEYS = {"grafana_org_id", "timezone", "influx_read_user", "influx_read_password_env",
         "alert_webhook_url", "alert_emails"}
_REQUIRED = {"grafana_org_id", "influx_read_user", "influx_read_password_env"}


class ClinicsError(ValueError):
    """The clinics file is invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Clinic:
    """One clinic: its Grafana organisation, InfluxDB read user and alert contacts."""

    clinic_id: str
    grafana_org_id: int
    influx_read_user: str
    influx_read_password_env: str
    """Name of the environment variable holding the read user's password."""
    timezone: str = "UTC"
    alert_webhook_url: str = ""
    alert_emails: tuple[str, ...] = ()

    def read_password(self, environ: Mapping[str, str] | None = None) -> str:
        """The read user's password, from ``influx_read_password_env``."""
        return env_secret(self.influx_read_password_env, environ)


def load_clinics(path: Path) -> tuple[Clinic, ...]:
    """Read and validate the clinics file; ``ClinicsError`` names the fault."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ClinicsError(f"{path}: cannot read the clinics file: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ClinicsError(f"{path}: not valid JSON: {exc}") from exc
    return parse_clinics(data, source=str(path))


def parse_clinics(data: Any, *, source: str = "clinics") -> tuple[Clinic, ...]:
    """Validate the parsed JSON of a clinics file (see the module docstring)."""

    def fail(where: str, problem: str) -> ClinicsError:
        return ClinicsError(f"{source}: {where}: {problem}")

    top = _obj(data, "(top level)", {"clinics"}, fail)
    if "clinics" not in top:
        raise fail("clinics", "missing")
    raw = _obj(top["clinics"], "clinics", None, fail)
    if not raw:
        raise fail("clinics", "no clinic configured")
    clinics = tuple(_clinic(cid, value, fail) for cid, value in raw.items())
    _unique(clinics, fail)
    return clinics


def _obj(value: Any, where: str, allowed: Collection[str] | None, fail: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(where, f"must be a JSON object, not {type(value).__name__}")
    out = {k: v for k, v in value.items() if not k.startswith("_")}
    if allowed is not None:
        for key in out:
            if key not in allowed:
                raise fail(f"{where}.{key}" if where != "(top level)" else key,
                           f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return out


def _string(value: Any, where: str, fail: Any, pattern: re.Pattern[str] | None = None,
            what: str = "") -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(where, "must be a non-empty string")
    if pattern is not None and not pattern.fullmatch(value):
        raise fail(where, f"{value!r} is not {what}")
    return value


def _clinic(clinic_id: str, raw: Any, fail: Any) -> Clinic:
    where = f"clinics.{clinic_id}"
    if not ID_PATTERN.fullmatch(clinic_id):
        raise fail(where, "a clinic id is 1-64 letters, digits, '_', '.', ':' or '-'")
    d = _obj(raw, where, _KEYS, fail)
    for key in sorted(_REQUIRED - set(d)):
        raise fail(f"{where}.{key}", "missing")
    org = d["grafana_org_id"]
    if isinstance(org, bool) or not isinstance(org, int) or org < MIN_ORG_ID:
        raise fail(f"{where}.grafana_org_id",
                   f"must be an integer >= {MIN_ORG_ID} (1 is Grafana's own Main Org.)")
    user = _string(d["influx_read_user"], f"{where}.influx_read_user", fail, _USER,
                   "a user name (letters, digits, '_', '.', '-')")
    env = _string(d["influx_read_password_env"], f"{where}.influx_read_password_env", fail,
                  _ENV_NAME, "an environment variable name (A-Z, 0-9, _)")
    tz = _string(d.get("timezone", "UTC"), f"{where}.timezone", fail)
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise fail(f"{where}.timezone", f"{tz!r} is not an IANA time zone") from None
    url = d.get("alert_webhook_url", "")
    if url:
        url = _string(url, f"{where}.alert_webhook_url", fail)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise fail(f"{where}.alert_webhook_url", f"{url!r} is not an http(s) URL")
    emails = d.get("alert_emails", [])
    if not isinstance(emails, list):
        raise fail(f"{where}.alert_emails", "must be a list of e-mail addresses")
    addresses = tuple(_string(a, f"{where}.alert_emails[{i}]", fail, _ADDRESS,
                              "an e-mail address") for i, a in enumerate(emails))
    return Clinic(clinic_id, org, user, env, tz, url, addresses)


def _unique(clinics: tuple[Clinic, ...], fail: Any) -> None:
    """Nothing that identifies or reaches a clinic may be shared with another clinic."""
    seen: dict[tuple[str, object], str] = {}
    for c in clinics:
        owned: list[tuple[str, object]] = [
            ("grafana_org_id", c.grafana_org_id), ("influx_read_user", c.influx_read_user),
            ("influx_read_password_env", c.influx_read_password_env)]
        if c.alert_webhook_url:
            owned.append(("alert_webhook_url", c.alert_webhook_url))
        owned += [("alert_emails", a.lower()) for a in c.alert_emails]
        for key, value in owned:
            other = seen.setdefault((key, value), c.clinic_id)
            if other != c.clinic_id:
                raise fail(f"clinics.{c.clinic_id}.{key}",
                           f"{value!r} is already clinic {other}'s; each clinic has its own")
