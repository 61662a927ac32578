"""`backup-db prune [--dry-run] [--json] [--force]`: a prune_job run, then each backup's decision and its reason."""

from __future__ import annotations

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.output import print_json
from backup_pipeline.cli.runs import RunSpec, run_job
from backup_pipeline.core.streams import counted
from backup_pipeline.defs.names import DATABASE_TAG, KIND_TAG, DefinitionNames


def prune_backups(ctx: CliContext, args) -> int:
    ctx.source()  # a missing or malformed DATABASE_URL is a usage error, found before any run
    names = DefinitionNames(ctx.db)
    config = {"dry_run": args.dry_run, "allow_large_prune": args.force}
    target = names.run_target("prune")
    spec = RunSpec(
        job_name=target.job_name,
        run_config={"ops": {names.prune_op: {"config": config}}},
        tags={DATABASE_TAG: ctx.db.key, KIND_TAG: "prune"},
        asset_selection=target.asset_selection,
    )
    # The run logs one line per backup; the table at the end says the same more readably.
    run_id, finished = run_job(ctx, spec, args, show_logs=False)
    if finished is None:
        print(f"Prune started as run {run_id}; follow it with `backup-db follow {run_id}`")
        return 0
    report_prune(ctx, args.dry_run, finished, run_id, args.json)
    return 0


def report_prune(ctx: CliContext, dry_run: bool, finished, run_id: str, as_json: bool) -> None:
    """Each backup's decision and its reason: printed by `prune` and by `follow` alike."""
    metadata = finished.materializations.get("/".join(DefinitionNames(ctx.db).asset_path("backup_retention")), {})
    decisions = metadata.get("decisions_json") or []
    doomed = [d for d in decisions if d["action"] == "delete"]
    if as_json:
        print_json(
            {
                "dry_run": dry_run,
                "deleted": 0 if dry_run else len(doomed),
                "would_delete": len(doomed),
                "kept": len(decisions) - len(doomed),
                "decisions": decisions,
                "run_id": run_id,
            }
        )
        return
    for decision in decisions:
        action = decision["action"]
        label = f"would {action}" if dry_run else action
        print(f"{label:<12}  {decision['name']}: {decision['reason']}")
    summary = f"would delete {len(doomed)}" if dry_run else f"deleted {len(doomed)}"
    print(
        f"{summary} of {counted(len(decisions), 'backup')}, kept {len(decisions) - len(doomed)} (run {run_id})"
        + (" — dry run, nothing was deleted" if dry_run else "")
    )
