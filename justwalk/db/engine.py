"""Connecting to the database and bringing its schema to the newest migration.

SQLite (``Settings.database_file``) unless ``Settings.database_url`` names another
database; ``postgresql://`` URLs use psycopg 3. The schema is Alembic's
(``justwalk/db/migrations``): :func:`upgrade` applies the migrations, :func:`open_engine`
refuses a database whose schema is not the newest, naming the command that fixes it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from justwalk.config import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"
# Alembic logs a line per built-in plugin whenever it loads; we use none of them.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


class DatabaseError(RuntimeError):
    """The database cannot be used as it is (unreachable, or its schema is out of date)."""


def database_url(settings: Settings) -> str:
    """The SQLAlchemy URL of ``settings``' database (psycopg 3 for PostgreSQL)."""
    if not settings.database_url:
        return f"sqlite:///{settings.database_file}"
    url = make_url(settings.database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    # SQLite checks foreign keys only when asked, per connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's directory is created, foreign keys enforced."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_foreign_keys)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Any:
    """Alembic's configuration for our migrations, bound to ``engine``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` (the newest by default)."""
    from alembic import command

    try:
        command.upgrade(alembic_config(engine), revision)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot migrate the database at {_safe(engine)}: {exc}") from exc


def revisions(engine: Engine) -> tuple[str | None, str]:
    """(the database's current revision or None, the newest revision)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None, head
            current = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the database at {_safe(engine)}: {exc}") from exc
    return current, head


def open_engine(settings: Settings) -> Engine:
    """The engine of ``settings``' database, whose schema must be the newest."""
    engine = create(database_url(settings))
    current, head = revisions(engine)
    if current != head:
        engine.dispose()
        state = "has no schema" if current is None else f"is at revision {current}"
        raise DatabaseError(f"the database at {_safe(engine)} {state}, not {head}: "
                            "run `justwalk db upgrade`")
    return engine


def _safe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
