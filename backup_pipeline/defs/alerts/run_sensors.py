"""Run-status sensors that tell every configured channel about runs: every failure, and each backup that
completed. (Their names keep the `discord_` of the first channel: a deployment's sensor state is stored by
name.)

They run in the daemon, so a run our code never reached (a crash, a run killed by the run monitor, a failure
before the first step) is reported too, and a slow or absent channel can never hold up a backup.
"""

from collections.abc import Callable, Sequence

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.health import HEALTH_CHECKS
from backup_pipeline.core.notify.events import BackupFacts, Event, RunFacts
from backup_pipeline.core.notify.notifier import Notifier
from backup_pipeline.defs.alerts.batches import batch_events, is_batch
from backup_pipeline.defs.alerts.runs import (
    asset_check_evaluations,
    failure_error,
    materialization_metadata,
    run_facts,
)
from backup_pipeline.defs.names import ANNOUNCED_TAG, QUIET_TAG, DefinitionNames, run_url
from backup_pipeline.defs.run_lifecycle import run_database_and_kind, run_failure_error

# Alerts within about 15 s. Each evaluation costs the daemon a tick and the code server a Dagster instance made
# for it; six sensors every 5 s kept a core a fifth busy on an idle deployment.
RUN_SENSOR_INTERVAL_S = 15
FailureEventFn = Callable[[dg.RunFailureSensorContext], Event]
# The events of a run that concerned several databases (one message each), or None for any other run.
ManyEventsFn = Callable[[dg.DagsterInstance, dg.DagsterRun], list[Event] | None]
CHANNELS_HINT = "DISCORD_WEBHOOK_URL (or DISCORD_BOT_TOKEN and DISCORD_BACKUP_CHANNEL_ID) or BACKUP_NOTIFY_URLS"


def default_failure_event(webserver_base_url: str | None) -> FailureEventFn:
    def event(context: dg.RunFailureSensorContext) -> Event:
        run = context.dagster_run
        facts = RunFacts(job=run.job_name, run_id=run.run_id, run_url=run_url(webserver_base_url, run.run_id))
        return Event.failure(facts, failure_error(context))

    return event


def backup_failure_event(settings: Settings) -> FailureEventFn:
    """The failure of a run, naming the database and backup of our own jobs."""

    def event(context: dg.RunFailureSensorContext) -> Event:
        return failure_event(context.dagster_run, settings, failure_error(context))

    return event


def failure_event(run: dg.DagsterRun, settings: Settings, error) -> Event:
    db, _ = run_database_and_kind(run, settings)
    return Event.failure(run_facts(run, settings), error, database_key=db.key if db else None)


def make_discord_on_run_failure_sensor(
    notifier: Notifier,
    event_fn: FailureEventFn | None = None,
    name: str = "discord_on_run_failure",
    webserver_base_url: str | None = None,
    minimum_interval_seconds: int = RUN_SENSOR_INTERVAL_S,
    monitored_jobs: Sequence | None = None,
    default_status: dg.DefaultSensorStatus | None = None,
    many_events_fn: ManyEventsFn | None = None,
    grouped: Callable[[dg.DagsterInstance, dg.DagsterRun], bool] | None = None,
) -> dg.SensorDefinition:
    """A sensor that tells every channel when a run fails; shaped like dagster-slack's
    make_slack_on_run_failure_sensor.

    Without monitored_jobs it watches every job of this code location. A failure `grouped` says another sensor
    tells of (the incident sensor) is left to it. It is RUNNING by default when a channel
    is configured; every message is redacted before it is sent.
    """
    event_fn = event_fn or default_failure_event(webserver_base_url)
    if default_status is None:
        default_status = dg.DefaultSensorStatus.RUNNING if notifier.configured else dg.DefaultSensorStatus.STOPPED

    @dg.run_failure_sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        monitored_jobs=monitored_jobs,
        monitor_all_code_locations=False,
        default_status=default_status,
        description=(
            "Tells every configured channel (Discord, BACKUP_NOTIFY_URLS) when any run of this code location fails: "
            f"job, database, backup, the first line of the error and a link to the run. Configure {CHANNELS_HINT}."
        ),
    )
    def discord_on_run_failure(context: dg.RunFailureSensorContext):
        if not notifier.configured:
            return dg.SkipReason(f"no channel is configured: set {CHANNELS_HINT}")
        if context.dagster_run.tags.get(ANNOUNCED_TAG):
            return dg.SkipReason(f"run {context.dagster_run.run_id} was announced by the process that ran it")
        if grouped is not None and grouped(context.instance, context.dagster_run):
            return dg.SkipReason(f"run {context.dagster_run.run_id} is told of by the incident sensor")
        many = many_events_fn(context.instance, context.dagster_run) if many_events_fn else None
        for event in [event_fn(context)] if many is None else many:
            delivered = notifier.notify([event], log=context.log)
            context.log.info(f"failure of run {context.dagster_run.run_id} {'posted' if delivered else 'NOT posted'}")

    return discord_on_run_failure


