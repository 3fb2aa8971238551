"""``justwalk grafana push``: one clinic's dashboards and alert rules into an existing Grafana.

The folder, data source, dashboards, contact point, mute timing and alert rules go to a
Grafana the clinic already runs, over its HTTP API (``grafana-client``), into the
organisation of the credential (a service-account token belongs to one) or the one given
with ``--org-id`` (basic auth).

Everything pushed is what ``justwalk dashboards build`` provisions for one clinic in our own
stack, with the values of the clinics file given as the command's options: the data source
reads the clinic's own database (``--clinic``) as its read user, which may read nothing
else. Each object is created when missing and updated in place when it exists (same uid),
so pushing again after an upgrade is the way to update a clinic's Grafana. Push each
clinic into its own organisation: an organisation's users see all its data sources.

A clinic with its own InfluxDB data source passes ``--datasource-uid`` instead of the
InfluxDB options: no data source is created and every query points at theirs.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from justwalk.dashboards import (
    CONTACT_POINT,
    DASHBOARDS,
    DATASOURCE_NAME,
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    contact_points,
    datasource,
    mute_times,
    rules,
)

log = logging.getLogger(__name__)

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PushOptions:
    """What to push and with which values for the provisioning placeholders."""

    influx_url: str = ""
    influx_user: str = ""
    """The clinic's read user (``justwalk influx setup`` creates it)."""
    influx_password: str = ""
    database: str = ""
    """The clinic's database (``justwalk.schema.clinic_database``)."""
    org_id: int = 0
    """The clinic's organisation; 0: the credential's own."""
    datasource_uid: str = ""
    """Use this existing data source instead of creating ours."""
    webhook_url: str = ""
    alert_emails: str = ""
    timezone: str = "UTC"
    editable: bool = False
    """Leave pushed alerting objects editable in Grafana's UI (no provenance)."""


