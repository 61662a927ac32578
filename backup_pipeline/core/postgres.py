"""PostgreSQL plumbing: connections, client binaries, snapshots, row counts, databases.

The one place that talks to PostgreSQL; backup, verification, restore and the command line share it.
The password never reaches a child's argv: children get the connection without it on their command line
and the password through a temporary PGPASSFILE (mode 0600) that is deleted when they finish.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from backup_pipeline.core.errors import BackupError, ConfigurationError

PG_BIN_DIR_ENV = "BACKUP_PG_BIN_DIR"
CONNECT_TIMEOUT_S = "10"
# Databases a restore must never create, replace or drop.
PROTECTED_DATABASES = frozenset({"postgres", "template0", "template1"})
MAX_IDENTIFIER_BYTES = 63

_SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema', 'pg_toast')"
_TABLES_SQL = f"""
    SELECT n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence <> 't'
      AND n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg_temp%%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1, 2
"""


@dataclass(frozen=True)
class PostgresTarget:
    """A database on a server, as libpq parameters (the password among them, never printed)."""

    params: dict[str, str] = field(repr=False)
    source_env: str = "DATABASE_URL"

    @classmethod
    def from_url(cls, url: str | None, source_env: str = "DATABASE_URL") -> PostgresTarget:
        from psycopg.conninfo import conninfo_to_dict

        if not url:
            raise ConfigurationError(
                f"{source_env} is not set: set it to the libpq URL of the database to back up, "
                "for example postgresql://backup_user@db.example.com:5432/app?sslmode=require"
            )
        if not re.match(r"^(postgres(ql)?://|\w+\s*=)", url.strip()):
            raise ConfigurationError(
                f"{source_env} is not a PostgreSQL URL: it must start with postgresql:// "
                "(for example postgresql://user@host:5432/dbname)"
            )
        try:
            params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
        except Exception:
            # psycopg's message may quote the URL, password included: say what is wrong without it.
            raise ConfigurationError(
                f"{source_env} could not be parsed as a libpq URL: check its quoting and percent-encoding "
                "(for example postgresql://user:p%40ss@host:5432/dbname)"
            ) from None
        if not re.fullmatch(r"\d{1,5}(,\d{1,5})*", params.get("port", "5432")):
            raise ConfigurationError(
                f"{source_env} has port '{params['port']}', which is not a number: for example "
                "postgresql://user@host:5432/dbname"
            )
        if not params.get("dbname"):
            raise ConfigurationError(
                f"{source_env} names no database: add it to the path, for example postgresql://user@host/app"
            )
        return cls(params=params, source_env=source_env)

    @property
    def dbname(self) -> str:
        return self.params["dbname"]

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    @property
    def host(self) -> str:
        """The server's host as libpq resolves it (URL, else PGHOST, else localhost); a socket folder stays one."""
        return self.params.get("host") or self.params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"

    @property
    def port(self) -> int:
        text = self.params.get("port") or os.environ.get("PGPORT") or "5432"
        return int(text.split(",")[0]) if text.split(",")[0].isdigit() else 5432

    @property
    def server(self) -> str:
        """host:port, which tells two servers with the same database name apart; never a password."""
        return f"{self.host}:{self.port}"

    def describe(self) -> str:
        """user@host:port/dbname, safe for logs and messages."""
        user = self.params.get("user", os.environ.get("PGUSER", ""))
        host = self.params.get("host", "localhost")
        port = self.params.get("port", "5432")
        return f"{user + '@' if user else ''}{host}:{port}/{self.dbname}"

    def with_database(self, dbname: str) -> PostgresTarget:
        return PostgresTarget(params={**self.params, "dbname": dbname}, source_env=self.source_env)

    def conninfo_without_password(self) -> str:
        from psycopg.conninfo import make_conninfo

        params = {k: v for k, v in self.params.items() if k not in ("password", "passfile")}
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        return make_conninfo(**params)

    def connect(self, autocommit: bool = True):
        import psycopg

        params = dict(self.params)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        params.setdefault("application_name", "backup_pipeline")
        try:
            return psycopg.connect(autocommit=autocommit, **params)
        except psycopg.OperationalError as error:
            raise BackupError(
                f"cannot connect to PostgreSQL at {self.describe()}: {_first_line(error)}. "
                f"Check {self.source_env} and that the server is reachable"
            ) from None

    @contextlib.contextmanager
    def child_env(self) -> Iterator[dict[str, str]]:
        """Environment for pg_dump/pg_restore/psql: the password in a temporary PGPASSFILE.

        Only what libpq and the client tools read is passed on (PG* settings, locale, paths), so the other
        secrets in our environment (S3 keys, Discord token, encryption key, database URLs) stay out of theirs.
        """
        env = client_tools_environment()
        if self.password is None:
            yield env
            return
        fd, path = tempfile.mkstemp(prefix="backup-pgpass-")
        try:
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(f"*:*:*:*:{_pgpass_escape(self.password)}\n")
            except OSError as error:
                raise BackupError(
                    f"cannot write the temporary password file for pg_dump/pg_restore in {os.path.dirname(path)}: "
                    f"{error.strerror}. Free space there, or point TMPDIR at another folder"
                ) from None
            os.chmod(path, 0o600)
            env["PGPASSFILE"] = path
            yield env
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def server_version(conn) -> tuple[int, str]:
    """(major, full text) of the server, e.g. (16, '16.4')."""
    num = int(conn.execute("SHOW server_version_num").fetchone()[0])
    text = conn.execute("SHOW server_version").fetchone()[0]
    return num // 10000, text.split()[0]


