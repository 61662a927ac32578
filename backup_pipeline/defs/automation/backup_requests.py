"""Backup requests: the request_backup runs (a schedule's tick, the UI, `dagster job launch`, `backup-db backup
--no-wait`), what each successful one asks for, and a sensor's answer to them."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.defs.jobs import requested_databases
from backup_pipeline.defs.names import (
    BACKUP_ID_TAG,
    BACKUP_TYPE_TAG,
    LABEL_TAG,
    PRIORITY_TAG,
    QUIET_TAG,
    REQUEST_OP,
    REQUESTED_BY_TAG,
    DefinitionNames,
)

REQUEST_LOOKBACK = timedelta(hours=24)
REQUEST_SENSOR_INTERVAL_S = 5
# Requests answered per tick; a request names up to every database, so one tick may start hundreds of runs.
REQUESTS_PER_TICK = 50
# Backups someone is waiting for (pre-migration, manual) overtake a night's queued daily backups.
REQUESTED_PRIORITY = "10"


def batches_apply(settings: Settings, databases: list[DatabaseSettings]) -> bool:
    """A request naming several databases (a schedule's tick) is answered with backup_batch runs; one naming a
    single database, or the one database of a DATABASE_URL setup, with a run of its own."""
    return len(databases) > 1 and not any(DefinitionNames(db).has_named_jobs for db in databases)


def requested_backups(run: dg.DagsterRun, settings: Settings, log):
    """(database, backup id, run tags) for each backup a successful request run asked for."""
    backup_id = run.tags.get(BACKUP_ID_TAG)
    if not backup_id:
        return []
    config = ((run.run_config or {}).get("ops", {}).get(REQUEST_OP) or {}).get("config") or {}
    try:
        databases = requested_databases(settings, config)
    except Exception as error:  # a database removed from the file since: skip the request, say why
        log.warning(f"request run {run.run_id} skipped: {error}")
        return []
    tags = {BACKUP_TYPE_TAG: run.tags.get(BACKUP_TYPE_TAG, ""), REQUESTED_BY_TAG: run.run_id}
    for carried in (QUIET_TAG, LABEL_TAG):
        if carried in run.tags:
            tags[carried] = run.tags[carried]
    if run.tags.get(BACKUP_TYPE_TAG) != "daily":
        tags[PRIORITY_TAG] = REQUESTED_PRIORITY
    return [(db, backup_id, tags) for db in databases]


def sensor_answer(run_requests: list, additions: dict, cursor: str, nothing: str) -> dg.SensorResult:
    """The runs to start with their backups' partitions, added in the same result (the documented atomic way:
    a partition exists before its run starts), or why nothing starts."""
    if not run_requests:
        return dg.SensorResult(skip_reason=dg.SkipReason(nothing), cursor=cursor)
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[
            dg.AddDynamicPartitionsRequest(partitions_def_name=name, partition_keys=keys)
            for name, keys in additions.items()
        ],
        cursor=cursor,
    )