def _with_datasource(obj: Any, uid: str) -> Any:
    """A deep copy of ``obj`` with every reference to our data source uid replaced."""
    if isinstance(obj, dict):
        return {k: (uid if k in ("uid", "datasourceUid") and v == DATASOURCE_UID
                    else _with_datasource(v, uid)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_with_datasource(v, uid) for v in obj]
    return obj


def _exists(get: Callable[[], Any]) -> bool:
    from grafana_client.client import GrafanaClientError

    try:
        get()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return False
        raise
    return True


def push(api: Any, options: PushOptions) -> list[str]:
    """Push everything through ``api`` (a ``grafana_client.GrafanaApi``); return what was done."""
    done: list[str] = []
    ds_uid = options.datasource_uid or DATASOURCE_UID

    if _exists(lambda: api.folder.get_folder(FOLDER_UID)):
        done.append(f"folder {FOLDER_UID} exists")
    else:
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        done.append(f"folder {FOLDER_UID} created")

    org = options.org_id or 1  # only labels the payloads: the request's org decides
    if not options.datasource_uid:
        if not options.influx_url or not options.database:
            raise ValueError("--influx-url and --clinic are needed unless --datasource-uid "
                             "names an existing InfluxDB data source")
        ds = datasource(org_id=org, database=options.database, user=options.influx_user,
                        password=options.influx_password)
        ds.update(url=options.influx_url, isDefault=False)
        del ds["editable"], ds["orgId"]
        if _exists(lambda: api.datasource.get_datasource_by_uid(DATASOURCE_UID)):
            api.datasource.update_datasource_by_uid(DATASOURCE_UID, ds)
            done.append(f"datasource {DATASOURCE_NAME} updated")
        else:
            api.datasource.create_datasource(ds)
            done.append(f"datasource {DATASOURCE_NAME} created")

    for name, build in DASHBOARDS.items():
        board = _with_datasource(build(), ds_uid)
        board["id"] = None
        api.dashboard.update_dashboard({"dashboard": board, "folderUid": FOLDER_UID,
                                        "overwrite": True,
                                        "message": "justwalk grafana push"})
        done.append(f"dashboard {name} ({board['uid']}) pushed")

    provenance = options.editable
    for mt in mute_times(org, timezone=options.timezone):
        del mt["orgId"]
        name = mt["name"]
        if _exists(lambda: api.alertingprovisioning.get_mute_timing(name)):  # noqa: B023
            api.alertingprovisioning.update_mute_timing(mt["name"], mt)
            done.append(f"mute timing {mt['name']} updated")
        else:
            api.alertingprovisioning.create_mute_timing(mt, disable_provenance=provenance)
            done.append(f"mute timing {mt['name']} created")

    route = _push_contact_point(api, options, done)

    for group in rules(org):
        for rule in group["rules"]:
            payload = _with_datasource(copy.deepcopy(rule), ds_uid)
            payload.update(folderUID=FOLDER_UID, ruleGroup=group["name"], orgID=org)
            if not route:
                payload.pop("notification_settings", None)
            uid = rule["uid"]
            if _exists(lambda: api.alertingprovisioning.get_alertrule(uid)):  # noqa: B023
                api.alertingprovisioning.update_alertrule(rule["uid"], payload,
                                                          disable_provenance=provenance)
                done.append(f"alert rule {rule['uid']} updated")
            else:
                api.alertingprovisioning.create_alertrule(payload,
                                                          disable_provenance=provenance)
                done.append(f"alert rule {rule['uid']} created")
        interval_s = _seconds(group["interval"])
        current = api.alertingprovisioning.get_rule_group(FOLDER_UID, group["name"])
        current["interval"] = interval_s
        api.alertingprovisioning.update_rule_group(FOLDER_UID, group["name"], current,
                                                   disable_provenance=provenance)
        done.append(f"rule group {group['name']} every {group['interval']}")
    return done


def _push_contact_point(api: Any, options: PushOptions, done: list[str]) -> bool:
    """Create/update the contact point's integrations; False if none was configured."""
    emails = [a.strip() for a in options.alert_emails.split(";") if a.strip()]
    wanted = []
    for cp in contact_points(options.org_id or 1, webhook_url=options.webhook_url,
                             emails=emails):
        for receiver in cp["receivers"]:
            wanted.append({"uid": receiver["uid"], "name": CONTACT_POINT,
                           "type": receiver["type"], "settings": receiver["settings"],
                           "disableResolveMessage": receiver["disableResolveMessage"]})
    if not wanted:
        done.append("no contact point (give --webhook-url and/or --alert-emails); the "
                    "rules use Grafana's notification policies")
        return False
    existing = {cp.get("uid") for cp in
                api.alertingprovisioning.get_contactpoints(name=CONTACT_POINT) or []}
    for cp in wanted:
        if cp["uid"] in existing:
            api.alertingprovisioning.update_contactpoint(cp["uid"], cp,
                                                         disable_provenance=options.editable)
            done.append(f"contact point {cp['type']} updated")
        else:
            api.alertingprovisioning.create_contactpoint(cp, disable_provenance=options.editable)
            done.append(f"contact point {cp['type']} created")
    return True


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(duration[:-1]) * units[duration[-1]]


def connect(url: str, *, token: str = "", user: str = "", password: str = "",
            timeout_s: float = 10.0, org_id: int = 0) -> Any:
    """A ``GrafanaApi`` for ``url`` with a service-account token or basic auth.

    ``org_id`` sends every request to that organisation (header ``X-Grafana-Org-Id``).
    """
    from grafana_client import GrafanaApi

    if token:
        credential: str | tuple[str, str] = token
    elif user:
        credential = (user, password)
    else:
        raise ValueError("give --token (a service account token) or --user and --password")
    api = GrafanaApi.from_url(url, credential=credential, timeout=timeout_s)
    if org_id:
        api.client.s.headers["X-Grafana-Org-Id"] = str(org_id)  # as GrafanaClient does
    return api
