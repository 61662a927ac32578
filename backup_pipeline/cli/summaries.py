"""What `backup-db follow RUN_ID` prints once the run is done: the same summary as the verb that started it
(`backup`, `verify`, `restore`, `prune`), so following a run after --no-wait or a timeout ends the same way."""

from __future__ import annotations

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.output import print_json
from backup_pipeline.core.names import BackupName
from backup_pipeline.defs.names import PARTITION_TAG, RESTORE_SERVER_TAG, DefinitionNames
from backup_pipeline.defs.run_lifecycle import run_database_and_kind


def report_finished_run(ctx: CliContext, run, finished, as_json: bool) -> None:
    """`run`: the finished Dagster run (job, tags, run config); `finished`: what follow() read from its events."""
    db, kind = run_database_and_kind(run, ctx.settings)
    if db is None:
        _report_other(run, as_json)
        return
    ctx = CliContext(settings=ctx.settings, db=db)
    names = DefinitionNames(db)
    if kind in ("backup", "verify"):
        from backup_pipeline.cli.backup import report_backup
        from backup_pipeline.cli.verify import report_verification

        name = BackupName.parse(run.tags[PARTITION_TAG], ctx.name_prefix)
        if kind == "backup":
            report_backup(ctx, name, run.run_id, as_json)
        else:
            report_verification(ctx, name, finished, run.run_id, as_json)
    elif kind == "restore":
        from backup_pipeline.cli.restore import report_restore

        config = _op_config(run, names.restore_op)
        server = run.tags.get(RESTORE_SERVER_TAG) or ctx.source().describe()
        report_restore(ctx, config, server, finished, run.run_id, as_json)
    elif kind == "prune":
        from backup_pipeline.cli.prune import report_prune

        report_prune(ctx, bool(_op_config(run, names.prune_op).get("dry_run")), finished, run.run_id, as_json)
    else:
        _report_other(run, as_json)


def _op_config(run, op_name: str) -> dict:
    return ((run.run_config or {}).get("ops", {}).get(op_name) or {}).get("config") or {}


def _report_other(run, as_json: bool) -> None:
    if as_json:
        print_json({"run_id": run.run_id, "job": run.job_name, "status": "completed"})
    else:
        print(f"Run {run.run_id} of {run.job_name} completed")
