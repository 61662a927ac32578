"""The schedules: one per distinct cron, each tick requesting a backup of every database on it."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.defs.automation.backup_requests import REQUESTED_PRIORITY
from backup_pipeline.defs.names import (
    BACKUP_TYPE_TAG,
    KIND_TAG,
    PRIORITY_TAG,
    REQUEST_JOB,
    REQUEST_OP,
    schedule_name,
)


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