def make_discord_on_backup_success_sensor(
    notifier: Notifier,
    settings: Settings,
    name: str = "discord_on_backup_success",
    minimum_interval_seconds: int = RUN_SENSOR_INTERVAL_S,
) -> dg.SensorDefinition:
    """Posts a notice for each successful backup_job run (type, file, size, duration, verified), and a warning
    when the backup failed a health check (those are posted even for quiet runs and with notices off)."""
    notices = notifier.configured and notifier.success_notices

    @dg.run_status_sensor(
        name=name,
        run_status=dg.DagsterRunStatus.SUCCESS,
        minimum_interval_seconds=minimum_interval_seconds,
        monitor_all_code_locations=False,
        default_status=dg.DefaultSensorStatus.RUNNING if notifier.configured else dg.DefaultSensorStatus.STOPPED,
        description=(
            "Tells every configured channel of each completed backup run of any database (type, file, size, "
            f"duration, verified), and warns when it failed a health check. Skips the notice of runs tagged "
            f"{QUIET_TAG}; BACKUP_DISCORD_SUCCESS_NOTICES=false keeps only the warnings."
        ),
    )
    def discord_on_backup_success(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        if is_batch(run):
            if not notifier.configured:
                return dg.SkipReason("no channel is configured")
            for event in batch_events(context.instance, run, settings, notices and not is_quiet(run)):
                notifier.notify([event], log=context.log)
            return
        db, kind = run_database_and_kind(run, settings)
        if db is None or kind != "backup":
            return  # not a backup: nothing to announce
        if not notifier.configured:
            return dg.SkipReason("no channel is configured")
        if run.tags.get(ANNOUNCED_TAG):
            return dg.SkipReason(f"run {run.run_id} was announced by the process that ran it")
        warning = health_warning_event(context.instance, run, settings, db)
        if warning is not None:
            delivered = notifier.notify([warning], log=context.log)
            context.log.info(f"health warning for run {run.run_id} {'posted' if delivered else 'NOT posted'}")
        if not notices:
            return dg.SkipReason("success notices are off (BACKUP_DISCORD_SUCCESS_NOTICES=false)")
        skipped = success_notice_skipped(run)
        if skipped:
            return dg.SkipReason(skipped)
        delivered = notifier.notify([backup_success_event(context.instance, run, settings, db)], log=context.log)
        context.log.info(f"backup notice for run {run.run_id} {'posted' if delivered else 'NOT posted'}")

    return discord_on_backup_success


def health_warning_event(
    instance: dg.DagsterInstance, run: dg.DagsterRun, settings: Settings, db: DatabaseSettings
) -> Event | None:
    """The warning for a backup run's failed health checks, or None when they all passed."""
    failed = [
        (check.check_name, check.description or "")
        for check in asset_check_evaluations(instance, run.run_id)
        if not check.passed and check.check_name in HEALTH_CHECKS
    ]
    return Event.health_warning(run_facts(run, settings), failed, database_key=db.key) if failed else None


def is_quiet(run: dg.DagsterRun) -> bool:
    return run.tags.get(QUIET_TAG, "").lower() not in ("", "false", "0")


def success_notice_skipped(run: dg.DagsterRun) -> str | None:
    """Why the sensor posts no notice for a completed backup, if it posts none."""
    if is_quiet(run):
        return f"run {run.run_id} is tagged {QUIET_TAG}"
    if run.tags.get(ANNOUNCED_TAG):
        return f"run {run.run_id} was announced by the process that ran it"
    return None


def run_notice_events(instance: dg.DagsterInstance, run: dg.DagsterRun, settings: Settings) -> list[Event]:
    """What the sensors would tell of a finished run, for a run no sensor watches: its failure, or the notice of
    a completed backup (unless quiet or notices are off) after any health warning; empty when nothing."""
    if run.status == dg.DagsterRunStatus.FAILURE:
        return [failure_event(run, settings, run_failure_error(instance, run.run_id))]
    db, kind = run_database_and_kind(run, settings)
    if run.status != dg.DagsterRunStatus.SUCCESS or db is None or kind != "backup":
        return []
    warning = health_warning_event(instance, run, settings, db)
    events = [warning] if warning else []
    if not is_quiet(run) and settings.discord.success_notices:
        events.append(backup_success_event(instance, run, settings, db))
    return events


def backup_success_event(
    instance: dg.DagsterInstance, run: dg.DagsterRun, settings: Settings, db: DatabaseSettings
) -> Event:
    names = DefinitionNames(db)
    metadata = materialization_metadata(instance, run.run_id)
    stored = metadata.get(dg.AssetKey(names.asset_path("offsite_backup")), {})
    verification = metadata.get(dg.AssetKey(names.asset_path("restore_verification")), {})
    record = instance.get_run_record_by_id(run.run_id)  # its start and end times: public, unlike run stats
    timed = record is not None and record.start_time and record.end_time
    duration = record.end_time - record.start_time if timed else stored.get("duration_s")
    backup = BackupFacts(
        file_name=f"{stored['name']}.dump" if stored.get("name") else None,
        size_bytes=stored.get("size_bytes"),
        duration_s=duration,
        verified=bool(verification.get("verified")),
        rows=verification.get("rows"),
    )
    return Event.success(run_facts(run, settings), backup, database_key=db.key)
