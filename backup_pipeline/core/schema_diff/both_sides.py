"""Both sides read with one client (the backup's archive through pg_restore, the live database through
pg_dump), then compared."""

from __future__ import annotations

import time

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.dump import schema_sql
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import server_version
from backup_pipeline.core.postgres.clients import ClientTools, PgClient
from backup_pipeline.core.restore import Log, archive_schema_sql
from backup_pipeline.core.schema_diff.differences import SchemaDiff, compare_entries
from backup_pipeline.core.schema_diff.entries import entries_from_dump
from backup_pipeline.core.stored_backup import checked_manifest


def schema_client(tools: ClientTools, manifest: Manifest, live: PostgresTarget, server_text: str) -> PgClient:
    """One client for both sides: a pg_restore that reads the archive and a pg_dump that dumps the live server,
    of the archive's major when it can (then both sides print objects alike)."""
    major = int(server_text.split(".")[0])
    client = tools.for_archive(
        manifest.pg_dump_version, manifest.compression, manifest.name, server_major=major, needs_ssl=live.needs_ssl
    )
    if client.major < major:
        client = tools.for_server(major, server_text, live.needs_ssl)
        if client.major < int(manifest.pg_dump_version.split(".")[0]):
            raise BackupError(
                f"no PostgreSQL client here both reads {manifest.name} (written by pg_dump "
                f"{manifest.pg_dump_version}) and dumps the live server (PostgreSQL {server_text})"
            )
    return client


def diff_backup_schema(
    catalog: BackupCatalog,
    name: BackupName,
    live: PostgresTarget,
    tools: ClientTools | None = None,
    log: Log = print,
) -> SchemaDiff:
    """The schema difference between backup `name` and the live database `live`. Read-only on both sides."""
    tools = tools or ClientTools.locate()
    started = time.monotonic()
    manifest = checked_manifest(catalog, name)
    with live.connect() as conn:
        server_text = server_version(conn)[1]
    client = schema_client(tools, manifest, live, server_text)
    log(f"reading the schema of {name} with pg_restore {client.describe()}")
    then = entries_from_dump(archive_schema_sql(catalog, manifest, client))
    log(f"reading the schema of {live.describe()} with pg_dump {client.describe()}")
    now = entries_from_dump(schema_sql(live, client))
    notes = []
    if manifest.pg_dump_version.split(".")[0] != client.version.split(".")[0]:
        notes.append(
            f"the backup was written by pg_dump {manifest.pg_dump_version} and the live schema is read with pg_dump "
            f"{client.version}: where the two versions print an object differently, it shows as changed"
        )
    if not any(e.kind == "privileges" for e in then.values()) and any(e.kind == "privileges" for e in now.values()):
        notes.append(
            "the backup holds no privileges (GRANT/REVOKE): backups taken with --no-acl, as earlier versions of this "
            "tool took them, hold none, so every privilege of the live database shows as added"
        )
    return SchemaDiff(
        manifest=manifest,
        live_database=live.dbname,
        kinds=compare_entries(then, now),
        duration_s=round(time.monotonic() - started, 3),
        pg_dump_version=client.version,
        notes=notes,
    )
