"""Patients, prescriptions and sessions in a database (SQLite by default, PostgreSQL).

``open_repository(settings)`` is the way in; ``justwalk db ...`` (``justwalk.db.cli``) and
the HTTP API (``justwalk.api``) use it. See ``models`` for the tables, ``inputs`` for the
rules on what may be stored, ``engine`` for URLs and migrations.
"""

from __future__ import annotations

from justwalk.config import Settings
from justwalk.db.engine import DatabaseError, database_url, open_engine, upgrade
from justwalk.db.inputs import InputError
from justwalk.db.repository import Conflict, NotFound, Repository

__all__ = ["Conflict", "DatabaseError", "InputError", "NotFound", "Repository",
           "database_url", "open_repository", "sensor_heights", "upgrade"]


def open_repository(settings: Settings) -> Repository:
    """The repository of ``settings``' database (its schema must be the newest)."""
    return Repository(open_engine(settings))


def sensor_heights(settings: Settings) -> dict[str, float]:
    """Sensor height (m) per patient id from the database (for the stream processor)."""
    engine = open_engine(settings)
    try:
        return Repository(engine).sensor_heights()
    finally:
        engine.dispose()
