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
from backup_pipeline.defs.alerts.run_sensors import failure_event
from backup_pipeline.defs.alerts.runs import database_name
from backup_pipeline.defs.names import ANNOUNCED_TAG, INCIDENT_SENSOR
from backup_pipeline.defs.run_lifecycle import run_database_and_kind, run_failure_error

INCIDENT_INTERVAL_S = 5
_ENDED = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]


def groups(settings: Settings, instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether the incident sensor tells of this failed run (a backup failing for a cause others may share)."""
    if settings.discord.group_seconds <= 0 or run.tags.get(ANNOUNCED_TAG):
        return False
    db, kind = run_database_and_kind(run, settings)
    return db is not None and kind == "backup" and cause_of(run_failure_error(instance, run.run_id).message) is not None


def outcome_of(settings: Settings, instance: dg.DagsterInstance, record) -> Outcome | None:
    run = record.dagster_run
    db, kind = run_database_and_kind(run, settings)
    if db is None or kind != "backup" or run.tags.get(ANNOUNCED_TAG):
        return None
    at = record.end_time or record.update_timestamp.timestamp()
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return Outcome(database=database_name(db), ok=True, at=at)
    error = run_failure_error(instance, run.run_id)
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
        run_id=run.run_id,
    )


def event_of(post: Post, settings: Settings, instance: dg.DagsterInstance) -> Event | None:
    """What a post says: an incident (or its end), or a lone failure told as the failure sensor would."""
    if post.incident is not None:
        return incident_event(post.incident, over=post.over)
    run = instance.get_run_by_id(post.run_id)
    return None if run is None else failure_event(run, settings, run_failure_error(instance, run.run_id))


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
        outcomes = [o for o in (outcome_of(settings, context.instance, r) for r in records) if o is not None]
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
