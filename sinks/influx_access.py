"""InfluxDB databases, users and grants that keep the clinics apart (``justwalk influx setup``).

Per clinic, with the admin's credentials:

1. the clinic's database (``justwalk.schema.clinic_database``) with the schema's retention
   policies and continuous queries (``InfluxClient.ensure_database``);
2. its read user (Grafana's data source of that clinic) with the password from the
   environment, created or its password reset;
3. that user's grants made exactly ``READ`` on its own database: an admin privilege or any
   other grant it holds is revoked, so a user listed for one clinic can never read another
   (InfluxDB 1.x checks every database a statement names, subqueries included).

Running it again is harmless and is how a changed password or a new clinic is applied. It
needs InfluxDB with ``auth-enabled = true`` to mean anything; without auth every request
reads everything, which ``setup_clinics`` reports.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from justwalk.schema import clinic_database
from sinks.influx import InfluxClient, InfluxQueryError, quote_ident, quote_literal

log = logging.getLogger(__name__)

__all__ = ["ReadUser", "ensure_read_user", "setup_clinics"]

READ = "READ"
_NONE = "NO PRIVILEGES"


@dataclass(frozen=True, slots=True)
class ReadUser:
    """The read user of one clinic's database."""

    clinic_id: str
    user: str
    password: str = field(repr=False)


async def ensure_read_user(admin: InfluxClient, database: str, user: str,
                           password: str) -> list[str]:
    """Make ``user`` exist with ``password`` and hold READ on ``database`` and nothing else.

    ``admin`` is a client with an admin user. Returns what was done, for the log.
    """
    if user == admin.username:
        raise ValueError(f"the read user {user!r} of {database} is the admin user itself")
    done: list[str] = []
    users = {row["user"]: bool(row.get("admin")) for row in await admin.query_rows("SHOW USERS")}
    q_user = quote_ident(user)
    if user not in users:
        await admin.query(f"CREATE USER {q_user} WITH PASSWORD {quote_literal(password)}")
        done.append(f"user {user} created")
    else:
        await admin.query(f"SET PASSWORD FOR {q_user} = {quote_literal(password)}")
        done.append(f"user {user}: password set")
        if users[user]:
            await admin.query(f"REVOKE ALL PRIVILEGES FROM {q_user}")
            done.append(f"user {user}: admin privilege revoked")
    has_read = False
    for row in await admin.query_rows(f"SHOW GRANTS FOR {q_user}"):
        db, privilege = row["database"], row["privilege"]
        if db == database and privilege == READ:
            has_read = True
        elif privilege != _NONE:
            await admin.query(f"REVOKE ALL PRIVILEGES ON {quote_ident(db)} FROM {q_user}")
            done.append(f"user {user}: {privilege} on {db} revoked")
    if not has_read:
        await admin.query(f"GRANT {READ} ON {quote_ident(database)} TO {q_user}")
        done.append(f"user {user}: READ on {database} granted")
    return done


async def setup_clinics(url: str, prefix: str, *, admin_user: str, admin_password: str,
                        readers: Sequence[ReadUser], timeout_s: float = 30.0) -> list[str]:
    """Each reader's clinic database (policies, CQs) and read user; returns what was done."""
    done: list[str] = []
    async with InfluxClient(url, prefix, username=admin_user, password=admin_password,
                            timeout_s=timeout_s) as admin:
        await admin.ping()
        try:
            await admin.query("SHOW USERS")
        except InfluxQueryError as exc:
            raise ValueError(f"{admin_user!r} cannot manage users: {exc.message}") from exc
        if not admin_user:
            done.append("WARNING: no admin credentials given; without auth-enabled InfluxDB "
                        "keeps no clinic apart")
        for reader in readers:
            database = clinic_database(prefix, reader.clinic_id)
            async with InfluxClient(url, database, username=admin_user,
                                    password=admin_password, timeout_s=timeout_s) as db:
                await db.ensure_database()
            done.append(f"database {database}: retention policies and continuous queries")
            done += await ensure_read_user(admin, database, reader.user, reader.password)
    for line in done:
        log.info("%s", line)
    return done
