"""backup_retention: prunes stored backups by the retention policy, and their Dagster partitions with them.

The policy (core/prune.py) is the database's settings: the window, keep-last, GFS counts, the pre-migration
window, the circuit breaker (the freshness window), and protection of the last good backup before one that
failed its health checks. A prune the breaker refuses fails its run (so the failure sensor alerts) after
logging every decision; a dry run reports the same decisions and deletes nothing.
"""

from dataclasses import replace
from datetime import UTC, datetime

import dagster as dg

from backup_pipeline.core.backup import backups_being_written
from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.health import previous_good_backups
from backup_pipeline.core.prune import (
    BREAKER_MARK,
    RetentionPolicy,
    apply_prune,
    breaker_reason,
    check_breaker,
    check_not_too_many,
    confirmed_entries,
    plan_prune,
)
from backup_pipeline.defs.assets.failures import fail_clearly
from backup_pipeline.defs.metrics import publish_metrics
from backup_pipeline.defs.names import PRUNE_OP, DefinitionNames
from backup_pipeline.defs.partitions import delete_dynamic_partitions
from backup_pipeline.defs.resources import BackupStorageResource, PostgresResource
from backup_pipeline.defs.sweeping import sweep_for

LOG_LINES_PER_MESSAGE = 500


class PruneConfig(dg.Config):
    dry_run: bool = False
    allow_large_prune: bool = False


def build_retention_assets(databases: list[DatabaseSettings], storage_kind: str = "s3"):
    """Every database's backup_retention asset, as one multi-asset: a run materializes the selected ones.

    One op for all databases rather than one each: each op costs the code location's load time.
    """
    by_key = {retention_asset_key(db): db for db in databases}

    @dg.multi_asset(
        name=PRUNE_OP,
        specs=[_retention_spec(db, storage_kind) for db in databases],
        can_subset=True,
    )
    def backup_retention(
        context: dg.AssetExecutionContext,
        config: PruneConfig,
        postgres: PostgresResource,
        backup_storage: BackupStorageResource,
    ):
        for key in sorted(context.selected_asset_keys, key=lambda k: k.path):
            yield prune_database(context, config, postgres, backup_storage, by_key[key], key)

    return backup_retention


def retention_asset_key(db: DatabaseSettings) -> dg.AssetKey:
    return dg.AssetKey(DefinitionNames(db).asset_path("backup_retention"))


def _retention_spec(db: DatabaseSettings, storage_kind: str) -> dg.AssetSpec:
    names = DefinitionNames(db)
    return dg.AssetSpec(
        names.asset_path("backup_retention"),
        deps=[dg.AssetKey(names.asset_path("restore_verification"))],
        group_name=names.group,
        kinds={storage_kind},
        description=(
            f"Deletes backups older than {db.retention_days} days, keeping {_pre_migration_rule(db)}, the newest "
            f"{db.keep_last} verified ones{_gfs_rule(db)}, the last good backup before one that failed its health "
            "checks, and anything timestamped in the future; removes incomplete uploads after a day. Touches only "
            "this database's own object names. Refuses to delete more than half, and deletes nothing while the "
            f"newest verified backup is older than {db.freshness_hours:g} h (backups are failing). "
            + ("Runs after each successful scheduled backup." if db.auto_prune else "Runs only when asked to.")
        ),
        skippable=True,
    )


def retention_policy(db: DatabaseSettings) -> RetentionPolicy:
    return RetentionPolicy(
        retention_days=db.retention_days,
        keep_last=db.keep_last,
        keep_daily=db.keep_daily,
        keep_weekly=db.keep_weekly,
        keep_monthly=db.keep_monthly,
        keep_yearly=db.keep_yearly,
        pre_migration_days=db.pre_migration_retention_days,
        freshness_hours=db.freshness_hours,
    )


def _pre_migration_rule(db: DatabaseSettings) -> str:
    if db.pre_migration_retention_days is None:
        return "every pre-migration backup"
    return f"pre-migration backups for {db.pre_migration_retention_days} days"


def _gfs_rule(db: DatabaseSettings) -> str:
    counts = [(db.keep_daily, "daily"), (db.keep_weekly, "weekly"), (db.keep_monthly, "monthly")]
    counts.append((db.keep_yearly, "yearly"))
    given = [f"{n} {period}" for n, period in counts if n]
    return f", the newest of each of the last {', '.join(given)} periods" if given else ""