@dataclass(frozen=True)
class ClientTools:
    """The pg_dump/pg_restore/psql binaries to use: BACKUP_PG_BIN_DIR, else the newest installed."""

    bin_dir: Path | None

    @classmethod
    def locate(cls) -> ClientTools:
        configured = os.environ.get(PG_BIN_DIR_ENV)
        if configured:
            path = Path(configured)
            if not (path / "pg_dump").exists():
                raise ConfigurationError(f"{PG_BIN_DIR_ENV} '{configured}' holds no pg_dump: point it at a bin folder")
            return cls(path)
        installed = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/pg_dump"),
            key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        )
        return cls(installed[-1].parent if installed else None)

    def path(self, tool: str) -> str:
        if self.bin_dir is not None:
            return str(self.bin_dir / tool)
        found = shutil.which(tool)
        if found is None:
            raise ConfigurationError(
                f"{tool} is not installed: install the PostgreSQL client (apt install postgresql-client) "
                f"or set {PG_BIN_DIR_ENV} to the folder holding it"
            )
        return found

    def version(self, tool: str) -> tuple[int, str]:
        output = subprocess.run(
            [self.path(tool), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=client_tools_environment(),
        ).stdout
        match = re.search(r"\(PostgreSQL\)\s+(\d+)(\.\d+)?", output)
        if not match:
            raise BackupError(f"could not tell the version of {self.path(tool)} (it printed {output.strip()!r})")
        return int(match.group(1)), f"{match.group(1)}{match.group(2) or ''}"

    def check_can_dump(self, server_major: int, server_text: str) -> str:
        """pg_dump refuses servers newer than itself; fail before dumping, saying what to install."""
        major, text = self.version("pg_dump")
        if major < server_major:
            raise BackupError(
                f"pg_dump {text} is older than the server (PostgreSQL {server_text}): install the PostgreSQL "
                f"{server_major} client (apt install postgresql-client-{server_major}) or set {PG_BIN_DIR_ENV} "
                f"to its bin folder"
            )
        return text


@contextlib.contextmanager
def exported_snapshot(target: PostgresTarget) -> Iterator[tuple[str, object]]:
    """A REPEATABLE READ transaction kept open, with its snapshot exported for `pg_dump --snapshot`."""
    conn = target.connect(autocommit=False)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        yield snapshot, conn
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()
        conn.close()


# First half of the two-key advisory locks this project takes, so they cannot meet an application's own.
ADVISORY_LOCK_CLASS = 0x42_50_42_4B  # "BPBK"


@contextlib.contextmanager
def advisory_lock(target: PostgresTarget, name: str) -> Iterator[bool]:
    """Tries a session advisory lock keyed by `name` in `target`'s database; yields whether it was obtained.

    Held until the block ends (the connection closes), also when the process dies, so it never goes stale.
    """
    import hashlib

    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)
    conn = target.connect()
    try:
        yield bool(conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (ADVISORY_LOCK_CLASS, key)).fetchone()[0])
    finally:
        conn.close()


