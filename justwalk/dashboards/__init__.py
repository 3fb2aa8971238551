"""Grafana dashboards, alert rules and provisioning files, generated from code.

``justwalk dashboards build`` writes them to ``deploy/grafana/`` (for the example clinics)
or, with ``--clinics``, a site's own; ``justwalk grafana push`` sends the same objects for
one clinic to an existing Grafana.
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
    CONTAINER_DASHBOARDS,
    CONTAINER_ROOT,
    DASHBOARD_DIR,
    EXAMPLE_CLINICS,
    ORGANISATIONS,
    PROVISIONING_DIR,
    build,
    dashboard_provider_file,
    datasource,
    datasource_file,
    generated_files,
    missing_secrets,
    organisations_file,
    write_site,
)

__all__ = [
    "CONTACT_POINT",
    "CONTAINER_DASHBOARDS",
    "CONTAINER_ROOT",
    "DASHBOARDS",
    "DASHBOARD_DIR",
    "DATASOURCE_NAME",
    "DATASOURCE_UID",
    "EXAMPLE_CLINICS",
    "FOLDER_TITLE",
    "FOLDER_UID",
    "ORGANISATIONS",
    "PROVISIONING_DIR",
    "REFERENCE",
    "UID_LONGITUDINAL",
    "UID_OVERVIEW",
    "UID_PATIENT",
    "alerting_file",
    "build",
    "contact_points",
    "dashboard_provider_file",
    "datasource",
    "datasource_file",
    "generated_files",
    "missing_secrets",
    "mute_times",
    "organisations_file",
    "rules",
    "write_site",
]
