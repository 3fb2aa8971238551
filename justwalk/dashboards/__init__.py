"""Grafana dashboards, alert rules and provisioning files, generated from code.

``justwalk dashboards build`` writes them to ``deploy/grafana/``; ``justwalk grafana push``
sends the same objects to an existing Grafana.
"""

from justwalk.dashboards._alerting import (
    CONTACT_POINT,
    alerting_file,
    contact_points,
    mute_times,
    rules,
)
from justwalk.dashboards._dashboards import (
    DASHBOARDS,
    REFERENCE,
    UID_LONGITUDINAL,
    UID_OVERVIEW,
    UID_PATIENT,
)
from justwalk.dashboards._model import (
    DATASOURCE_NAME,
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
)
from justwalk.dashboards._provisioning import (
    DASHBOARD_DIR,
    PROVISIONING_DIR,
    build,
    dashboard_provider_file,
    datasource_file,
    generated_files,
)

__all__ = [
    "CONTACT_POINT",
    "DASHBOARDS",
    "DASHBOARD_DIR",
    "DATASOURCE_NAME",
    "DATASOURCE_UID",
    "FOLDER_TITLE",
    "FOLDER_UID",
    "PROVISIONING_DIR",
    "REFERENCE",
    "UID_LONGITUDINAL",
    "UID_OVERVIEW",
    "UID_PATIENT",
    "alerting_file",
    "build",
    "contact_points",
    "dashboard_provider_file",
    "datasource_file",
    "generated_files",
    "mute_times",
    "rules",
]
