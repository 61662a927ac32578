"""The Discord sensors evaluated directly against real runs: failure and success messages, quiet runs,
secrets kept out, Discord trouble never touching a backup, the dead-man's switch, refused retention.

Discord is the loopback stand-in (tests.support.discord_stub); runs are real, in a temporary DAGSTER_HOME.
"""

import json
import os
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from backup_pipeline.core.names import BackupId
from backup_pipeline.defs.alerts.freshness import FRESHNESS_CHECK, AlarmState
from backup_pipeline.defs.names import QUIET_TAG
from tests.support.alert_env import CHANNEL_ID, WEBSERVER_URL, alert_env, password_role  # noqa: F401
from tests.support.discord_stub import discord_stub  # noqa: F401
from tests.support.pipeline import failure_message, load_defs, run_backup
from tests.support.processes import free_port
from tests.support.seed import SEED_COUNTS


def _database(env) -> str:
    return env.values["DATABASE_URL"].rsplit("/", 1)[1]


def _evaluate_run_sensor(defs: dg.Definitions, name: str, instance: dg.DagsterInstance, result):
    event = result.get_run_failure_event() if not result.success else result.get_run_success_event()
    context = dg.build_run_status_sensor_context(
        sensor_name=name, dagster_event=event, dagster_instance=instance, dagster_run=result.dagster_run
    )
    return defs.get_sensor_def(name)(context)


def _evaluate_freshness(defs: dg.Definitions, instance, cursor=None):
    """One tick, evaluated the way the daemon does it; returns SensorExecutionData (asset_events, cursor)."""
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources) as context:
        return defs.get_sensor_def("backup_freshness_sensor").evaluate_tick(context)


def test_a_backup_posts_one_notice_and_its_failed_rerun_one_failure_message(alert_env):
    instance = dg.DagsterInstance.get()
    defs = load_defs()
    database = _database(alert_env)
    result, backup_id = run_backup(instance, "pre-migration", defs=defs)
    assert result.success, failure_message(result)

    _evaluate_run_sensor(defs, "discord_on_backup_success", instance, result)
    [notice] = alert_env.stub.messages
    assert f"Database backup complete** (`{database}`)" in notice
    assert "Type: pre-migration" in notice
    assert f"File: `{database}_{backup_id}.dump`" in notice
    assert "Size: " in notice and ("KB" in notice or "MB" in notice)
    assert "Duration: " in notice
    assert f"Verified: yes (restored into a scratch database, {sum(SEED_COUNTS.values()):,} rows match" in notice
    assert f"Run: {WEBSERVER_URL}/runs/{result.run_id}" in notice
    [request] = alert_env.stub.requests
    assert request.path == f"/channels/{CHANNEL_ID}/messages"
    assert request.headers["Authorization"] == f"Bot {alert_env.secrets['bot token']}"
    assert request.body["allowed_mentions"] == {"parse": []}  # an error text can never ping @everyone

    # Running the same partition again fails: a backup is never overwritten.
    again = defs.resolve_job_def("backup_job").execute_in_process(
        instance=instance, partition_key=backup_id, raise_on_error=False
    )
    assert not again.success
    _evaluate_run_sensor(defs, "discord_on_run_failure", instance, again)

    assert len(alert_env.stub.messages) == 2
    failure = alert_env.stub.messages[1]
    assert f"Database backup failed** (`{database}`)" in failure
    assert "Job: `backup_job`" in failure
    assert f"Backup: `{database}_{backup_id}` (pre-migration)" in failure
    assert "Error: " in failure and "already exists" in failure and "never overwritten" in failure
    assert f"Logs: {WEBSERVER_URL}/runs/{again.run_id}" in failure
    assert [alert_env.leaked(m) for m in alert_env.stub.messages] == [[], []]


def test_quiet_runs_and_switched_off_notices_post_nothing(alert_env, clean_env):
    instance = dg.DagsterInstance.get()
    defs = load_defs()
    backup_id = str(BackupId.new("pre-migration"))
    instance.add_dynamic_partitions("backups", [backup_id])
    quiet = defs.resolve_job_def("backup_job").execute_in_process(
        instance=instance, partition_key=backup_id, tags={QUIET_TAG: "true"}
    )
    assert quiet.success
    skipped = _evaluate_run_sensor(defs, "discord_on_backup_success", instance, quiet)
    assert isinstance(skipped, dg.SkipReason) and QUIET_TAG in skipped.skip_message

    clean_env.setenv("BACKUP_DISCORD_SUCCESS_NOTICES", "false")
    switched_off = load_defs()
    sensor = switched_off.get_sensor_def("discord_on_backup_success")
    # Still running: health warnings are posted with notices off.
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    skipped = _evaluate_run_sensor(switched_off, "discord_on_backup_success", instance, quiet)
    assert isinstance(skipped, dg.SkipReason) and "BACKUP_DISCORD_SUCCESS_NOTICES=false" in skipped.skip_message
    assert alert_env.stub.messages == [] and alert_env.stub.requests == []


