"""`restore_job`'s restore: into a work database beside the target, checked, then renamed or swapped in."""

from __future__ import annotations

import time

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.disk_room import check_room_on_server
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import table_row_counts
from backup_pipeline.core.postgres.clients import ClientTools, PgClient
from backup_pipeline.core.postgres.databases import check_database_name
from backup_pipeline.core.privileges import (
    AppliedPrivileges,
    PrivilegeChoices,
    apply_database_properties,
    apply_script,
    privilege_script,
)
from backup_pipeline.core.replication import ReplicationState
from backup_pipeline.core.replication import check_choice as check_replication_choice
from backup_pipeline.core.restore.checks import (
    check_backup_roles,
    check_backup_source,
    check_restore_target,
    note_lost_database,
)
from backup_pipeline.core.restore.outcome import RestoreOutcome, compare_row_counts, report_privileges
from backup_pipeline.core.restore.plan import (
    RESTORE_ELSEWHERE,
    Log,
    check_restore_jobs,
    describe_versions,
    restore_client,
)
from backup_pipeline.core.restore.runners import restore_into
from backup_pipeline.core.restore.stopping import RestoreStopped, StopCheck, StopWatch, signals_held, stop_if_asked
from backup_pipeline.core.restore.swap import rename_new, replication_before, swap
from backup_pipeline.core.scratch_database import ScratchDatabase, scratch_database, scratch_server
from backup_pipeline.core.stored_backup import checked_manifest
from backup_pipeline.core.streams import counted


def restore_to_database(
    catalog: BackupCatalog,
    name: BackupName,
    server: PostgresTarget,
    target_db: str,
    replace: bool = False,
    jobs: int = 1,
    tools: ClientTools | None = None,
    log: Log = print,
    privileges: PrivilegeChoices | None = None,
    replication: str | None = None,
    stall_seconds: float | None = None,
    source: PostgresTarget | None = None,
    from_other_source: bool = False,
    should_stop: StopCheck | None = None,
) -> RestoreOutcome:
    """Restores `name` into `target_db` on `server`'s server and checks its row counts.

    Without `replace` the database must not exist. With it, the backup is restored beside the existing
    database and the names are swapped only once the restore matched its manifest. The original database's
    encoding and locale, owners, privileges and settings are applied unless `privileges` says otherwise;
    `replication` says what becomes of the replaced database's logical replication state (core/replication.py).

    The backup must be of the database it goes over (with `replace`) or of `source`, the configured database
    (a new one), unless `from_other_source`. `should_stop` is asked while pg_restore runs and once more right
    before the swap: when it gives a reason, the work database is dropped (ending pg_restore) and RestoreStopped
    raised, the target untouched. SIGINT and SIGTERM stop it the same way up to the swap; from the swap on, the
    restore finishes and says so.
    """
    tools = tools or ClientTools.locate()
    privileges = privileges or PrivilegeChoices()
    replication = check_replication_choice(replication)
    check_database_name(target_db)
    check_restore_jobs(jobs)
    started = time.monotonic()
    manifest = checked_manifest(catalog, name)
    restore_client(tools, manifest)  # refuses before connecting when no pg_restore can read it
    applied = AppliedPrivileges()
    with scratch_server(server, outside=target_db, log=log) as scratch:
        admin = scratch.admin
        exists = check_restore_target(admin, server, target_db, replace)
        note_lost_database(server, target_db, exists, log)
        check_backup_source(admin, manifest, server, target_db, exists, source, from_other_source, log)
        state = replication_before(admin, server, target_db, replication) if exists else ReplicationState()
        check_backup_roles(admin, catalog, manifest, privileges, server, log, applied)
        stop_if_asked(should_stop, target_db)
        server_text = scratch.version[1]
        client = restore_client(tools, manifest, server, server_text)
        log(f"restoring the {describe_versions(manifest, client, server_text)}")
        # --replace keeps the old contents until the swap: two copies at once.
        check_room_on_server(admin, server.server, server.host, manifest, log, copies=2 if exists else 1)
        watch: StopWatch | None = None
        try:
            # Dropped when the block ends: a target restored over keeps its old contents; once renamed or
            # swapped in, there is nothing left to drop.
            with scratch_database(scratch, "restore", manifest, RESTORE_ELSEWHERE, like_original=True) as work:
                watch = StopWatch(server, target_db, work.name, should_stop)
                log(
                    f"restoring {name} into {'a new database beside ' if exists else 'new database '}{target_db} "
                    f"(scratch database {work.created} until it is complete)"
                )
                with watch:
                    counts, left_out = _fill(
                        catalog, name, manifest, work, client, log, jobs, stall_seconds, privileges, applied
                    )
                    if manifest.carries_privileges:
                        # Last, before the swap: a REVOKE CONNECT or a read-only default would have locked
                        # pg_restore out.
                        apply_database_properties(
                            admin, work.name, manifest.database_properties, privileges, applied, target_db
                        )
                        report_privileges(applied, privileges, log)
                    watch.pass_point_of_no_return()
                with signals_held(log):
                    if exists:
                        old = scratch.claim("replaced")
                        swap(admin, server, target_db, work.name, old, log, state, replication, applied)
                    else:
                        rename_new(admin, server, work.name, target_db)
        except BaseException as error:
            if watch is None:  # the work database was never made
                raise
            stopped = watch.reason or (None if isinstance(error, Exception) else "interrupted")
            if stopped:
                message = (
                    f"the restore of {name} stopped before the swap ({stopped}): its work database {work.name} "
                    f"was dropped and {target_db} {'is as it was' if exists else 'was never created'}"
                )
                log(message)
                if watch.reason:
                    raise RestoreStopped(message) from None
            raise
    duration = time.monotonic() - started
    log(
        f"restored {name} into {target_db}: {counted(len(counts), 'table')}, "
        f"{counted(sum(counts.values()), 'row')}, {duration:.1f} s"
    )
    return RestoreOutcome(
        manifest=manifest,
        database=target_db,
        tables=counts,
        duration_s=round(duration, 3),
        server_version=server_text,
        pg_restore_version=client.version,
        left_out=left_out,
        privileges=applied,
    )


def _fill(
    catalog: BackupCatalog,
    name: BackupName,
    manifest: Manifest,
    work: ScratchDatabase,
    client: PgClient,
    log: Log,
    jobs: int,
    stall_seconds: float | None,
    privileges: PrivilegeChoices,
    applied: AppliedPrivileges,
) -> tuple[dict[str, int], list[str]]:
    """The backup restored into the work database, its row counts checked against the manifest and its owners
    and privileges applied: (row counts, what was left out)."""
    wants_schema = manifest.carries_privileges and not (privileges.no_owner and privileges.no_acl)
    schema: list[str] | None = [] if wants_schema else None
    left_out = restore_into(
        catalog, manifest, work.target, client, log, jobs, schema_out=schema, stall_seconds=stall_seconds
    )
    with work.target.connect() as conn:
        counts = table_row_counts(conn)
        compare_row_counts(manifest.tables, counts, str(name))
        if manifest.carries_privileges:
            apply_script(conn, privilege_script("".join(schema or [])), privileges, applied)
    return counts, left_out
