"""The incident sensor: backup failures that share a cause are posted as one message, their recovery as one.

The grouping itself is core/incidents.py (pure, over plain values); this sensor feeds it the backup runs that
ended since its last tick (public run records), keeps the open incidents in its cursor, and posts what it
returns. The failure sensor leaves the failures this sensor groups to it (`groups`).
"""

from __future__ import annotations

import json
import time

import dagster as dg

from backup_pipeline.core.config import Settings
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.incidents import SERVER_UNREACHABLE, Outcome, Post, cause_of, step
from backup_pipeline.core.notify.events import Event, first_line, incident_event
from backup_pipeline.core.notify.notifier import Notifier
from backup_pipeline.defs.alerts.batches import batch_failure_event, batch_outcomes, is_batch
from backup_pipeline.defs.alerts.run_sensors import failure_event
from backup_pipeline.defs.alerts.runs import database_name
from backup_pipeline.defs.names import ANNOUNCED_TAG, INCIDENT_SENSOR
from backup_pipeline.defs.run_lifecycle import run_database_and_kind, run_failure_error

INCIDENT_INTERVAL_S = 15  # well inside the grouping window (BACKUP_ALERT_GROUP_SECONDS, 60 by default)
_ENDED = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]


def grouping(settings: Settings, run: dg.DagsterRun) -> bool:
    """Whether failures of this run may be grouped (grouping is on, and the run did not announce itself)."""
    return settings.discord.group_seconds > 0 and not run.tags.get(ANNOUNCED_TAG)


def groups(settings: Settings, instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether the incident sensor tells of this failed run (a backup failing for a cause others may share)."""
    if not grouping(settings, run):
        return False
    db, kind = run_database_and_kind(run, settings)
    return db is not None and kind == "backup" and cause_of(run_failure_error(instance, run.run_id).message) is not None


def outcomes_of(settings: Settings, instance: dg.DagsterInstance, record) -> list[Outcome]:
    """How each database a finished run backed up ended: one for a run of its own, one per database of a batch."""
    run = record.dagster_run
    if run.tags.get(ANNOUNCED_TAG):
        return []
    at = record.end_time or record.update_timestamp.timestamp()
    if is_batch(run):
        return [
            outcome
            for batch in batch_outcomes(instance, run, settings)
            if (outcome := _outcome(settings, batch.db, run.run_id, at, batch.error)) is not None
        ]
    db, kind = run_database_and_kind(run, settings)
    if db is None or kind != "backup":
        return []
    ok = run.status == dg.DagsterRunStatus.SUCCESS
    outcome = _outcome(settings, db, run.run_id, at, None if ok else run_failure_error(instance, run.run_id))
    return [outcome] if outcome is not None else []


def _outcome(settings: Settings, db, run_id: str, at: float, error) -> Outcome | None:
    """A success (`error` None), or a failure whose cause others may share; None for any other failure."""
    if error is None:
        return Outcome(database=database_name(db), ok=True, at=at, key=db.key)
    cause = cause_of(error.message)
    if cause is None:
        return None
    if cause == SERVER_UNREACHABLE:
        try:
            where = db.target().server
        except BackupError:
            where = db.url_env
    else:
        where = settings.storage.describe()
    return Outcome(
        database=database_name(db),
        ok=False,
        at=at,
        cause=cause,
        where=where,
        error=first_line(error.message),
        run_id=run_id,
        key=db.key,
    )


def event_of(post: Post, settings: Settings, instance: dg.DagsterInstance) -> Event | None:
    """What a post says: an incident (or its end), or a lone failure told as the failure sensor would."""
    if post.incident is not None:
        return incident_event(post.incident, over=post.over)
    run = instance.get_run_by_id(post.run_id)
    if run is None:
        return None
    if is_batch(run):
        return batch_failure_event(instance, run, settings, post.key)
    return failure_event(run, settings, run_failure_error(instance, run.run_id))


def build_incident_sensor(settings: Settings, notifier: Notifier) -> dg.SensorDefinition | None:
    if settings.discord.group_seconds <= 0:
        return None

    @dg.sensor(
        name=INCIDENT_SENSOR,
        minimum_interval_seconds=INCIDENT_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING if notifier.configured else dg.DefaultSensorStatus.STOPPED,
        description=(
            "Posts backup failures that share a cause (a server unreachable, storage failing) within "
            "BACKUP_ALERT_GROUP_SECONDS as one message listing the databases, and one message when they all "
            "have a backup again."
        ),
    )
    def backup_incident_sensor(context: dg.SensorEvaluationContext):
        cursor = json.loads(context.cursor) if context.cursor else {"after": time.time(), "incidents": []}
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(statuses=_ENDED, updated_after=_datetime(cursor["after"])),
            order_by="update_timestamp",
            ascending=True,
        )
        outcomes = [o for r in records for o in outcomes_of(settings, context.instance, r)]
        after = max([cursor["after"], *(r.update_timestamp.timestamp() for r in records)])
        state, posts = step(cursor, sorted(outcomes, key=lambda o: o.at), time.time(), settings.discord.group_seconds)
        for post in posts:
            event = event_of(post, settings, context.instance)
            if event is not None:
                notifier.notify([event], log=context.log)
        context.update_cursor(json.dumps({"after": after, **state}))
        if not posts:
            return dg.SkipReason(f"{len(state['incidents'])} incident(s) open, nothing to post")

    return backup_incident_sensor


def _datetime(timestamp: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC)
