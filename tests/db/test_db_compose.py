"""docker-compose.yml's database: PostgreSQL, its migration one-shot, and who reads it. The
connection as compose makes it (password in PGPASSWORD, not in the URL) is tried for real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from justwalk.cli import build_parser
from justwalk.config import Settings
from justwalk.db import database_url
from justwalk.db.engine import create
from justwalk.local_postgres import SUPERUSER, LocalPostgres

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = SPEC["services"]


def _settings(env: dict[str, object]) -> Settings:
    """``${VAR:-default}`` as compose resolves it without deploy/.env."""
    return Settings.from_env({k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v))
                              for k, v in env.items()})


def test_postgres_the_migration_and_the_services_that_use_it() -> None:
    pg = SERVICES["postgres"]
    assert pg["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "postgres-data" in SPEC["volumes"] and "healthcheck" in pg
    assert re.search(r"^POSTGRES_PASSWORD=", (ROOT / "deploy" / "env.example").read_text(), re.M)
    migrate = SERVICES["db-migrate"]
    assert build_parser().parse_args(migrate["command"]).func.__name__ == "_upgrade"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    api = SERVICES["api"]
    assert build_parser().parse_args(api["command"]).func.__name__ == "_cmd_api"
    assert "ports" not in api  # on the compose network only
    for name in ("db-migrate", "api", "processor", "gateway", "sink"):
        env = SERVICES[name]["environment"]
        settings = _settings(env)
        assert database_url(settings) == "postgresql+psycopg://justwalk@postgres:5432/justwalk"
        assert env["PGPASSWORD"].startswith("${POSTGRES_PASSWORD:?")
        if name != "db-migrate":
            assert SERVICES[name]["depends_on"]["db-migrate"]["condition"] == (
                "service_completed_successfully")
    api_settings = _settings(api["environment"])
    assert str(api_settings.api_port) in api["healthcheck"]["test"][-1]
    for name, svc in SERVICES.items():  # nobody else holds the database's password
        if name not in ("postgres", "db-migrate", "api", "processor", "gateway", "sink"):
            assert "PGPASSWORD" not in (svc.get("environment") or {}), name


def test_a_url_without_password_connects_with_pgpassword(postgres: LocalPostgres,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql://{SUPERUSER}@127.0.0.1:{postgres.port}/postgres"
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    engine = create(database_url(Settings(database_url=url)))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == SUPERUSER
    finally:
        engine.dispose()
