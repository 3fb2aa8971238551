"""The Alembic migrations and the ORM models describe the same schema, on both backends."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Engine, Integer, MetaData, inspect

from justwalk.config import Settings
from justwalk.db import DatabaseError, database_url
from justwalk.db.engine import alembic_config, create, open_engine, revisions, upgrade
from justwalk.db.models import Base


def _diff(engine: Engine, metadata: MetaData) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_migrations_give_exactly_the_models_schema(engine: Engine) -> None:
    assert _diff(engine, Base.metadata) == []
    current, head = revisions(engine)
    assert current == head


def test_the_comparison_sees_a_model_the_migrations_lack(engine: Engine) -> None:
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["patients"].append_column(Column("extra_field", Integer, nullable=True))
    diff = _diff(engine, changed)
    assert [d[0] for d in diff if isinstance(d, tuple)] == ["add_column"]


def test_downgrade_removes_everything_and_upgrade_restores_it(fresh_settings: Settings) -> None:
    engine = create(database_url(fresh_settings))
    upgrade(engine)
    tables = set(Base.metadata.tables)
    assert tables <= set(inspect(engine).get_table_names())
    command.downgrade(alembic_config(engine), "base")
    assert not tables & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert _diff(engine, Base.metadata) == []
    engine.dispose()


def test_an_unmigrated_database_is_refused_with_the_fix(fresh_settings: Settings) -> None:
    with pytest.raises(DatabaseError, match=r"has no schema.*run `justwalk db upgrade`"):
        open_engine(fresh_settings)
    engine = create(database_url(fresh_settings))
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    open_engine(fresh_settings).dispose()


def test_postgres_urls_use_psycopg_3() -> None:
    url = database_url(Settings(database_url="postgresql://u:p%40ss@db:5432/justwalk"))
    assert url == "postgresql+psycopg://u:p%40ss@db:5432/justwalk"
    assert database_url(Settings()) == "sqlite:///run/justwalk.sqlite3"