def _being_written(context: dg.AssetExecutionContext, target, incomplete) -> set[str] | None:
    """The incomplete uploads a live run is still writing (however old: a large dump can outlast the grace
    period); None when the server cannot say, and then the policy keeps them all."""
    try:
        return backups_being_written(target, [e.name for e in incomplete])
    except BackupError as error:
        context.log.warning(f"incomplete uploads are kept: cannot tell which backups are being written ({error})")
        return None


def prune_database(
    context: dg.AssetExecutionContext,
    config: PruneConfig,
    postgres: PostgresResource,
    backup_storage: BackupStorageResource,
    db: DatabaseSettings,
    key: dg.AssetKey,
) -> dg.MaterializeResult:
    names = DefinitionNames(db)
    policy = retention_policy(db)
    connection = postgres.database(db)
    with fail_clearly():
        catalog = backup_storage.catalog(connection, db.storage_prefix)
        where = f"{catalog.name_prefix} in {catalog.storage.describe()}"
        now = datetime.now(UTC)
        entries = catalog.entries()
        protected = previous_good_backups(
            catalog, [e for e in entries if e.verified], db.health_max_row_drop_percent, log=context.log.warning
        )
        writing = _being_written(context, connection.target(), [e for e in entries if not e.complete])
        # Every backup the policy would delete (alone or with the breaker off) is read again by name first.
        entries = confirmed_entries(
            catalog,
            entries,
            lambda seen: plan_prune(seen, replace(policy, freshness_hours=None), now, protected, writing),
        )
        decisions = plan_prune(entries, policy, now, protected, writing)
        if not config.allow_large_prune:
            # Judged on what the policy alone would delete: a clock gone wrong is told as such, breaker or not.
            unbroken = replace(policy, freshness_hours=None)
            check_not_too_many(plan_prune(entries, unbroken, now, protected, writing), where)
        held = breaker_reason(entries, policy, now)
        doomed = [d for d in decisions if d.delete]
        context.log.info(f"{len(doomed)} of {len(decisions)} backups to delete{' (dry run)' if config.dry_run else ''}")
        # Every decision is logged, many to a message: one event per backup costs minutes at 10,000.
        lines = [f"{'delete' if d.delete else 'keep'} {d.name}: {d.reason}" for d in decisions]
        for start in range(0, len(lines), LOG_LINES_PER_MESSAGE):
            context.log.info("\n".join(lines[start : start + LOG_LINES_PER_MESSAGE]))
        # The breaker fails the run only when it kept something the policy would delete: that is the refusal
        # worth an alert (stale backups themselves are the dead-man's switch's to report).
        blocked = [d for d in decisions if d.reason.startswith(BREAKER_MARK)]
        if blocked and not config.dry_run:
            context.log.warning(f"retention refused for {where}: {len(blocked)} backup(s) kept: {held}")
            check_breaker(entries, policy, now, where)  # fails the run, so the failure sensor alerts
        if not config.dry_run:
            apply_prune(catalog, doomed)
            existing = set(context.instance.get_dynamic_partitions(names.partitions))
            gone = [d.name[len(catalog.name_prefix) + 1 :] for d in doomed]
            delete_dynamic_partitions(context.instance, names.partitions, [k for k in gone if k in existing])
            # After the policy, so its counts are its own: the sweep then removes what killed runs left since.
            sweep_for(context, postgres, backup_storage, db)
            publish_metrics(postgres, backup_storage, db, context.log.warning)
    table = "\n".join(
        ["| backup | action | reason |", "|---|---|---|"]
        + [f"| {d.name} | {'delete' if d.delete else 'keep'} | {d.reason} |" for d in decisions]
    )
    return dg.MaterializeResult(
        asset_key=key,
        metadata={
            "dry_run": config.dry_run,
            "circuit_breaker": f"holds: {held}" if held else "off: the newest verified backup is fresh",
            "deleted": dg.MetadataValue.int(0 if config.dry_run else len(doomed)),
            "would_delete": dg.MetadataValue.int(len(doomed)),
            "kept": dg.MetadataValue.int(len(decisions) - len(doomed)),
            "decisions": dg.MetadataValue.md(table),
            # The same decisions for programs (`backup-db prune --json`), without the object keys.
            "decisions_json": dg.MetadataValue.json(
                [{k: v for k, v in d.as_dict().items() if k != "keys"} for d in decisions]
            ),
        },
    )
