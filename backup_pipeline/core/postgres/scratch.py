"""Names of scratch databases (verification, restore staging, replaced contents, schema diffs), the advisory
locks that claim them while in use, and finding those a killed process left behind.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

from backup_pipeline.core.postgres.locks import (
    ADVISORY_LOCK_CLASS,
    advisory_key,
    held_advisory_locks,
    lock_holding_transaction,
)
from backup_pipeline.core.postgres.maintenance import admin_connection
from backup_pipeline.core.postgres.target import PostgresTarget

# Databases of our own making (verification, staging for a restore, the replaced contents, a schema diff):
# bp_<purpose>_<UTC time>_<random>. Their owner holds the advisory lock keyed by the name from before it creates
# the database until it has dropped or renamed it (scratch_claims), so one without a lock holder was left by a
# killed process.
SCRATCH_PURPOSES = ("verify", "restore", "replaced", "diff")
SCRATCH_DATABASE = re.compile(rf"^bp_(?P<purpose>{'|'.join(SCRATCH_PURPOSES)})_(?P<at>\d{{14}})_[0-9a-f]{{8}}$")


def scratch_database_name(purpose: str) -> str:
    import secrets
    from datetime import UTC, datetime

    return f"bp_{purpose}_{datetime.now(UTC):%Y%m%d%H%M%S}_{secrets.token_hex(4)}"


@contextlib.contextmanager
def scratch_claims(server: PostgresTarget, outside: str = "") -> Iterator[Callable[[str], str]]:
    """Yields `claim(purpose)`, which returns a new scratch database name owned by this block: the advisory lock
    keyed by it is held until the block ends (or the process dies), so a sweep leaves the database alone.
    Claim the name before creating the database, and end the block only once it is dropped or renamed.

    The locks live on a connection of their own (to `server`'s server, never in database `outside`, which may
    be renamed or have its sessions ended), in a transaction kept open for the block, as `advisory_lock` does:
    the connection that creates and drops the database cannot hold them, since CREATE and DROP DATABASE refuse
    to run in a transaction, and it idles while pg_restore runs, so a server's idle_session_timeout or a pooler
    in transaction mode would end its session and free a session lock while the database is still in use.
    """
    with lock_holding_transaction(admin_connection(server, outside)) as conn:

        def claim(purpose: str) -> str:
            name = scratch_database_name(purpose)
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (ADVISORY_LOCK_CLASS, advisory_key(name)))
            return name

        yield claim


def abandoned_scratch_databases(conn) -> list[str]:
    """Our scratch databases on `conn`'s server whose owner session is gone (listed before the locks are
    read, so a database created meanwhile is never among them)."""
    names = [
        row[0]
        for row in conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()
        if SCRATCH_DATABASE.match(row[0])
    ]
    live = held_advisory_locks(conn, names)
    return [name for name in names if name not in live]
