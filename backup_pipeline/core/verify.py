"""Verification: restore a stored backup into a scratch database and compare row counts with its manifest.

Where: on a throwaway local server made for this verification (core/local_verify.py, the default), or on a
server given explicitly (the database's own server, or BACKUP_VERIFY_DATABASE_URL's). The scratch database is
dropped afterwards, whatever happened, and a local server stopped and removed. Passing writes the backup's
`.verified.json` marker, which listing and retention read.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.disk_room import check_room_on_server, explain_server_failure
from backup_pipeline.core.errors import VerificationError
from backup_pipeline.core.local_verify import (
    LocalServerPlan,
    local_server,
    missing_extension_in,
    missing_extension_message,
)
from backup_pipeline.core.manifest import Manifest, VerificationRecord
from backup_pipeline.core.names import BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import table_row_counts
from backup_pipeline.core.postgres.clients import ClientTools
from backup_pipeline.core.restore import Log, compare_row_counts, describe_versions, restore_client, restore_into
from backup_pipeline.core.scratch_database import scratch_database, scratch_server
from backup_pipeline.core.stored_backup import checked_manifest
from backup_pipeline.core.streams import counted

# What avoids CREATEDB on the verifying server's role, in the message of a role without it.
VERIFY_ELSEWHERE = (
    ", or verify on a throwaway local server (BACKUP_VERIFY_ON=local, the default), or set "
    "BACKUP_VERIFY_DATABASE_URL to a server where verification may create its scratch databases"
)


@dataclass
class VerificationOutcome:
    manifest: Manifest
    scratch_database: str
    tables: dict[str, int]
    duration_s: float
    pg_restore_version: str = ""
    server_version: str = ""  # of the server that hosted the scratch database
    left_out: list[str] = field(default_factory=list)  # objects its role cannot create, not restored
    verified_on: str = ""  # local (a throwaway server made for it), or the server's host:port


def verify_backup(
    catalog: BackupCatalog,
    name: BackupName,
    server: PostgresTarget | LocalServerPlan,
    tools: ClientTools | None = None,
    log: Log = print,
    stall_seconds: float | None = None,
) -> VerificationOutcome:
    """Verifies `name` on `server`: a server given explicitly, or a LocalServerPlan for a throwaway one.
    `stall_seconds`: the watchdog's limit on the download and pg_restore (see restore_into)."""
    tools = tools or ClientTools.locate()
    started = time.monotonic()
    manifest = checked_manifest(catalog, name)
    restore_client(tools, manifest)  # refuses before connecting when no pg_restore can read it
    with _verification_server(server, catalog, manifest, tools, log) as (where, advice):
        try:
            local = isinstance(server, LocalServerPlan)
            scratch, counts, client, server_text, left_out = _restore_into_scratch(
                catalog, manifest, where, tools, log, local, stall_seconds
            )
        except Exception as error:  # pg_restore's failure, or psycopg's own when the server went away
            explained = _explained(error, server, where, advice, str(name))
            if explained is None:
                raise
            raise VerificationError(f"verification of {name} failed: {explained}") from None
    compare_row_counts(manifest.tables, counts, str(name))
    duration = time.monotonic() - started
    record = VerificationRecord(
        name=str(name),
        sha256=manifest.sha256,
        verified_at=datetime.now(UTC).isoformat(),
        restore_duration_s=round(duration, 3),
        tables=len(counts),
        rows=sum(counts.values()),
        pg_restore_version=client.version,
        server_version=server_text,
        left_out=left_out,
    )
    catalog.storage.put_bytes(name.verified_key(catalog.storage_prefix), record.to_json())
    log(
        f"verified {name}: {counted(len(counts), 'table')} and {counted(record.rows, 'row')} match the manifest "
        f"({duration:.1f} s)"
        + (f"; left out, as its role cannot create them: {', '.join(left_out)}" if left_out else "")
    )
    return VerificationOutcome(
        manifest=manifest,
        scratch_database=scratch,
        tables=counts,
        duration_s=record.restore_duration_s,
        pg_restore_version=client.version,
        server_version=server_text,
        verified_on="local" if isinstance(server, LocalServerPlan) else server.server,
        left_out=left_out,
    )


@contextlib.contextmanager
def _verification_server(server, catalog, manifest, tools, log):
    """(the server to restore into, what to do if it fills or crashes) for the block."""
    if isinstance(server, LocalServerPlan):
        client = restore_client(tools, manifest)
        with local_server(server, catalog, manifest, client, log) as local:
            yield (
                local,
                (
                    "Free space in the local server's folder or point BACKUP_VERIFY_LOCAL_DIR at a larger disk; "
                    "nothing else was affected"
                ),
            )
        return
    yield (
        server,
        (
            f"Free disk on {server.describe()} (a verification needs room for a full copy of the database), or "
            "verify on a throwaway local server (BACKUP_VERIFY_ON=local, the default)"
        ),
    )


def _explained(error: Exception, server, where: PostgresTarget, advice: str, name: str) -> str | None:
    """What a failure means when the server's disk filled, it crashed, or (a local server) lacks an extension."""
    text = str(error)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    if isinstance(server, LocalServerPlan) and (missing := missing_extension_in(text, where)):
        return f"{missing_extension_message(name, [missing], server)} ({first})"
    explained = explain_server_failure(text, _describe(server, where), advice)
    return f"{explained} ({first})" if explained else None


def _describe(server, where: PostgresTarget) -> str:
    if isinstance(server, LocalServerPlan):
        return "the local verification server"
    return f"the server {where.server}"


def _restore_into_scratch(catalog, manifest, server: PostgresTarget, tools, log, local: bool, stall_seconds=None):
    """Restores into a new scratch database on `server`, counts its rows and drops it:
    (scratch name, row counts, pg_restore used, server version, what was left out). A server not made for this
    verification is asked for room first (core/disk_room.py)."""
    # The server's maintenance database when the source database no longer exists: a backup is verified (and a
    # lost database's backup is checked before it is restored) without it.
    with scratch_server(server, log=log) as scratch:
        server_text = scratch.version[1]
        client = restore_client(tools, manifest, server, server_text)
        if not local:
            check_room_on_server(scratch.admin, server.server, server.host, manifest, log)
        with scratch_database(scratch, "verify", manifest, VERIFY_ELSEWHERE) as work:
            log(
                f"verifying {manifest.name}: restoring the {describe_versions(manifest, client, server_text)}, "
                f"into scratch database {work.created}"
            )
            left_out = restore_into(catalog, manifest, work.target, client, log, stall_seconds=stall_seconds)
            with work.target.connect() as conn:
                counts = table_row_counts(conn)
    return work.name, counts, client, server_text, left_out
