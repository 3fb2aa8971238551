"""Fixtures of the database tests, on SQLite and on PostgreSQL (one private server per test
session, ``justwalk.local_postgres``).

- ``engine`` / ``repo``: a migrated database per backend, created once per session and
  emptied before each test (creating a PostgreSQL database per test would copy a template
  each time and make the server's shutdown slow).
- ``fresh_settings``: settings naming a new, empty database (for migrations and the CLI).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from justwalk.config import Settings
from justwalk.db import Repository, database_url
from justwalk.db.engine import create, upgrade
from justwalk.db.models import Base
from justwalk.local_postgres import LocalPostgres

BACKENDS = ["sqlite", "postgresql"]
_names = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """One PostgreSQL server for the session (fsync off: a test server)."""
    with LocalPostgres(fsync=False) as pg:
        yield pg


def _new_database(backend: str, request: pytest.FixtureRequest, folder: Path) -> Settings:
    name = f"jw_{next(_names)}"
    if backend == "sqlite":
        return Settings(database_file=folder / f"{name}.sqlite3")
    pg: LocalPostgres = request.getfixturevalue("postgres")
    pg.create_database(name)
    return Settings(database_url=pg.url(name))  # plain postgresql://: psycopg 3 is implied


@pytest.fixture(params=BACKENDS)
def fresh_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings naming an empty database of their own (no schema), on either backend."""
    return _new_database(request.param, request, tmp_path)


@pytest.fixture(scope="session", params=BACKENDS)
def session_engine(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A migrated database per backend, for the whole session."""
    settings = _new_database(request.param, request, tmp_path_factory.mktemp("db"))
    engine = create(database_url(settings))
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def engine(session_engine: Engine) -> Engine:
    """The session's migrated database of one backend, emptied."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with session_engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
    return session_engine


@pytest.fixture
def repo(engine: Engine) -> Repository:
    """A repository with clinics ``clinic-a`` and ``clinic-b``."""
    r = Repository(engine)
    r.add_clinic("clinic-a")
    r.add_clinic("clinic-b")
    return r
