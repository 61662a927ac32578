"""A database on a server (`PostgresTarget`): its URL checked, its sessions opened with this tool's settings,
its client tools handed the password through a temporary file.

The password never reaches a child's argv: children get the connection without it on their command line
and the password through a temporary PGPASSFILE (mode 0600) that is deleted when they finish.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from backup_pipeline.core.errors import BackupError, ConfigurationError
from backup_pipeline.core.postgres.environment import password_file_environment
from backup_pipeline.core.postgres.poolers import refuse_transaction_pooler

CONNECT_TIMEOUT_S = "10"


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

    def client_conninfo(self) -> str:
        """The connection for pg_dump, pg_restore and psql (their argv): no password, and the timeouts off from
        the login on where this process's own sessions found the server takes startup options. The tools switch
        the timeouts off themselves, but only after their first statements, which a role's tiny statement_timeout
        can cancel on a loaded machine."""
        options = _OPTIONS_TAKEN.get(self.server)
        target = (
            PostgresTarget(params=_with_options(self.params, options), source_env=self.source_env) if options else self
        )
        return target.conninfo_without_password()

    def connect(self, autocommit: bool = True):
        """A session of this tool's own: its settings (session_settings) override the role's and the database's."""
        import psycopg

        params = dict(self.params)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        params.setdefault("application_name", "backup_pipeline")
        # The timeouts off from the login on, so a role's tiny one cannot cancel even the first statements, nor
        # end the session in the moment before they run (a loaded machine can pause a client that long); a
        # server older than idle_session_timeout gets statement_timeout only, and a pooler that refuses startup
        # options (PgBouncer without ignore_startup_parameters) none.
        options = STARTUP_OPTIONS if self.server in _SERVERS_WITHOUT_IDLE_SESSION_TIMEOUT else FULL_STARTUP_OPTIONS
        try:
            try:
                conn = psycopg.connect(autocommit=True, **_with_options(params, options))
            except psycopg.OperationalError as error:
                if "unrecognized configuration parameter" in str(error) and options != STARTUP_OPTIONS:
                    _SERVERS_WITHOUT_IDLE_SESSION_TIMEOUT.add(self.server)
                    options = STARTUP_OPTIONS
                    conn = psycopg.connect(autocommit=True, **_with_options(params, options))
                elif "unsupported startup parameter" in str(error):
                    options = None
                    conn = psycopg.connect(autocommit=True, **params)
                else:
                    raise
            _OPTIONS_TAKEN[self.server] = options
        except psycopg.OperationalError as error:
            if f'database "{self.dbname}" does not exist' in str(error):
                raise DatabaseMissingError(
                    f"database {self.dbname} does not exist on {self.server} (dropped, or a typo in {self.source_env})"
                ) from None
            raise BackupError(
                f"cannot connect to PostgreSQL at {self.describe()}: {_first_line(error)}. {self.connection_hint(error)}"
            ) from None
        try:
            refuse_transaction_pooler(self, conn)
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

    def raw_connection(self):
        """A plain session: no startup options, no session settings, no pooler check (for the pooler probe)."""
        import psycopg

        params = dict(self.params)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        params.setdefault("application_name", "backup_pipeline")
        return psycopg.connect(autocommit=False, **params)

    @contextlib.contextmanager
    def child_env(self) -> Iterator[dict[str, str]]:
        """Environment for pg_dump/pg_restore/psql: the password in a temporary PGPASSFILE (see
        environment.password_file_environment), never in the child's argv or environment."""
        # libpq's own order: the connection's password, else PGPASSWORD.
        password = self.password if self.password is not None else os.environ.get("PGPASSWORD") or None
        with password_file_environment(password, self.params.get("passfile")) as env:
            yield env


# Sent at login where the server takes them (see PostgresTarget.connect): every version has statement_timeout,
# 14 and newer idle_session_timeout.
STARTUP_OPTIONS = "-c statement_timeout=0"
FULL_STARTUP_OPTIONS = f"{STARTUP_OPTIONS} -c idle_session_timeout=0"
# Servers (host:port) this process found refusing idle_session_timeout at login: asked without it from then on.
_SERVERS_WITHOUT_IDLE_SESSION_TIMEOUT: set[str] = set()
# The startup options each server (host:port) took at this process's last login (None: it refuses them all).
_OPTIONS_TAKEN: dict[str, str | None] = {}


def _with_options(params: dict, options: str) -> dict:
    return {**params, "options": f"{params.get('options', '')} {options}".strip()}


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


class DatabaseMissingError(BackupError):
    """The server answered, but the database a URL names does not exist on it."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