def test_an_error_quoting_credentials_reaches_discord_masked(alert_env):
    """A library error that echoes a connection string, a secret key and a token (as some do)."""

    @dg.op
    def connect_somewhere():
        raise RuntimeError(
            f"could not use {os.environ['DATABASE_URL']} with key {os.environ['AWS_SECRET_ACCESS_KEY']} "
            f"(Authorization: Bot {os.environ['DISCORD_BOT_TOKEN']})"
        )

    @dg.job
    def leaky_job():
        connect_somewhere()

    instance = dg.DagsterInstance.get()
    result = leaky_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    _evaluate_run_sensor(load_defs(), "discord_on_run_failure", instance, result)

    [message] = alert_env.stub.messages
    assert "Error: RuntimeError: could not use postgresql://" in message and "***" in message
    assert alert_env.leaked(message) == []


def test_discord_trouble_is_logged_and_never_touches_the_backup(alert_env, clean_env, capsys):
    instance = dg.DagsterInstance.get()
    defs = load_defs()
    result, backup_id = run_backup(instance, "manual", defs=defs)
    assert result.success, failure_message(result)
    closed_port_defs = None

    for trouble, responses, logged in [
        ("500 three times", [500, 500, 500], "HTTP 500 (stub answered 500) after 3 attempt(s)"),
        ("429 longer than we wait", [(429, 30.0)], "HTTP 429 (You are being rate limited.) after 1 attempt(s)"),
        ("not listening", [], "ConnectionError (no answer)"),
    ]:
        alert_env.stub.clear()
        alert_env.stub.set_responses(responses)
        if trouble == "not listening":
            clean_env.setenv("DISCORD_API_BASE_URL", f"http://127.0.0.1:{free_port()}/api")
            closed_port_defs = load_defs()
        capsys.readouterr()
        started = time.monotonic()
        _evaluate_run_sensor(closed_port_defs or defs, "discord_on_backup_success", instance, result)  # no raise
        elapsed = time.monotonic() - started

        assert alert_env.stub.messages == [], trouble
        assert len(alert_env.stub.requests) == len(responses), trouble  # 500 retried; a long 429 not waited
        assert elapsed < 10, f"{trouble}: Discord held the sensor for {elapsed:.1f} s"
        log = capsys.readouterr().err
        assert "Discord alert not sent to Discord channel" in log and logged in log, (trouble, log)
        assert "NOT posted" in log and alert_env.leaked(log) == [], trouble

    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS

    # A short rate limit is waited out and the message delivered.
    alert_env.stub.clear()
    alert_env.stub.set_responses([(429, 0.3)])
    _evaluate_run_sensor(defs, "discord_on_backup_success", instance, result)
    first, second = alert_env.stub.requests
    assert (first.status, second.status) == (429, 200) and second.at - first.at >= 0.3
    [message] = alert_env.stub.messages
    assert backup_id in message


