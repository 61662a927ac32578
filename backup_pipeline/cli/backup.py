"""`backup-db backup`: one backup as a backup_job run (dump, upload, verify); exit 0 once it is stored and verified."""

from __future__ import annotations

import json

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.listing import warn_about_other_servers
from backup_pipeline.cli.output import paint, print_json
from backup_pipeline.cli.runs import RunSpec, run_job
from backup_pipeline.cli.verify import left_out_note
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.names import BackupId, BackupName, check_backup_type, check_label
from backup_pipeline.core.streams import counted, human_bytes
from backup_pipeline.defs.names import (
    BACKUP_TYPE_TAG,
    DATABASE_TAG,
    KIND_TAG,
    LABEL_TAG,
    PRIORITY_TAG,
    QUIET_TAG,
    REQUESTED_BY_TAG,
    DefinitionNames,
)


def take_backup(ctx: CliContext, args) -> int:
    backup_type = check_backup_type(args.type)
    label = check_label(args.label) if args.label is not None else None
    source = ctx.source()
    name_prefix = ctx.name_prefix
    # Unreachable database or storage: say so now, before a run is recorded or a partition added.
    source.connect().close()
    ctx.storage.check_access()
    newest = ctx.catalog().complete()[:1]
    warn_about_other_servers(ctx, ctx.catalog().manifests(newest).values())

    backup_id = BackupId.new(backup_type)
    name = BackupName(prefix=name_prefix, id=backup_id)
    names = DefinitionNames(ctx.db)
    tags = {
        BACKUP_TYPE_TAG: backup_type,
        REQUESTED_BY_TAG: "backup-db",
        DATABASE_TAG: ctx.db.key,
        KIND_TAG: "backup",
        # Someone is waiting: ahead of a night's queued daily backups.
        PRIORITY_TAG: "10",
    }
    if args.quiet:
        tags[QUIET_TAG] = "true"
    if label:
        tags[LABEL_TAG] = label
    target = names.run_target("backup")
    spec = RunSpec(
        job_name=target.job_name,
        tags=tags,
        partition_key=str(backup_id),
        partitions=names.partitions,
        asset_selection=target.asset_selection,
    )

    run_id, finished = run_job(ctx, spec, args, backup_name=str(name))
    if finished is None:
        if args.json:
            print_json({"name": str(name), "run_id": run_id, "status": "submitted"})
        else:
            print(f"Backup {name} started as run {run_id}; follow it with `backup-db follow {run_id}`")
        return 0
    report_backup(ctx, name, run_id, args.json)
    return 0


def report_backup(ctx: CliContext, name: BackupName, run_id: str, as_json: bool) -> None:
    """The stored, verified backup, read back from storage: printed by `backup` and by `follow` alike."""
    catalog = ctx.catalog()
    entry = catalog.find(name)
    manifest = catalog.manifest(name)
    if not entry.verified:
        raise BackupError(f"{name} was stored but has no verification marker: run `backup-db verify {name}`")
    result = {
        "name": str(name),
        "key": manifest.key,
        "uri": ctx.storage.uri(manifest.key),
        "type": manifest.type,
        "created_at": manifest.created_at,
        "size_bytes": manifest.size_bytes,
        "sha256": manifest.sha256,
        "tables": len(manifest.tables),
        "rows": manifest.total_rows,
        "duration_s": manifest.duration_s,
        "verified": entry.verified,
        "label": manifest.label,
        "source_server": manifest.source_server,
        # What the verification left out as its role cannot create it (its record names them).
        "left_out": verification_left_out(catalog, entry),
        "run_id": run_id,
    }
    if as_json:
        print_json(result)
    else:
        print(backup_summary(manifest, result["uri"], run_id, ctx.run_url(run_id)) + left_out_note(result["left_out"]))


def verification_left_out(catalog, entry) -> list[str]:
    try:
        record = json.loads(catalog.storage.read_bytes(entry.verified_key))
    except (ValueError, OSError):
        return []
    return list(record.get("left_out") or [])


def backup_summary(manifest, uri: str, run_id: str, run_url: str | None) -> str:
    """What `backup` prints once a backup is stored and verified; `follow` prints the same for a backup run."""
    label = f"\n  label {manifest.label}" if manifest.label else ""
    return (
        paint(f"Backup {manifest.name} stored and verified", "green")
        + f": {human_bytes(manifest.size_bytes)}, {counted(len(manifest.tables), 'table')}, "
        f"{counted(manifest.total_rows, 'row')}{label}\n  {uri}\n  sha256 {manifest.sha256}\n"
        f"  run {run_id}{f' {run_url}' if run_url else ''}"
    )
