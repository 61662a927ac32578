"""Run-status sensors that tell Discord about runs: every failure, and each backup that completed.

They run in the daemon, so a run our code never reached (a crash, a run killed by the run monitor, a failure
before the first step) is reported too, and a slow or absent Discord can never hold up a backup.
"""

from collections.abc import Callable, Sequence

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.health import HEALTH_CHECKS
from backup_pipeline.defs.alerts.batches import batch_messages, is_batch
from backup_pipeline.defs.alerts.discord import DiscordClient
from backup_pipeline.defs.alerts.messages import RunFacts, failure_text, health_warning, success_text
from backup_pipeline.defs.alerts.runs import (
    asset_check_evaluations,
    failure_error,
    materialization_metadata,
    run_facts,
)
from backup_pipeline.defs.names import ANNOUNCED_TAG, QUIET_TAG, DefinitionNames, run_url
from backup_pipeline.defs.run_lifecycle import run_database_and_kind, run_failure_error

RUN_SENSOR_INTERVAL_S = 5
FailureTextFn = Callable[[dg.RunFailureSensorContext], str]
# The messages of a run that concerned several databases (one each), or None for any other run.
ManyMessagesFn = Callable[[dg.DagsterInstance, dg.DagsterRun], list[str] | None]


def default_failure_text(webserver_base_url: str | None) -> FailureTextFn:
    def text(context: dg.RunFailureSensorContext) -> str:
        run = context.dagster_run
        facts = RunFacts(job=run.job_name, run_id=run.run_id, run_url=run_url(webserver_base_url, run.run_id))
        return failure_text(facts, failure_error(context))

    return text


def make_discord_on_run_failure_sensor(
    client: DiscordClient,
    text_fn: FailureTextFn | None = None,
    redact: Callable[[str], str] = lambda text: text,
    name: str = "discord_on_run_failure",
    webserver_base_url: str | None = None,
    minimum_interval_seconds: int = RUN_SENSOR_INTERVAL_S,
    monitored_jobs: Sequence | None = None,
    default_status: dg.DefaultSensorStatus | None = None,
    many_messages_fn: ManyMessagesFn | None = None,
    grouped: Callable[[dg.DagsterInstance, dg.DagsterRun], bool] = lambda instance, run: False,
) -> dg.SensorDefinition:
    """A sensor that posts to Discord when a run fails; shaped like dagster-slack's make_slack_on_run_failure_sensor.

    Without monitored_jobs it watches every job of this code location. A failure `grouped` says another sensor
    tells of (the incident sensor) is left to it. It is RUNNING by default when the
    client is configured; every message goes through `redact` before it is sent.
    """
    text_fn = text_fn or default_failure_text(webserver_base_url)
    if default_status is None:
        default_status = dg.DefaultSensorStatus.RUNNING if client.configured else dg.DefaultSensorStatus.STOPPED

    @dg.run_failure_sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        monitored_jobs=monitored_jobs,
        monitor_all_code_locations=False,
        default_status=default_status,
        description=(
            "Posts to Discord when any run of this code location fails: job, database, backup, the first line "
            "of the error and a link to the run. Configure DISCORD_WEBHOOK_URL, or DISCORD_BOT_TOKEN and "
            "DISCORD_BACKUP_CHANNEL_ID."
        ),
    )
    def discord_on_run_failure(context: dg.RunFailureSensorContext):
        if not client.configured:
            return dg.SkipReason("Discord is not configured: set DISCORD_WEBHOOK_URL or DISCORD_BOT_TOKEN")
        if context.dagster_run.tags.get(ANNOUNCED_TAG):
            return dg.SkipReason(f"run {context.dagster_run.run_id} was announced by the process that ran it")
        if grouped(context.instance, context.dagster_run):
            return dg.SkipReason(f"run {context.dagster_run.run_id} is told of by the incident sensor")
        many = many_messages_fn(context.instance, context.dagster_run) if many_messages_fn else None
        for text in [text_fn(context)] if many is None else many:
            delivered = client.post(redact(text), log=context.log)
            context.log.info(f"failure of run {context.dagster_run.run_id} {'posted' if delivered else 'NOT posted'}")

    return discord_on_run_failure


def backup_failure_text(settings: Settings) -> FailureTextFn:
    """Failure text that names the database and backup of our own jobs."""

    def text(context: dg.RunFailureSensorContext) -> str:
        return failure_text(run_facts(context.dagster_run, settings), failure_error(context))

    return text


