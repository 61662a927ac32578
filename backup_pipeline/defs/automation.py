"""What starts backups and retention: one schedule per distinct cron, one sensor that turns backup requests
into backup runs, and one sensor that prunes a database after its scheduled backup, for every database.

A dynamic partition must exist before a run for it starts, and a schedule cannot add partitions atomically
nor start runs of assets with different partitions (each database has its own). So every backup run is born
in one place: a schedule's tick launches one request_backup run naming every database on that cron, as
the UI, `dagster job launch` and `backup-db backup --no-wait` request one database's; the request sensor
answers each successful request with one SensorResult that adds each database's partition and starts one
run per database, atomically. A 06:00 tick over 300 databases is one request run, then 300 queued runs
that the run queue lets through a few at a time (dagster.yaml).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.servers import database_server, lane_name, plan_batches, server_budget
from backup_pipeline.defs.batch_config import batch_run_config
from backup_pipeline.defs.jobs import requested_databases
from backup_pipeline.defs.names import (
    BACKUP_ID_TAG,
    BACKUP_TYPE_TAG,
    BATCH_JOB,
    BATCH_SENSOR,
    DATABASE_TAG,
    KIND_TAG,
    LABEL_TAG,
    LANE_TAG,
    PARTITION_TAG,
    PRIORITY_TAG,
    QUIET_TAG,
    REQUEST_JOB,
    REQUEST_OP,
    REQUEST_SENSOR,
    REQUESTED_BY_TAG,
    RETENTION_JOB,
    RETENTION_SENSOR,
    SERVER_TAG,
    DefinitionNames,
    schedule_name,
)
from backup_pipeline.defs.run_lifecycle import run_database_and_kind

REQUEST_LOOKBACK = timedelta(hours=24)
REQUEST_SENSOR_INTERVAL_S = 5
# Requests answered per tick; a request names up to every database, so one tick may start hundreds of runs.
REQUESTS_PER_TICK = 50
# Backups someone is waiting for (pre-migration, manual) overtake a night's queued daily backups.
REQUESTED_PRIORITY = "10"


def build_backup_schedules(settings: Settings) -> list[dg.ScheduleDefinition]:
    """One schedule per distinct cron, each tick requesting a backup of every database on it."""
    by_cron: dict[str, list[DatabaseSettings]] = defaultdict(list)
    for db in settings.databases:
        by_cron[db.schedule_cron].append(db)
    return [_schedule(cron, dbs) for cron, dbs in by_cron.items()]


def _schedule(cron: str, databases: list[DatabaseSettings]) -> dg.ScheduleDefinition:
    only_default = len(databases) == 1 and databases[0].is_default
    keys = [db.key for db in databases]
    which = keys[0] if len(keys) == 1 else f"{len(keys)} databases"

    @dg.schedule(
        name=schedule_name(cron, only_default),
        cron_schedule=cron,
        job_name=REQUEST_JOB,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Daily backup of {which} at '{cron}' (UTC): each tick requests a backup of every database on it "
            "(dump, upload, verify), started by the backup_request_sensor (one database) or as backup_batch runs "
            "by the backup_batch_sensor (several), and let through by the run queue."
        ),
    )
    def scheduled_backups(context: dg.ScheduleEvaluationContext):
        when = context.scheduled_execution_time or datetime.now(UTC)
        config = {"backup_type": "daily", "databases": keys, "scheduled_at": when.astimezone(UTC).isoformat()}
        return dg.RunRequest(
            run_config={"ops": {REQUEST_OP: {"config": config}}},
            tags={BACKUP_TYPE_TAG: "daily", KIND_TAG: "request", PRIORITY_TAG: REQUESTED_PRIORITY},
        )

    return scheduled_backups


def backup_run_request(
    db: DatabaseSettings, backup_id: str, tags: dict[str, str], run_key: str, lane: str | None = None
) -> dg.RunRequest:
    """A run of the database's dump, upload and verification for one backup (partition), in a lane of its
    server when given (the run queue lets one run per lane through at a time)."""
    target = DefinitionNames(db).run_target("backup")
    server = {SERVER_TAG: database_server(db)}
    return dg.RunRequest(
        run_key=run_key,
        job_name=target.named_job,
        asset_selection=[dg.AssetKey(p) for p in target.asset_selection] if target.asset_selection else None,
        partition_key=backup_id,
        tags={**tags, DATABASE_TAG: db.key, KIND_TAG: "backup", **server, **({LANE_TAG: lane} if lane else {})},
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


def batches_apply(settings: Settings, databases: list[DatabaseSettings]) -> bool:
    """A request naming several databases (a schedule's tick) is answered with backup_batch runs; one naming a
    single database, or the one database of a DATABASE_URL setup, with a run of its own."""
    return len(databases) > 1 and not any(DefinitionNames(db).has_named_jobs for db in databases)


def backup_assets_selection(settings: Settings) -> dg.AssetSelection:
    keys = [dg.AssetKey(p) for db in settings.databases for p in DefinitionNames(db).backup_selection]
    return dg.AssetSelection.assets(*keys)


def build_request_sensor(settings: Settings, named_backup_job=None) -> dg.SensorDefinition:
    """The one sensor answering every database's backup requests.

    With one database and its named backup_job the sensor starts that job; with several, it starts runs of
    each database's own assets (a sensor over an asset selection may, a named job may not, span databases).
    """
    target = (
        {"jobs": [named_backup_job]}
        if named_backup_job is not None
        else {"asset_selection": backup_assets_selection(settings)}
    )

    @dg.sensor(
        name=REQUEST_SENSOR,
        minimum_interval_seconds=REQUEST_SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Starts the backup run of the database named by each successful {REQUEST_JOB} run (from the UI, "
            "`dagster job launch`, `backup-db backup --no-wait` or a schedule's tick); requests naming several "
            f"databases are the {BATCH_SENSOR}'s."
        ),
        **target,
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
            requested = _requested_backups(record.dagster_run, settings, context.log)
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
        return _answer(run_requests, additions, cursor, "no backup requests waiting")

    return backup_request_sensor


def build_batch_sensor(settings: Settings, batch_job: dg.JobDefinition) -> dg.SensorDefinition:
    """The sensor answering requests that name several databases (a schedule's tick) with backup_batch runs:
    each server's databases in batches, each batch in a lane of its server, released over the jitter window.

    Each batch is released once (its number is kept in the cursor, and its run key is unique), with its
    databases' partitions added in the same SensorResult; a request whose batches are not all due yet keeps
    the cursor from moving past it.
    """

    @dg.sensor(
        name=BATCH_SENSOR,
        minimum_interval_seconds=REQUEST_SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        jobs=[batch_job],
        description=(
            f"Answers each successful {REQUEST_JOB} run naming several databases (a schedule's tick) with "
            f"{BATCH_JOB} runs: each server's databases a few to a run, at most server_max_runs of them at once "
            "per server, spread over schedule_jitter_minutes."
        ),
    )
    def backup_batch_sensor(context: dg.SensorEvaluationContext):
        state = _batch_cursor(context.cursor)
        # A second of overlap, as the request sensor has: a request finishing in the same instant as the last
        # one seen is looked at again, never missed; its released batches are in the cursor, so it is not
        # answered twice.
        after = datetime.fromtimestamp(state["after"] - 1, UTC) if state else datetime.now(UTC) - REQUEST_LOOKBACK
        released: dict[str, dict] = state.get("released", {}) if state else {}
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(job_name=REQUEST_JOB, statuses=[dg.DagsterRunStatus.SUCCESS], updated_after=after),
            limit=REQUESTS_PER_TICK,
            order_by="update_timestamp",
            ascending=True,
        )
        if not records:
            return dg.SkipReason("no backup requests waiting")
        now = datetime.now(UTC).timestamp()
        additions: dict[str, list[str]] = defaultdict(list)
        run_requests, cursor_at, holding, kept = [], None, False, {}
        for record in records:
            run = record.dagster_run
            requested = _requested_backups(run, settings, context.log)
            databases = [db for db, _, _ in requested]
            if batches_apply(settings, databases):
                backup_id, tags = requested[0][1], requested[0][2]
                done = set((released.get(run.run_id) or {}).get("done", []))
                batches = plan_batches(databases)
                started = _timestamp(record.create_timestamp)
                for number, batch in enumerate(batches):
                    if number in done or started + batch.delay_s > now:
                        continue
                    done.add(number)
                    for key in batch.keys:
                        additions[DefinitionNames(_by_key(settings, key)).partitions].append(backup_id)
                    run_requests.append(batch_run_request(run.run_id, number, batch, backup_id, tags))
                holding = holding or len(done) < len(batches)
                kept[run.run_id] = {"at": _timestamp(record.update_timestamp), "done": sorted(done)}
            if not holding:
                cursor_at = _timestamp(record.update_timestamp)
        after_ts = cursor_at if cursor_at is not None else (state or {}).get("after", now)
        # Kept: every request the cursor has not passed, and those within its second of overlap.
        cursor = json.dumps({"after": after_ts, "released": {k: v for k, v in kept.items() if v["at"] >= after_ts - 1}})
        return _answer(run_requests, additions, cursor, "no batch due")

    return backup_batch_sensor


def _answer(run_requests: list, additions: dict, cursor: str, nothing: str) -> dg.SensorResult:
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


def batch_run_request(request_run_id: str, number: int, batch, backup_id: str, tags: dict[str, str]) -> dg.RunRequest:
    """The backup_batch run of one batch of a request, in its server's lane."""
    return dg.RunRequest(
        run_key=f"{request_run_id}:batch:{number}",
        job_name=BATCH_JOB,
        run_config=batch_run_config(batch.keys),
        tags={
            **tags,
            KIND_TAG: "batch",
            BACKUP_ID_TAG: backup_id,
            SERVER_TAG: batch.server,
            LANE_TAG: batch.lane_name,
        },
    )


def _by_key(settings: Settings, key: str) -> DatabaseSettings:
    return next(db for db in settings.databases if db.key == key)


def _batch_cursor(cursor: str | None) -> dict | None:
    try:
        state = json.loads(cursor) if cursor else None
        return state if isinstance(state, dict) and "after" in state else None
    except ValueError:
        return None


def _timestamp(value) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


def _requested_backups(run: dg.DagsterRun, settings: Settings, log):
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
    minimum_interval_seconds: int = REQUEST_SENSOR_INTERVAL_S,
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
