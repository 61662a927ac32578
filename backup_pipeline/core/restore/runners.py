"""The three ways a backup goes into a database: streamed into one pg_restore, staged on disk for pg_restore
--jobs, or unpacked (directory format) for pg_restore of the folder. Each checks the backup's sha256."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import tempfile
from pathlib import Path

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import VerificationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.clients import ClientTools, PgClient
from backup_pipeline.core.restore.plan import Log, RestorePlan, restore_client
from backup_pipeline.core.restore.processes import (
    ScriptClient,
    error_text,
    run_pg_restore,
    running,
    start_pg_restore,
    through_psql,
)
from backup_pipeline.core.restore.schema import list_args, local_schema_sql, streamed_schema_sql
from backup_pipeline.core.restore.staging import feed, stage, unpack_checked
from backup_pipeline.core.restore.toc import TargetRole, TocFilter
from backup_pipeline.core.restore.watchdog import RestoreWatchdog
from backup_pipeline.core.stored_backup import open_backup, open_backup_head
from backup_pipeline.core.streams import human_bytes


def restore_into(
    catalog: BackupCatalog,
    manifest: Manifest,
    target: PostgresTarget,
    tools: ClientTools | PgClient,
    log: Log = print,
    jobs: int = 1,
    schema_only: bool = False,
    schema_out: list[str] | None = None,
    stall_seconds: float | None = None,
) -> list[str]:
    """pg_restore the backup into the existing, empty database `target`; the checksum must match.

    Owners and privileges are left out (--no-owner --no-acl): a restore applies them afterwards, one statement
    at a time (core/privileges/applying.py). `schema_only`: tables, indexes, constraints, functions and the rest,
    without rows (`backup-db diff`). `schema_out`: gets the archive's schema as SQL (owners and ACLs included,
    without what was left out), read from its table of contents.
    Returns what was left out of the archive's table of contents because the target's role cannot create it
    (see plan_restore), e.g. ["EVENT TRIGGER provider_ddl_audit"]; anything else that fails stops the restore.
    `stall_seconds`: the watchdog's limit (BACKUP_STALL_SECONDS), None for none: a download that sends no bytes,
    or a pg_restore that takes none while its sessions do no work (a lock wait among them), is stopped that long
    after, its statements cancelled on the server, and the restore fails naming what it waited for.
    """
    tools = tools if isinstance(tools, PgClient) else restore_client(tools, manifest)
    watchdog = RestoreWatchdog(target, stall_seconds) if stall_seconds else None
    with tempfile.TemporaryDirectory(prefix="backup-toc-") as folder:
        toc = TocFilter(TargetRole.of(target), tools, Path(folder))
        plan = RestorePlan(
            catalog=catalog,
            manifest=manifest,
            target=watchdog.target if watchdog else target,
            client=tools,
            log=log,
            jobs=jobs,
            extra=("--schema-only",) if schema_only else (),
            toc=toc,
            schema_out=schema_out,
            watchdog=watchdog,
        )
        run_plan(plan)
    return toc.left_out


def run_plan(plan: RestorePlan) -> None:
    if through_psql(plan.client, plan.target):
        plan.log(
            f"pg_restore {plan.client.version} cannot talk to this server directly (it sets transaction_timeout, "
            "which servers before 17 reject): restoring its SQL through psql, in one stream"
        )
        plan = dataclasses.replace(plan, client=ScriptClient(plan.client), jobs=1)
    if plan.manifest.format == "directory":
        restore_directory(dataclasses.replace(plan, jobs=max(plan.jobs, plan.manifest.dump_jobs)))
    elif plan.jobs > 1:
        restore_parallel(plan)
    else:
        restore_streamed(plan)


def restore_streamed(plan: RestorePlan) -> None:
    """One pg_restore reading the backup from storage as it downloads: nothing is staged on disk."""
    manifest, watchdog, log = plan.manifest, plan.watchdog, plan.log
    with open_backup_head(plan.catalog, manifest) as head:
        extra = [*plan.extra, *plan.toc.args_for(stream=head)]
    plan.toc.report(log)
    total = max(manifest.size_bytes, 1)
    watch = watchdog.stream_watch("pg_restore") if watchdog else None
    with plan.target.child_env() as env, tempfile.TemporaryFile() as err:
        with open_backup(
            plan.catalog, manifest, lambda n: log(f"restored {n * 100 // total}% ({human_bytes(n)})"), watch
        ) as backup:
            process = start_pg_restore(plan.client, plan.target, extra, env, subprocess.PIPE, err)
            with running(plan.target, process):
                try:
                    if watchdog is None:
                        feed(backup, process.stdin)
                    else:
                        watchdog.run(
                            lambda: feed(backup, process.stdin, lambda: watch.stalled), watch, process, backup.body
                        )
                finally:
                    with contextlib.suppress(BrokenPipeError):
                        process.stdin.close()
                    code = watchdog.wait(process, manifest.name) if watchdog else process.wait()
        # The checksum was checked as the block ended: a damaged backup says so before pg_restore's error.
        if code != 0:
            raise VerificationError(f"pg_restore of {manifest.name} failed: {error_text(err, code)}")
    if plan.schema_out is not None:  # read again from the start of the object: the table of contents only
        plan.schema_out.append(streamed_schema_sql(plan.catalog, manifest, plan.client, list_args(extra)))


def restore_parallel(plan: RestorePlan) -> None:
    """pg_restore --jobs needs a seekable file: download (checking the hash on the way), then restore."""
    manifest, watchdog, log = plan.manifest, plan.watchdog, plan.log
    # Unbuffered, so a full disk surfaces in stage() and closing the file never retries a failed write.
    with tempfile.NamedTemporaryFile(prefix="backup-restore-", suffix=".dump", buffering=0) as staged:
        watch = watchdog.stream_watch("staging") if watchdog else None
        with open_backup(plan.catalog, manifest, lambda n: log(f"downloaded {human_bytes(n)}"), watch) as backup:
            if watchdog is None:
                stage(backup, staged, manifest.name)
            else:
                watchdog.run(lambda: stage(backup, staged, manifest.name), watch, None, backup.body)
        extra = [*plan.extra, *plan.toc.args_for(staged.name)]
        plan.toc.report(log)
        run_pg_restore(plan.client, [*extra, f"--jobs={plan.jobs}", staged.name], plan.target, manifest, watchdog)
        if plan.schema_out is not None:
            plan.schema_out.append(local_schema_sql(plan.client, list_args(extra), staged.name, manifest))


def restore_directory(plan: RestorePlan) -> None:
    """A directory-format backup is a tar of pg_dump's folder: unpack it (checking the hash on the way), then
    pg_restore the folder with `jobs` in parallel."""
    manifest = plan.manifest
    with tempfile.TemporaryDirectory(prefix="backup-restore-") as staging:
        folder = unpack_checked(plan.catalog, manifest, staging, plan.log)
        extra = [*plan.extra, *plan.toc.args_for(folder)]
        plan.toc.report(plan.log)
        args = [*extra, "--format=directory", *([f"--jobs={plan.jobs}"] if plan.jobs > 1 else []), folder]
        run_pg_restore(plan.client, args, plan.target, manifest, plan.watchdog)
        if plan.schema_out is not None:
            plan.schema_out.append(local_schema_sql(plan.client, list_args(extra), folder, manifest))
