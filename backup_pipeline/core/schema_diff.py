"""What changed in a database's schema since a backup: what rolling back to that backup would undo.

The backup's schema (no rows) is restored into a scratch database and both catalogs are read the same way,
so the comparison is PostgreSQL's own view of each object, not a text diff of SQL. The scratch database is
dropped afterwards, whatever happened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupName
from backup_pipeline.core.postgres import (
    SCHEMA_KINDS,
    ClientTools,
    PostgresTarget,
    create_database,
    drop_database,
    schema_objects,
    scratch_claims,
)
from backup_pipeline.core.restore import Log, checked_manifest, restore_into


@dataclass
class Change:
    name: str
    backup: str | None  # its definition in the backup; None: the backup does not have it
    live: str | None  # its definition in the live database; None: the live database does not have it


@dataclass
class KindDiff:
    added: list[Change] = field(default_factory=list)  # in the live database only: a rollback removes them
    removed: list[Change] = field(default_factory=list)  # in the backup only: a rollback brings them back
    changed: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass
class SchemaDiff:
    manifest: Manifest
    live_database: str
    kinds: dict[str, KindDiff]
    duration_s: float

    @property
    def empty(self) -> bool:
        return all(k.empty for k in self.kinds.values())

    def as_dict(self) -> dict:
        return {
            "backup": self.manifest.name,
            "label": self.manifest.label,
            "live_database": self.live_database,
            "identical": self.empty,
            **{
                kind: {
                    "added": [{"name": c.name, "live": c.live} for c in diff.added],
                    "removed": [{"name": c.name, "backup": c.backup} for c in diff.removed],
                    "changed": [{"name": c.name, "backup": c.backup, "live": c.live} for c in diff.changed],
                }
                for kind, diff in self.kinds.items()
            },
        }


def diff_schemas(backup: dict, live: dict) -> dict[str, KindDiff]:
    """Compares two schema_objects() results. Columns, indexes and constraints of a table that was added or
    removed as a whole are not listed again: the table's line says it."""
    whole = {name for name in set(backup["tables"]) ^ set(live["tables"])}
    kinds = {}
    for kind in SCHEMA_KINDS:
        then, now = backup.get(kind, {}), live.get(kind, {})
        diff = KindDiff()
        for name in sorted(set(then) | set(now)):
            before, after = then.get(name), now.get(name)
            table = (before or after)[0]
            if kind != "tables" and table in whole:
                continue
            if before is None:
                diff.added.append(Change(name, None, after[1]))
            elif after is None:
                diff.removed.append(Change(name, before[1], None))
            elif before[1] != after[1]:
                diff.changed.append(Change(name, before[1], after[1]))
        kinds[kind] = diff
    return kinds


def diff_backup_schema(
    catalog: BackupCatalog,
    name: BackupName,
    live: PostgresTarget,
    scratch_server: PostgresTarget,
    tools: ClientTools | None = None,
    log: Log = print,
) -> SchemaDiff:
    """The schema difference between backup `name` and the live database `live`."""
    tools = tools or ClientTools.locate()
    started = time.monotonic()
    manifest = checked_manifest(catalog, name)
    with scratch_claims(scratch_server) as claim:
        admin = scratch_server.connect()
        try:
            scratch = claim("diff")
            create_database(admin, scratch)
            try:
                log(f"restoring the schema of {name} (no rows) into scratch database {scratch}")
                restore_into(catalog, manifest, scratch_server.with_database(scratch), tools, log, schema_only=True)
                with scratch_server.with_database(scratch).connect() as conn:
                    then = schema_objects(conn)
            finally:
                drop_database(admin, scratch)
        finally:
            admin.close()
    with live.connect() as conn:
        now = schema_objects(conn)
    return SchemaDiff(
        manifest=manifest,
        live_database=live.dbname,
        kinds=diff_schemas(then, now),
        duration_s=round(time.monotonic() - started, 3),
    )
