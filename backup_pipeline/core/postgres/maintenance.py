"""Connections for creating, renaming and dropping databases: to the server, falling back to a maintenance
database when the URL's own database is the one being replaced or no longer exists.
"""

from __future__ import annotations

from collections.abc import Callable

from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.postgres.target import DatabaseMissingError, PostgresTarget

MAINTENANCE_DATABASES = ("postgres", "template1")


def admin_connection(server: PostgresTarget, outside: str = "", log: Callable[[str], None] | None = None):
    """A connection to `server`'s server for creating, renaming and dropping databases, never to `outside`:
    PostgreSQL cannot rename or drop the database a session is in, and restoring over the very database of
    DATABASE_URL (a rollback after a failed migration) is the usual case. Then a maintenance database is used,
    as it is when the URL's own database no longer exists (an accidental DROP DATABASE: the restore that
    brings it back must not need it)."""
    why = f"cannot replace {outside} on {server.describe()} from a session in it"
    if server.dbname != outside:
        try:
            return server.connect()
        except DatabaseMissingError as missing:
            why = str(missing)
    last_error: BackupError | None = None
    for maintenance in MAINTENANCE_DATABASES:
        try:
            conn = server.with_database(maintenance).connect()
        except BackupError as error:
            last_error = error
            continue
        if log is not None:
            reason = why if server.dbname != outside else f"{outside} is the database being restored"
            log(f"{reason}: working from the server's maintenance database {maintenance} instead")
        return conn
    raise BackupError(
        f"{why}, and no maintenance database ({' or '.join(MAINTENANCE_DATABASES)}) on {server.server} accepts a "
        f"connection: {last_error}. Name a database there that the user can connect to with --target-url"
    )
