"""Retention after each scheduled backup: the job that prunes one database of several, and the sensor that
starts it."""

from __future__ import annotations

import dagster as dg

from backup_pipeline.core.config import Settings
from backup_pipeline.defs.names import (
    BACKUP_TYPE_TAG,
    DATABASE_TAG,
    KIND_TAG,
    PARTITION_TAG,
    REQUESTED_BY_TAG,
    RETENTION_JOB,
    RETENTION_SENSOR,
    DefinitionNames,
)
from backup_pipeline.defs.run_lifecycle import run_database_and_kind

# Retention follows a night's backup; nobody waits for it, so the sensor looks twice a minute.
RETENTION_SENSOR_INTERVAL_S = 30


def build_retention_job(settings: Settings) -> dg.UnresolvedAssetJobDefinition | None:
    """With several databases, the job the retention sensor starts: every backup_retention asset, of which
    each run selects its database's own. With one database its prune_job serves."""
    if any(DefinitionNames(db).has_named_jobs for db in settings.databases):
        return None
    keys = [dg.AssetKey(DefinitionNames(db).asset_path("backup_retention")) for db in settings.databases]
    return dg.define_asset_job(
        RETENTION_JOB,
        selection=dg.AssetSelection.assets(*keys),
        tags={KIND_TAG: "prune"},
        description="Retention of one database (each run selects its backup_retention asset); started by the "
        f"{RETENTION_SENSOR} after a successful scheduled backup, or by hand.",
    )


def make_retention_on_backup_success_sensor(
    settings: Settings,
    prune_job,
    name: str = RETENTION_SENSOR,
    minimum_interval_seconds: int = RETENTION_SENSOR_INTERVAL_S,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """The one sensor that runs retention of a database after each successful scheduled (daily) backup of it.

    Shaped like dagster-slack's make_slack_on_run_failure_sensor. The prune run carries the database's
    backup/database tag, so the run queue never lets it overlap a backup of the same database (dagster.yaml);
    a database with auto_prune off (BACKUP_AUTO_PRUNE=false) is left alone.
    """
    named = prune_job.name != RETENTION_JOB

    @dg.run_status_sensor(
        name=name,
        run_status=dg.DagsterRunStatus.SUCCESS,
        minimum_interval_seconds=minimum_interval_seconds,
        monitor_all_code_locations=False,
        request_job=prune_job,
        default_status=default_status,
        description=(
            "Runs retention (backup_retention) of a database after each successful scheduled daily backup of it, "
            "unless its auto_prune is off (BACKUP_AUTO_PRUNE=false). Decisions show on the backup_retention asset."
        ),
    )
    def backup_retention_sensor(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        db, kind = run_database_and_kind(run, settings)
        if db is None or kind != "backup":
            return dg.SkipReason(f"run {run.run_id} is not a backup")
        scheduled = run.tags.get(BACKUP_TYPE_TAG) == "daily" or run.tags.get(PARTITION_TAG, "").startswith("daily_")
        if not scheduled:
            return dg.SkipReason(f"run {run.run_id} is not a scheduled backup: retention follows daily backups")
        if not db.auto_prune:
            return dg.SkipReason(f"auto_prune is off for {db.key}: retention runs only when asked to")
        names = DefinitionNames(db)
        context.log.info(f"backup run {run.run_id} of {db.key} succeeded: requesting its retention")
        return dg.RunRequest(
            run_key=f"retention:{run.run_id}",
            job_name=prune_job.name,
            asset_selection=None if named else [dg.AssetKey(names.asset_path("backup_retention"))],
            tags={DATABASE_TAG: db.key, KIND_TAG: "prune", REQUESTED_BY_TAG: run.run_id},
        )

    return backup_retention_sensor
