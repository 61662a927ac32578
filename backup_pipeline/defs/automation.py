"""What starts backups: the daily schedule and the sensor that turns backup requests into backup runs.

A dynamic partition must exist before a run for it starts. The schedule adds its partition just before
requesting the run; requests made from the UI or `dagster job launch` go through `request_backup`, whose
run the sensor answers with one SensorResult that adds the partition and requests the run atomically.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.names import BackupId
from backup_pipeline.defs.names import (
    BACKUP_ID_TAG,
    BACKUP_TYPE_TAG,
    LABEL_TAG,
    QUIET_TAG,
    REQUESTED_BY_TAG,
    DefinitionNames,
)

REQUEST_LOOKBACK = timedelta(hours=24)
REQUEST_SENSOR_INTERVAL_S = 5


def build_daily_schedule(db: DatabaseSettings, partitions: dg.DynamicPartitionsDefinition) -> dg.ScheduleDefinition:
    names = DefinitionNames(db)

    @dg.schedule(
        name=names.schedule,
        cron_schedule=db.schedule_cron,
        job_name=names.backup_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Daily backup of {db.key} at '{db.schedule_cron}' (UTC): dump, upload, verify.",
    )
    def daily_backup(context: dg.ScheduleEvaluationContext):
        when = context.scheduled_execution_time or datetime.now(UTC)
        backup_id = str(BackupId.new("daily", when))
        context.instance.add_dynamic_partitions(partitions.name, [backup_id])
        return dg.RunRequest(run_key=backup_id, partition_key=backup_id, tags={BACKUP_TYPE_TAG: "daily"})

    return daily_backup


def build_request_sensor(db: DatabaseSettings, partitions: dg.DynamicPartitionsDefinition) -> dg.SensorDefinition:
    names = DefinitionNames(db)

    @dg.sensor(
        name=names.request_sensor,
        job_name=names.backup_job,
        minimum_interval_seconds=REQUEST_SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Starts {names.backup_job} for each successful {names.request_job} run.",
    )
    def backup_request_sensor(context: dg.SensorEvaluationContext):
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(
                job_name=names.request_job,
                statuses=[dg.DagsterRunStatus.SUCCESS],
                updated_after=datetime.now(UTC) - REQUEST_LOOKBACK,
            ),
            limit=200,
        )
        existing = set(context.instance.get_dynamic_partitions(partitions.name))
        new_ids, run_requests = [], []
        for record in records:
            run = record.dagster_run
            backup_id = run.tags.get(BACKUP_ID_TAG)
            if not backup_id or backup_id in existing or backup_id in new_ids:
                continue
            tags = {BACKUP_TYPE_TAG: run.tags.get(BACKUP_TYPE_TAG, ""), REQUESTED_BY_TAG: run.run_id}
            for carried in (QUIET_TAG, LABEL_TAG):
                if carried in run.tags:
                    tags[carried] = run.tags[carried]
            new_ids.append(backup_id)
            run_requests.append(dg.RunRequest(run_key=run.run_id, partition_key=backup_id, tags=tags))
        if not run_requests:
            return dg.SkipReason("no backup requests waiting")
        return dg.SensorResult(
            run_requests=run_requests, dynamic_partitions_requests=[partitions.build_add_request(new_ids)]
        )

    return backup_request_sensor
