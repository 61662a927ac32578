"""Retention after each scheduled backup: the job that prunes one database of several, and the sensor that
starts it."""

import dagster as dg

from backup_pipeline.core.config import Settings
from backup_pipeline.defs.assets.failures import fail_clearly
from backup_pipeline.defs.assets.recording import record_result
from backup_pipeline.defs.assets.retention import PruneConfig, prune_database, retention_asset_key
from backup_pipeline.defs.jobs import choose_database
from backup_pipeline.defs.names import (
    BACKUP_TYPE_TAG,
    DATABASE_TAG,
    KIND_TAG,
    PARTITION_TAG,
    REQUESTED_BY_TAG,
    RETENTION_JOB,
    RETENTION_OP,
    RETENTION_SENSOR,
    DefinitionNames,
)
from backup_pipeline.defs.resources import BackupStorageResource, PostgresResource
from backup_pipeline.defs.run_lifecycle import run_database_and_kind

# Retention follows a night's backup; nobody waits for it, so the sensor looks twice a minute.
RETENTION_SENSOR_INTERVAL_S = 30


class RetentionRunConfig(PruneConfig):
    # The database's key in the databases file.
    database: str


def build_retention_job(settings: Settings) -> dg.JobDefinition | None:
    """With several databases, the job the retention sensor starts: one op pruning the database its config
    names, recorded on that database's backup_retention asset. With one database its prune_job serves.

    An op job rather than a selection of every database's backup_retention asset: that selection made
    Dagster cut each database's backup assets apart (they feed backup_retention) at every load of the code
    location, 7 % of it at a thousand databases, and again in each run's process.
    """
    if any(DefinitionNames(db).has_named_jobs for db in settings.databases):
        return None

    @dg.op(name=RETENTION_OP)
    def prune_one_database(
        context: dg.OpExecutionContext,
        config: RetentionRunConfig,
        postgres: PostgresResource,
        backup_storage: BackupStorageResource,
    ) -> None:
        """Deletes the database's backups its retention policy no longer keeps (dry_run: true only reports)."""
        with fail_clearly():
            db = choose_database(settings, config.database)
        # RetentionRunConfig is a PruneConfig: every prune setting reaches prune_database as it was given.
        record_result(
            context, prune_database(context, config, postgres, backup_storage, db, retention_asset_key(db)), None
        )

    @dg.job(
        name=RETENTION_JOB,
        tags={KIND_TAG: "prune"},
        executor_def=dg.in_process_executor,
        description=(
            "Retention of one database (database: its key in the op's config), recorded on its backup_retention "
            f"asset; started by the {RETENTION_SENSOR} after a successful scheduled backup, or by hand."
        ),
    )
    def retention_job():
        prune_one_database()

    return retention_job


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
        context.log.info(f"backup run {run.run_id} of {db.key} succeeded: requesting its retention")
        return dg.RunRequest(
            run_key=f"retention:{run.run_id}",
            job_name=prune_job.name,
            run_config=None if named else {"ops": {RETENTION_OP: {"config": {"database": db.key}}}},
            tags={DATABASE_TAG: db.key, KIND_TAG: "prune", REQUESTED_BY_TAG: run.run_id},
        )

    return backup_retention_sensor
