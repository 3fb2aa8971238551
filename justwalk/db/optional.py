"""The database for the services that use it when it is there (gateway, sink).

Training sessions (issue #16) need the database; a stack run without one keeps streaming
and refuses training sessions (``training_unavailable``).
"""

from __future__ import annotations

import logging

from justwalk.config import Settings
from justwalk.db.engine import DatabaseError, open_engine
from justwalk.db.repository import Repository

log = logging.getLogger(__name__)


def open_repository(settings: Settings, who: str) -> Repository | None:
    """The database of ``settings`` when one is configured and migrated, else None (logged).

    Configured: ``database_url`` set, or the SQLite ``database_file`` present.
    """
    if not settings.database_url and not settings.database_file.exists():
        log.info("%s: no database configured; training sessions are off", who)
        return None
    try:
        return Repository(open_engine(settings))
    except DatabaseError as exc:
        log.warning("%s: %s; training sessions are off", who, exc)
        return None