def test_dead_mans_switch_fires_at_27_hours_not_at_25_and_refused_retention_is_announced(alert_env, clean_env):
    # Retention that would delete both backups below (older than a day, none kept by count): it must refuse.
    clean_env.setenv("BACKUP_RETENTION_DAYS", "1")
    clean_env.setenv("BACKUP_KEEP_LAST", "0")
    instance = dg.DagsterInstance.get()
    defs = load_defs()
    now = datetime.now(UTC)
    stale, stale_id = run_backup(instance, "daily", str(BackupId.new("daily", now - timedelta(hours=27))), defs=defs)
    assert stale.success, failure_message(stale)
    # The check also runs in the backup run itself (an unpartitioned check on the partitioned asset).
    [in_run] = [e for e in stale.get_asset_check_evaluations() if e.check_name == FRESHNESS_CHECK]
    assert not in_run.passed

    result = _evaluate_freshness(defs, instance)
    [alert] = alert_env.stub.messages
    assert f"No verified backup of `{_database(alert_env)}` in the last 26 hours" in alert
    assert f"{stale_id}" in alert and "27.0 h old" in alert
    assert f"{WEBSERVER_URL}/assets/restore_verification" in alert
    [evaluation] = result.asset_events
    assert evaluation.check_name == FRESHNESS_CHECK and evaluation.passed is False

    # While it lasts: quiet on the next ticks, again once the repeat interval has passed.
    _evaluate_freshness(defs, instance, cursor=result.cursor)
    assert len(alert_env.stub.messages) == 1
    state = json.loads(result.cursor)  # one alarm state per database, by key
    state["default"]["alerted_at"] = (now - timedelta(hours=7)).isoformat()
    repeated = _evaluate_freshness(defs, instance, cursor=json.dumps(state))
    assert len(alert_env.stub.messages) == 2 and "27.0 h old" in alert_env.stub.messages[1]

    fresh, fresh_id = run_backup(instance, "daily", str(BackupId.new("daily", now - timedelta(hours=25))), defs=defs)
    assert fresh.success, failure_message(fresh)
    cleared = _evaluate_freshness(defs, instance, cursor=repeated.cursor)
    assert len(alert_env.stub.messages) == 3 and "fresh again" in alert_env.stub.messages[2]
    assert AlarmState.from_dict(json.loads(cleared.cursor)["default"]).alerted_at is None
    [evaluation] = cleared.asset_events
    assert evaluation.passed is True and evaluation.metadata["newest_verified_backup"].value.endswith(fresh_id)

    # A 25-hour-old backup seen from scratch: no alert at all.
    quiet = _evaluate_freshness(defs, instance)
    assert len(alert_env.stub.messages) == 3 and quiet.asset_events[0].passed is True

    prune = defs.resolve_job_def("prune_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not prune.success
    _evaluate_run_sensor(defs, "discord_on_run_failure", instance, prune)
    assert len(alert_env.stub.messages) == 4
    refused = alert_env.stub.messages[3]
    assert f":warning: **Retention refused to prune** `{_database(alert_env)}`: nothing was deleted" in refused
    assert "would delete 2 of 2 backups" in refused
    assert f"{WEBSERVER_URL}/runs/{prune.run_id}" in refused
    assert all(alert_env.leaked(m) == [] for m in alert_env.stub.messages)


def test_sensors_run_by_default_only_once_discord_is_configured(alert_env, clean_env):
    configured = load_defs()
    for name in ("discord_on_run_failure", "discord_on_backup_success", "backup_freshness_sensor"):
        assert configured.get_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING
    for name in ("DISCORD_BOT_TOKEN", "DISCORD_BACKUP_CHANNEL_ID"):
        clean_env.delenv(name)
    unconfigured = load_defs()
    for name in ("discord_on_run_failure", "discord_on_backup_success"):
        assert unconfigured.get_sensor_def(name).default_status == dg.DefaultSensorStatus.STOPPED


def test_a_backup_stamped_in_the_future_does_not_silence_the_switch_and_the_breaker_refusal_alerts(
    alert_env, clean_env
):
    clean_env.setenv("BACKUP_RETENTION_DAYS", "1")
    clean_env.setenv("BACKUP_KEEP_LAST", "1")
    instance = dg.DagsterInstance.get()
    defs = load_defs()
    now = datetime.now(UTC)
    ids = {}
    for label, at in (("older", now - timedelta(days=3)), ("stale", now - timedelta(hours=27))):
        result, ids[label] = run_backup(instance, "daily", str(BackupId.new("daily", at)), defs=defs)
        assert result.success, failure_message(result)
    # A host whose clock ran ten days ahead took one: it must not count as today's backup.
    future, ids["future"] = run_backup(
        instance, "daily", str(BackupId.new("daily", now + timedelta(days=10))), defs=defs
    )
    assert future.success, failure_message(future)

    result = _evaluate_freshness(defs, instance)
    [alert] = alert_env.stub.messages
    assert f"No verified backup of `{_database(alert_env)}` in the last 26 hours" in alert
    assert ids["stale"] in alert and "27.0 h old" in alert
    assert "Ignored 1 backup(s) stamped in the future (clock skew?)" in alert and ids["future"] in alert
    [evaluation] = result.asset_events
    assert evaluation.passed is False and "ignored 1 backup(s) stamped in the future" in evaluation.description

    # Backups are failing: retention keeps the 3-day-old backup it would otherwise delete, fails, and says so.
    prune = defs.resolve_job_def("prune_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not prune.success and "circuit breaker" in failure_message(prune)
    _evaluate_run_sensor(defs, "discord_on_run_failure", instance, prune)
    refused = alert_env.stub.messages[1]
    assert f":warning: **Retention refused to prune** `{_database(alert_env)}`: nothing was deleted" in refused
    assert "circuit breaker" in refused and "older than the 26 h freshness window" in refused
    listing = [str(e.name.id) for e in _catalog_entries(defs)]
    assert set(ids.values()) <= set(listing)


def _catalog_entries(defs):
    from backup_pipeline.core.catalog import BackupCatalog
    from backup_pipeline.core.config_loading import load_settings
    from backup_pipeline.core.postgres import PostgresTarget
    from backup_pipeline.core.storage import open_storage

    settings = load_settings()
    db = settings.databases[0]
    return BackupCatalog(
        open_storage(settings.storage),
        db.storage_prefix,
        PostgresTarget.from_url(os.environ[db.url_env]).dbname,
    ).entries()
