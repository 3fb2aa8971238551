"""Alembic's environment: runs the migrations on the engine ``justwalk.db.engine`` gives it."""

from __future__ import annotations

from alembic import context

from justwalk.db.engine import create
from justwalk.db.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # the alembic command line: a URL in alembic.ini / -x url=...
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=sqlite:///run/justwalk.sqlite3 ...")
    engine = create(url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        # SQLite alters tables by copying them ("batch" mode)
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
