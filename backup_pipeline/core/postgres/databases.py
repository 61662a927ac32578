"""Creating, renaming, swapping and dropping databases, and the names a restore is willing to use."""

from __future__ import annotations

import re

from backup_pipeline.core.errors import BackupError, ConfigurationError
from backup_pipeline.core.postgres.scratch import SCRATCH_DATABASE

# Databases a restore must never create, replace or drop.
PROTECTED_DATABASES = frozenset({"postgres", "template0", "template1"})
MAX_IDENTIFIER_BYTES = 63


def check_database_name(name: str) -> str:
    """A target database name we are willing to create, replace or drop."""
    if not name or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"database name '{name}' must be 1 to {MAX_IDENTIFIER_BYTES} bytes long (PostgreSQL truncates longer names)"
        )
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$-]*", name):
        raise ConfigurationError(
            f"database name {name!r} may hold only letters, digits, '_', '-' and '$', starting with a letter "
            "or '_' (no quotes, spaces or semicolons)"
        )
    if name in PROTECTED_DATABASES:
        raise ConfigurationError(f"refusing to restore into '{name}': it is a system database; choose another name")
    if SCRATCH_DATABASE.match(name):
        # A database of that shape whose lock nobody holds is dropped by the next sweep (core/sweep.py).
        raise ConfigurationError(
            f"refusing to restore into '{name}': names of the form bp_<purpose>_<time>_<random> are this tool's "
            "scratch databases, which are dropped once no run holds them; choose another name"
        )
    return name


def connectable_databases(conn) -> list[str]:
    """The databases of the server a session may connect to, templates left out, by name."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"
    ).fetchall()
    return [row[0] for row in rows]


def database_exists(conn, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def create_database(conn, name: str, encoding: str | None = None, instead: str = "") -> str:
    """Creates database `name` (from template0) in `encoding` (the source database's; None: the server's default)
    and returns how it was created, for the log.

    An encoding the server's default locale cannot hold (LATIN1 or SQL_ASCII beside a UTF-8 locale) gets the C
    locale, which holds every encoding: the restored bytes are the dumped bytes. A role that may not create
    databases is told the grant it lacks and, in `instead`, what avoids the need.
    """
    from psycopg import errors, sql

    create = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    if encoding:
        create += sql.SQL(" ENCODING {}").format(sql.Literal(encoding))
    try:
        # SQL_ASCII's bytes have no declared encoding: a locale that reads them as UTF-8 (which a superuser may
        # give it) would sort and classify them as if they were; the C locale takes them as bytes.
        try:
            if (encoding or "").upper() != "SQL_ASCII":
                conn.execute(create)
                return f"{name} (encoding {encoding})" if encoding and encoding.upper() != "UTF8" else name
        except (errors.InvalidParameterValue, errors.FeatureNotSupported):
            if not encoding:
                raise
        c_locale = sql.SQL(" LC_COLLATE 'C' LC_CTYPE 'C'")
        if conn.info.server_version >= 150000:
            c_locale = sql.SQL(" LOCALE_PROVIDER libc") + c_locale  # ICU cannot hold every encoding
        conn.execute(create + c_locale)
        return f"{name} (encoding {encoding}, locale C: the server's default locale does not fit {encoding})"
    except errors.InsufficientPrivilege:
        raise createdb_refusal(conn, instead) from None


def createdb_refusal(conn, instead: str = "") -> BackupError:
    """What a role that may not create databases is told: the grant it lacks and, in `instead`, what avoids it."""
    from psycopg import sql

    role = conn.info.user
    return BackupError(
        f"the role {role} may not create databases on {conn.info.host}:{conn.info.port}, and this step restores "
        f"the backup into a new database first: grant it (ALTER ROLE {sql.Identifier(role).as_string(conn)} "
        f"CREATEDB, as a superuser or a role with CREATEROLE){instead}. Nothing was created"
    )


def drop_database(conn, name: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def rename_database(conn, old: str, new: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))


def swap_databases(conn, target: str, replacement: str, old: str) -> None:
    """`target` becomes `old` and `replacement` becomes `target`, in one transaction: a kill between the two
    renames can never leave the server without `target`."""
    with conn.transaction():
        rename_database(conn, target, old)
        rename_database(conn, replacement, target)


def disconnect_sessions(conn, name: str) -> None:
    """Ends the client sessions connected to database `name`, so it can be renamed.

    Only client sessions: the server's own workers in it (autovacuum) yield to a rename by themselves, and a role
    that is not a superuser may not end them. A session this role may not end either (a provider's superuser's
    monitoring, say) is refused clearly, before anything is renamed."""
    from psycopg import errors

    refused = []
    rows = conn.execute(
        # backend_type is hidden (NULL) in other roles' rows for a role that is not a superuser; the server's own
        # workers have no user.
        "SELECT pid, usename FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
        "AND usename IS NOT NULL AND coalesce(backend_type, 'client backend') = 'client backend'",
        (name,),
    ).fetchall()
    for pid, user in rows:
        try:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        except errors.InsufficientPrivilege:
            refused.append(f"{user} (pid {pid})")
    if refused:
        raise BackupError(
            f"sessions of {', '.join(refused)} are connected to {name}, and this role may not end them: nothing was "
            f"replaced. Disconnect them (or grant this role pg_signal_backend) and restore again"
        )
