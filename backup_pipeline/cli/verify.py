"""`backup-db verify NAME`: verification of one stored backup again, as a verify_job run for its partition."""

from __future__ import annotations

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.output import paint, print_json
from backup_pipeline.cli.runs import RunSpec, run_job
from backup_pipeline.core.streams import counted
from backup_pipeline.defs.names import DATABASE_TAG, KIND_TAG, DefinitionNames


def verify_backup(ctx: CliContext, args) -> int:
    name, _entry = ctx.find(args.name, args.type)
    names = DefinitionNames(ctx.db)
    backup_id = str(name.id)
    target = names.run_target("verify")
    spec = RunSpec(
        job_name=target.job_name,
        partition_key=backup_id,
        # A backup made by another instance (or before this DAGSTER_HOME existed) has no partition here yet.
        partitions=names.partitions,
        tags={DATABASE_TAG: ctx.db.key, KIND_TAG: "verify"},
        asset_selection=target.asset_selection,
    )

    run_id, finished = run_job(ctx, spec, args, backup_name=str(name))
    if finished is None:
        print(f"Verification of {name} started as run {run_id}; follow it with `backup-db follow {run_id}`")
        return 0
    report_verification(ctx, name, finished, run_id, args.json)
    return 0


def report_verification(ctx: CliContext, name, finished, run_id: str, as_json: bool) -> None:
    """Printed by `verify` and by `follow` alike."""
    verified = finished.materializations.get("/".join(DefinitionNames(ctx.db).asset_path("restore_verification")), {})
    if as_json:
        print_json(
            {
                "name": str(name),
                "verified": True,
                "tables": verified.get("tables"),
                "rows": verified.get("rows"),
                "restore_duration_s": verified.get("restore_duration_s"),
                "pg_restore_version": verified.get("pg_restore_version"),
                "left_out": left_out_names(verified),
                "run_id": run_id,
            }
        )
    else:
        print(verify_summary(str(name), verified, run_id))


def verify_summary(name: str, verified: dict, run_id: str) -> str:
    """What `verify` prints once a backup verified; `follow` prints the same for a verification run."""
    with_tool = f" with pg_restore {verified['pg_restore_version']}" if verified.get("pg_restore_version") else ""
    return (
        paint(f"Verified {name}", "green")
        + f": {counted(verified.get('tables') or 0, 'table')} and {counted(verified.get('rows') or 0, 'row')} "
        f"restored{with_tool} and matched its manifest (run {run_id})" + left_out_note(left_out_names(verified))
    )


def left_out_names(outcome: dict) -> list[str]:
    """The objects a restore left out (run metadata `left_out`, comma-separated)."""
    return [name for name in (outcome.get("left_out") or "").split(", ") if name]


def left_out_note(names: list[str]) -> str:
    """A line naming what a verification or restore left out, as its role cannot create it; '' for nothing."""
    if not names:
        return ""
    return (
        f"\nLeft out {counted(len(names), 'object')} that only a superuser can create, or that are never restored "
        f"(subscriptions): {', '.join(names)}"
    )
