"""The assets' own results, recorded from an op: how backup_batch and retention_job runs, which are not runs of
the assets, still leave each database's materializations and check results on its own assets."""

import dagster as dg


def record_result(context: dg.OpExecutionContext, result, partition: str | None) -> None:
    """A MaterializeResult or AssetCheckResult of the assets' code, logged as an event of its asset (in the
    backup's partition when given)."""
    if isinstance(result, dg.MaterializeResult):
        context.log_event(
            dg.AssetMaterialization(
                asset_key=dg.AssetKey.from_coercible(result.asset_key),
                partition=partition,
                metadata=dict(result.metadata or {}),
            )
        )
    elif isinstance(result, dg.AssetCheckResult):
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey.from_coercible(result.asset_key),
                check_name=result.check_name,
                passed=result.passed,
                metadata=dict(result.metadata or {}),
                severity=result.severity,
                description=result.description,
                partition=partition,
            )
        )
