"""What one restore into a database is made of: the backup, the target, the pg_restore, the options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.clients import ClientTools, PgClient

if TYPE_CHECKING:
    from backup_pipeline.core.restore.toc import TocFilter
    from backup_pipeline.core.restore.watchdog import RestoreWatchdog

Log = Callable[[str], None]
MAX_RESTORE_JOBS = 64
# What a restore must be told, word for word, before it creates or replaces a database.
RESTORE_CONFIRMATION = "RESTORE"
# What avoids CREATEDB, in the message of a role without it.
RESTORE_ELSEWHERE = ", or restore to a server where a role may (--target-url)"
RESTORE_STOPPED = "the restore was stopped"


@dataclass(frozen=True)
class RestorePlan:
    """One pg_restore of a stored backup into an existing, empty database, as the three ways of running it
    (streamed, staged for --jobs, unpacked directory format) take it."""

    catalog: BackupCatalog
    manifest: Manifest
    target: PostgresTarget  # the database restored into (its sessions tagged when a watchdog watches them)
    client: object  # a PgClient, or a ScriptClient for pg_restore through psql
    log: Log
    jobs: int
    extra: tuple[str, ...]  # pg_restore options beyond the connection's (e.g. --schema-only)
    toc: TocFilter
    schema_out: list[str] | None = None  # gets the archive's schema as SQL, when asked
    watchdog: RestoreWatchdog | None = None


def major(version: str) -> int:
    return int(version.split(".")[0])


def restore_client(
    tools: ClientTools, manifest: Manifest, server: PostgresTarget | None = None, server_text: str | None = None
) -> PgClient:
    """The pg_restore for this backup (into `server`, of version `server_text`): at least as new as its
    pg_dump, able to decompress it and to restore into that server; chosen before anything is created, so a
    missing one changes nothing."""
    server_major = major(server_text) if server_text else None
    needs_ssl = server.needs_ssl if server is not None else False
    return tools.for_archive(manifest.pg_dump_version, manifest.compression, manifest.name, server_major, needs_ssl)


def describe_versions(manifest: Manifest, client: PgClient, server_text: str) -> str:
    """One line on the versions at play, saying when the restore is an upgrade (or a downgrade)."""
    source, target = major(manifest.server_version), major(server_text)
    line = (
        f"backup of PostgreSQL {manifest.server_version} (pg_dump {manifest.pg_dump_version}) into PostgreSQL "
        f"{server_text} with pg_restore {client.describe()}"
    )
    if source < target:
        return f"{line}: an upgrade from PostgreSQL {source} to {target}"
    if source > target:
        return (
            f"{line}: a downgrade from PostgreSQL {source} to {target}, which fails if the backup uses anything "
            f"PostgreSQL {target} lacks"
        )
    return line


def check_restore_jobs(jobs: int) -> int:
    if not 1 <= jobs <= MAX_RESTORE_JOBS:
        raise ConfigurationError(
            f"jobs (--jobs) must be from 1 to {MAX_RESTORE_JOBS}, got {jobs}: each job is one connection to the server"
        )
    return jobs
