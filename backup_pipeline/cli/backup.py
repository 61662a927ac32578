"""`backup-db backup`: one backup as a backup_job run (dump, upload, verify); exit 0 once it is stored and verified."""

from __future__ import annotations

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.output import print_json
from backup_pipeline.cli.runs import RunSpec, WaitOptions, run_job
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.names import BackupId, BackupName, check_backup_type
from backup_pipeline.core.streams import human_bytes
from backup_pipeline.defs.names import BACKUP_TYPE_TAG, QUIET_TAG, REQUESTED_BY_TAG, DefinitionNames


def take_backup(ctx: CliContext, args) -> int:
    backup_type = check_backup_type(args.type)
    source = ctx.source()
    name_prefix = ctx.name_prefix
    # Unreachable database or storage: say so now, before a run is recorded or a partition added.
    source.connect().close()
    ctx.storage.check_access()

    backup_id = BackupId.new(backup_type)
    name = BackupName(prefix=name_prefix, id=backup_id)
    names = DefinitionNames(ctx.db)
    tags = {BACKUP_TYPE_TAG: backup_type, REQUESTED_BY_TAG: "backup-db"}
    if args.quiet:
        tags[QUIET_TAG] = "true"
    spec = RunSpec(job_name=names.backup_job, tags=tags, partition_key=str(backup_id))

    def register_partition(instance) -> None:
        instance.add_dynamic_partitions(names.partitions, [str(backup_id)])

    run_id, finished = run_job(ctx, spec, WaitOptions.from_args(args), before_launch=register_partition)
    if finished is None:
        if args.json:
            print_json({"name": str(name), "run_id": run_id, "status": "submitted"})
        else:
            print(f"Backup {name} started as run {run_id}; follow it with `backup-db follow {run_id}`")
        return 0

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
        "run_id": run_id,
    }
    if args.json:
        print_json(result)
    else:
        print(
            f"Backup {name} stored and verified: {human_bytes(manifest.size_bytes)}, {len(manifest.tables)} tables, "
            f"{manifest.total_rows} rows\n  {result['uri']}\n  sha256 {manifest.sha256}\n  run {run_id}"
        )
    return 0
