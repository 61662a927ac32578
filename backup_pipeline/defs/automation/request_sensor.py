"""The request sensor: starts the backup run of each database a successful request names, when the request is
not the batch sensor's."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.servers import database_server, lane_name, server_budget
from backup_pipeline.defs.automation.backup_requests import (
    REQUEST_LOOKBACK,
    REQUEST_SENSOR_INTERVAL_S,
    REQUESTS_PER_TICK,
    batches_apply,
    requested_backups,
    sensor_answer,
)
from backup_pipeline.defs.batch_config import batch_run_config
from backup_pipeline.defs.names import (
    BACKUP_ID_TAG,
    BATCH_JOB,
    BATCH_SENSOR,
    DATABASE_TAG,
    KIND_TAG,
    LANE_TAG,
    REQUEST_JOB,
    REQUEST_SENSOR,
    SERVER_TAG,
    DefinitionNames,
)


def backup_run_request(
    db: DatabaseSettings, backup_id: str, tags: dict[str, str], run_key: str, lane: str | None = None
) -> dg.RunRequest:
    """A run of the database's dump, upload and verification for one backup (partition): its named backup_job
    (the one database of a DATABASE_URL setup), else a backup_batch run of this database alone, in a lane of
    its server (the run queue lets one run per lane through at a time).

    A backup_batch run rather than a run of the database's own assets: a run of a selection of assets makes
    the code server and the run's process build Dagster's job of every database's assets first (seconds at a
    thousand databases, for a second of work); backup_batch is three ops whatever the number of databases,
    and records the same materializations and checks on the database's own assets.
    """
    if DefinitionNames(db).has_named_jobs:
        return dg.RunRequest(
            run_key=run_key,
            job_name=DefinitionNames(db).backup_job,
            partition_key=backup_id,
            tags={**tags, DATABASE_TAG: db.key, KIND_TAG: "backup", SERVER_TAG: database_server(db)},
        )
    return dg.RunRequest(
        run_key=run_key,
        job_name=BATCH_JOB,
        run_config=batch_run_config([db.key]),
        tags={
            **tags,
            DATABASE_TAG: db.key,
            KIND_TAG: "batch",
            BACKUP_ID_TAG: backup_id,
            SERVER_TAG: database_server(db),
            **({LANE_TAG: lane} if lane else {}),
        },
    )


UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def least_busy_lane(instance: dg.DagsterInstance, settings: Settings, db: DatabaseSettings) -> str:
    """The lane of the database's server with the fewest unfinished runs: one query per lane."""
    server = database_server(db)
    budget = server_budget(d for d in settings.databases if database_server(d) == server)
    lanes = [lane_name(server, lane) for lane in range(budget)]
    return min(
        lanes, key=lambda lane: instance.get_runs_count(dg.RunsFilter(tags={LANE_TAG: lane}, statuses=UNFINISHED))
    )


def build_request_sensor(settings: Settings, backup_job: dg.JobDefinition) -> dg.SensorDefinition:
    """The one sensor answering every database's backup requests, with runs of `backup_job`: the named
    backup_job of a DATABASE_URL setup, else backup_batch (one database per run here)."""

    @dg.sensor(
        name=REQUEST_SENSOR,
        minimum_interval_seconds=REQUEST_SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Starts the backup run of the database named by each successful {REQUEST_JOB} run (from the UI, "
            "`dagster job launch`, `backup-db backup --no-wait` or a schedule's tick); requests naming several "
            f"databases are the {BATCH_SENSOR}'s."
        ),
        jobs=[backup_job],
    )
    def backup_request_sensor(context: dg.SensorEvaluationContext):
        after = _cursor_time(context.cursor) or datetime.now(UTC) - REQUEST_LOOKBACK
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(job_name=REQUEST_JOB, statuses=[dg.DagsterRunStatus.SUCCESS], updated_after=after),
            limit=REQUESTS_PER_TICK,
            order_by="update_timestamp",
            ascending=True,
        )
        additions: dict[str, list[str]] = defaultdict(list)
        run_requests = []
        newest = None
        for record in records:
            newest = record.update_timestamp
            requested = requested_backups(record.dagster_run, settings, context.log)
            if batches_apply(settings, [db for db, _, _ in requested]):
                continue  # the batch sensor's
            for db, backup_id, tags in requested:
                partitions = DefinitionNames(db).partitions
                if context.instance.has_dynamic_partition(partitions, backup_id):
                    continue  # answered already, or registered by the command line that started its own run
                additions[partitions].append(backup_id)
                run_key = f"{record.dagster_run.run_id}:{db.key}"
                lane = least_busy_lane(context.instance, settings, db) if not db.is_default else None
                run_requests.append(backup_run_request(db, backup_id, tags, run_key, lane))
        if newest is None:
            return dg.SkipReason("no backup requests waiting")
        cursor = _to_cursor(newest)
        return sensor_answer(run_requests, additions, cursor, "no backup requests waiting")

    return backup_request_sensor


def _cursor_time(cursor: str | None) -> datetime | None:
    try:
        # A second of overlap: a request finishing in the same instant is looked at twice, never missed
        # (its partitions exist by then, so it is not answered twice).
        return datetime.fromtimestamp(json.loads(cursor)["after"] - 1, UTC) if cursor else None
    except (ValueError, KeyError, TypeError):
        return None


def _to_cursor(update_timestamp: datetime) -> str:
    if update_timestamp.tzinfo is None:  # run storage keeps UTC without a zone
        update_timestamp = update_timestamp.replace(tzinfo=UTC)
    return json.dumps({"after": update_timestamp.timestamp()})