def table_row_counts(conn) -> dict[str, int]:
    """Exact rows of every user table (leaf tables only, so partitions are not counted twice)."""
    from psycopg import sql

    counts: dict[str, int] = {}
    for schema, table in conn.execute(_TABLES_SQL).fetchall():
        query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        counts[f"{schema}.{table}"] = int(conn.execute(query).fetchone()[0])
    return counts


_USER_SCHEMA = (
    f"n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast%%'"
)


def _not_from_extension(catalog: str, oid: str) -> str:
    # Objects an extension created come and go with the extension; they are not the application's schema.
    return (
        f"NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass AND d.objid = {oid} "
        "AND d.deptype = 'e')"
    )


_SCHEMA_QUERIES = {
    "tables": f"""
        SELECT n.nspname || '.' || c.relname, NULL,
               CASE c.relkind WHEN 'v' THEN 'view: ' || pg_get_viewdef(c.oid)
                              WHEN 'm' THEN 'materialized view: ' || pg_get_viewdef(c.oid)
                              WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' ELSE 'table' END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_USER_SCHEMA} AND {_not_from_extension("pg_class", "c.oid")}
    """,
    "columns": f"""
        SELECT n.nspname || '.' || c.relname || '.' || a.attname, n.nspname || '.' || c.relname,
               format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
               || COALESCE(' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_USER_SCHEMA}
          AND {_not_from_extension("pg_class", "c.oid")}
    """,
    "indexes": f"""
        SELECT n.nspname || '.' || ic.relname, tn.nspname || '.' || tc.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
        JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
        WHERE {_USER_SCHEMA} AND {_not_from_extension("pg_class", "tc.oid")}
    """,
    "constraints": f"""
        SELECT n.nspname || '.' || c.relname || '.' || con.conname, n.nspname || '.' || c.relname,
               pg_get_constraintdef(con.oid)
        FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_SCHEMA} AND {_not_from_extension("pg_class", "c.oid")}
    """,
    "functions": f"""
        SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', NULL,
               pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prokind IN ('f', 'p') AND {_USER_SCHEMA} AND {_not_from_extension("pg_proc", "p.oid")}
    """,
}
SCHEMA_KINDS = tuple(_SCHEMA_QUERIES)


def schema_objects(conn) -> dict[str, dict[str, tuple[str | None, str]]]:
    """The database's own schema, by kind (tables, columns, indexes, constraints, functions):
    name -> (the table it belongs to, its definition as PostgreSQL prints it)."""
    return {
        kind: {name: (table, definition) for name, table, definition in conn.execute(query).fetchall()}
        for kind, query in _SCHEMA_QUERIES.items()
    }


def database_size(conn) -> int:
    return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


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
    return name


def database_exists(conn, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def create_database(conn, name: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))


def drop_database(conn, name: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def rename_database(conn, old: str, new: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))


def disconnect_sessions(conn, name: str) -> None:
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )


_CLIENT_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "LD_LIBRARY_PATH",
        "KRB5CCNAME",
        "KRB5_CONFIG",
        "KRB5_KTNAME",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)


def client_tools_environment() -> dict[str, str]:
    """Our environment without what the client tools have no use for, secrets included (PGPASSWORD too:
    a password goes in a temporary PGPASSFILE)."""
    return {
        name: value
        for name, value in os.environ.items()
        if name != "PGPASSWORD" and (name in _CLIENT_ENV or name.startswith(("PG", "LC_")))
    }


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
