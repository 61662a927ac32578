"""The batch sensor: answers requests naming several databases (a schedule's tick) with backup_batch runs,
each server's databases in batches released over the jitter window."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.servers import plan_batches
from backup_pipeline.defs.automation.backup_requests import (
    REQUEST_LOOKBACK,
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
    KIND_TAG,
    LANE_TAG,
    REQUEST_JOB,
    SERVER_TAG,
    DefinitionNames,
)

# A tick's request is answered within 10 s, each batch released within 10 s of its time in the jitter window.
BATCH_SENSOR_INTERVAL_S = 10


def build_batch_sensor(settings: Settings, batch_job: dg.JobDefinition) -> dg.SensorDefinition:
    """The sensor answering requests that name several databases (a schedule's tick) with backup_batch runs:
    each server's databases in batches, each batch in a lane of its server, released over the jitter window.

    Each batch is released once (its number is kept in the cursor, and its run key is unique), with its
    databases' partitions added in the same SensorResult; a request whose batches are not all due yet keeps
    the cursor from moving past it.
    """

    @dg.sensor(
        name=BATCH_SENSOR,
        minimum_interval_seconds=BATCH_SENSOR_INTERVAL_S,
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
            requested = requested_backups(run, settings, context.log)
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
        return sensor_answer(run_requests, additions, cursor, "no batch due")

    return backup_batch_sensor


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