def make_discord_on_backup_success_sensor(
    client: DiscordClient,
    settings: Settings,
    redact: Callable[[str], str] = lambda text: text,
    name: str = "discord_on_backup_success",
    minimum_interval_seconds: int = RUN_SENSOR_INTERVAL_S,
) -> dg.SensorDefinition:
    """Posts a notice for each successful backup_job run (type, file, size, duration, verified), and a warning
    when the backup failed a health check (those are posted even for quiet runs and with notices off)."""
    notices = client.configured and settings.discord.success_notices

    @dg.run_status_sensor(
        name=name,
        run_status=dg.DagsterRunStatus.SUCCESS,
        minimum_interval_seconds=minimum_interval_seconds,
        monitor_all_code_locations=False,
        default_status=dg.DefaultSensorStatus.RUNNING if client.configured else dg.DefaultSensorStatus.STOPPED,
        description=(
            "Posts a notice to Discord for each completed backup run of any database (type, file, size, duration, "
            f"verified), and a warning when it failed a health check. Skips the notice of runs tagged {QUIET_TAG}; "
            "BACKUP_DISCORD_SUCCESS_NOTICES=false keeps only the warnings."
        ),
    )
    def discord_on_backup_success(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        if is_batch(run):
            if not client.configured:
                return dg.SkipReason("Discord is not configured")
            for text in batch_messages(context.instance, run, settings, notices and not is_quiet(run)):
                client.post(redact(text), log=context.log)
            return
        db, kind = run_database_and_kind(run, settings)
        if db is None or kind != "backup":
            return  # not a backup: nothing to announce
        if not client.configured:
            return dg.SkipReason("Discord is not configured")
        if run.tags.get(ANNOUNCED_TAG):
            return dg.SkipReason(f"run {run.run_id} was announced by the process that ran it")
        warning = health_warning_text(context.instance, run, settings)
        if warning is not None:
            delivered = client.post(redact(warning), log=context.log)
            context.log.info(f"health warning for run {run.run_id} {'posted' if delivered else 'NOT posted'}")
        if not notices:
            return dg.SkipReason("success notices are off (BACKUP_DISCORD_SUCCESS_NOTICES=false)")
        skipped = success_notice_skipped(run)
        if skipped:
            return dg.SkipReason(skipped)
        delivered = client.post(redact(backup_success_text(context.instance, run, settings, db)), log=context.log)
        context.log.info(f"backup notice for run {run.run_id} {'posted' if delivered else 'NOT posted'}")

    return discord_on_backup_success


def health_warning_text(instance: dg.DagsterInstance, run: dg.DagsterRun, settings: Settings) -> str | None:
    """The warning for a backup run's failed health checks, or None when they all passed."""
    failed = [
        (check.check_name, check.description or "")
        for check in asset_check_evaluations(instance, run.run_id)
        if not check.passed and check.check_name in HEALTH_CHECKS
    ]
    return health_warning(run_facts(run, settings), failed) if failed else None


def is_quiet(run: dg.DagsterRun) -> bool:
    return run.tags.get(QUIET_TAG, "").lower() not in ("", "false", "0")


def success_notice_skipped(run: dg.DagsterRun) -> str | None:
    """Why the sensor posts no notice for a completed backup, if it posts none."""
    if is_quiet(run):
        return f"run {run.run_id} is tagged {QUIET_TAG}"
    if run.tags.get(ANNOUNCED_TAG):
        return f"run {run.run_id} was announced by the process that ran it"
    return None


def run_notice_text(instance: dg.DagsterInstance, run: dg.DagsterRun, settings: Settings) -> str | None:
    """What the sensors would post for a finished run, for a run no sensor watches: its failure, or the notice of
    a completed backup (unless quiet or notices are off); None when there is nothing to say."""
    if run.status == dg.DagsterRunStatus.FAILURE:
        return failure_text(run_facts(run, settings), run_failure_error(instance, run.run_id))
    db, kind = run_database_and_kind(run, settings)
    if run.status != dg.DagsterRunStatus.SUCCESS or db is None or kind != "backup":
        return None
    warning = health_warning_text(instance, run, settings)
    if is_quiet(run) or not settings.discord.success_notices:
        return warning
    notice = backup_success_text(instance, run, settings, db)
    return f"{warning}\n\n{notice}" if warning else notice


def backup_success_text(
    instance: dg.DagsterInstance, run: dg.DagsterRun, settings: Settings, db: DatabaseSettings
) -> str:
    names = DefinitionNames(db)
    metadata = materialization_metadata(instance, run.run_id)
    stored = metadata.get(dg.AssetKey(names.asset_path("offsite_backup")), {})
    verification = metadata.get(dg.AssetKey(names.asset_path("restore_verification")), {})
    record = instance.get_run_record_by_id(run.run_id)  # its start and end times: public, unlike run stats
    timed = record is not None and record.start_time and record.end_time
    duration = record.end_time - record.start_time if timed else stored.get("duration_s")
    return success_text(
        run_facts(run, settings),
        file_name=f"{stored['name']}.dump" if stored.get("name") else None,
        size_bytes=stored.get("size_bytes"),
        duration_s=duration,
        verified=bool(verification.get("verified")),
        rows=verification.get("rows"),
    )
