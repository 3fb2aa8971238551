"""The private PostgreSQL server of the local stack: starts, serves, stops, leaves nothing."""

from __future__ import annotations

import pytest

from justwalk.local_postgres import LocalPostgres, PostgresError


def test_local_postgres_serves_a_database_and_cleans_up() -> None:
    pg = LocalPostgres(fsync=False)
    with pg:
        root = pg.root
        assert root is not None and (root / "data" / "PG_VERSION").is_file()
        url = pg.create_database("jw_test")
        assert url.endswith(f"@127.0.0.1:{pg.port}/jw_test")
        pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (41), (1)", database="jw_test")
        assert pg.psql("SELECT sum(x) FROM t", database="jw_test") == "42"
        # Password authentication is on: a wrong password is refused.
        good, pg.password = pg.password, "wrong"
        with pytest.raises(PostgresError, match="password authentication failed"):
            pg.psql("SELECT 1")
        pg.password = good
        with pytest.raises(PostgresError, match="not a plain lower-case identifier"):
            pg.create_database('x"; DROP DATABASE postgres; --')
    assert not pg.running()
    assert not root.exists()
