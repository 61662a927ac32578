"""Verification: restore a stored backup into a scratch database and compare row counts with its manifest.

The scratch database is dropped afterwards, whatever happened. Passing writes the backup's
`.verified.json` marker, which listing and retention read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.manifest import Manifest, VerificationRecord
from backup_pipeline.core.names import BackupName
from backup_pipeline.core.postgres import (
    ClientTools,
    PostgresTarget,
    admin_connection,
    create_database,
    drop_database,
    scratch_claims,
    server_version,
    table_row_counts,
)
from backup_pipeline.core.restore import (
    Log,
    checked_manifest,
    compare_row_counts,
    describe_versions,
    restore_client,
    restore_into,
)
from backup_pipeline.core.streams import counted

# What avoids CREATEDB on the source server's role, in the message of a role without it.
VERIFY_ELSEWHERE = ", or set BACKUP_VERIFY_DATABASE_URL to a server where verification may create its scratch databases"


@dataclass
class VerificationOutcome:
    manifest: Manifest
    scratch_database: str
    tables: dict[str, int]
    duration_s: float
    pg_restore_version: str = ""
    server_version: str = ""  # of the server that hosted the scratch database
    left_out: list[str] = field(default_factory=list)  # objects its role cannot create, not restored


def verify_backup(
    catalog: BackupCatalog,
    name: BackupName,
    server: PostgresTarget,
    tools: ClientTools | None = None,
    log: Log = print,
) -> VerificationOutcome:
    tools = tools or ClientTools.locate()
    started = time.monotonic()
    manifest = checked_manifest(catalog, name)
    restore_client(tools, manifest)  # refuses before connecting when no pg_restore can read it
    with scratch_claims(server) as claim:
        # The server's maintenance database when the source database no longer exists: a backup is verified
        # (and a lost database's backup is checked before it is restored) without it.
        admin = admin_connection(server, log=log)
        try:
            scratch = claim("verify")
            server_text = server_version(admin)[1]
            client = restore_client(tools, manifest, server, server_text)
            created = create_database(admin, scratch, manifest.encoding, instead=VERIFY_ELSEWHERE)
            log(
                f"verifying {name}: restoring the {describe_versions(manifest, client, server_text)}, into scratch "
                f"database {created}"
            )
            try:
                left_out = restore_into(catalog, manifest, server.with_database(scratch), client, log)
                with server.with_database(scratch).connect() as conn:
                    counts = table_row_counts(conn)
            finally:
                drop_database(admin, scratch)
        finally:
            admin.close()
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
        left_out=left_out,
    )
