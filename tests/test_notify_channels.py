"""Every channel hears the same events: Discord (the loopback stand-in) and apprise URLs (BACKUP_NOTIFY_URLS)
whose receivers are real HTTP servers on loopback (json:// and form://). Each renders them its own way; the
tokens in the URLs never reach a log."""

import logging
import secrets

import dagster as dg
import pytest

from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.notify.events import BackupFacts, Event, FreshnessFacts, RunError, RunFacts
from backup_pipeline.core.notify.notifier import Notifier
from tests.support.alert_env import alert_env, password_role  # noqa: F401
from tests.support.discord_stub import discord_stub  # noqa: F401
from tests.support.http_recorder import http_recorder, second_http_recorder  # noqa: F401
from tests.support.pipeline import failure_message, load_defs, run_backup
from tests.support.seed import SEED_COUNTS


def _token() -> str:
    return f"tok-{secrets.token_hex(12)}"


def _evaluate(defs, name, instance, result):
    event = result.get_run_failure_event() if not result.success else result.get_run_success_event()
    context = dg.build_run_status_sensor_context(
        sensor_name=name, dagster_event=event, dagster_instance=instance, dagster_run=result.dagster_run
    )
    return defs.get_sensor_def(name)(context)


def test_a_backup_notice_and_a_failure_reach_discord_and_both_apprise_receivers(
    alert_env,  # noqa: F811
    clean_env,
    http_recorder,  # noqa: F811
    second_http_recorder,  # noqa: F811
    capsys,
):
    json_token, form_token = _token(), _token()
    json_url = f"json://127.0.0.1:{http_recorder.port}/hooks/{json_token}"
    form_url = f"form://127.0.0.1:{second_http_recorder.port}/in/{form_token}"
    clean_env.setenv("BACKUP_NOTIFY_URLS", f"{json_url}, {form_url}")
    database = alert_env.values["DATABASE_URL"].rsplit("/", 1)[1]
    instance = dg.DagsterInstance.get()
    defs = load_defs()
    assert defs.get_sensor_def("discord_on_run_failure").default_status == dg.DefaultSensorStatus.RUNNING

    result, backup_id = run_backup(instance, "manual", defs=defs)
    assert result.success, failure_message(result)
    _evaluate(defs, "discord_on_backup_success", instance, result)

    # Discord: its markdown; JSON: title, plain message and type; form: the same fields, form-encoded.
    [discord] = alert_env.stub.messages
    assert f":white_check_mark: **Database backup complete** (`{database}`)" in discord
    [as_json] = http_recorder.requests
    assert as_json.method == "POST" and as_json.path == f"/hooks/{json_token}"
    body = as_json.json()
    assert body["title"] == f"Database backup complete ({database})" and body["type"] == "success"
    assert f"File: {database}_{backup_id}.dump" in body["message"] and "`" not in body["message"]
    assert f"{sum(SEED_COUNTS.values()):,} rows match the dump" in body["message"]
    [as_form] = second_http_recorder.requests
    form = as_form.form()
    assert as_form.path == f"/in/{form_token}" and form["title"] == body["title"]
    assert form["message"] == body["message"] and form["type"] == "success"

    # The same partition again fails: every channel hears of it, as a failure.
    again = defs.resolve_job_def("backup_job").execute_in_process(
        instance=instance, partition_key=backup_id, raise_on_error=False
    )
    assert not again.success
    _evaluate(defs, "discord_on_run_failure", instance, again)
    assert "Database backup failed" in alert_env.stub.messages[1]
    failure = http_recorder.requests[1].json()
    assert failure["type"] == "failure" and failure["title"] == f"Database backup failed ({database})"
    assert "already exists" in failure["message"] and "never overwritten" in failure["message"]
    assert second_http_recorder.requests[1].form()["type"] == "failure"
    for sent in (*alert_env.stub.messages, failure["message"], body["message"]):
        assert alert_env.leaked(sent) == []

    # A receiver that refuses is logged by position and scheme, never by its URL or token.
    http_recorder.set_responses([500])
    capsys.readouterr()
    _evaluate(defs, "discord_on_backup_success", instance, result)
    log = capsys.readouterr().err
    assert "notification not sent to notification URL 1 (json://)" in log, log
    assert json_token not in log and form_token not in log and str(http_recorder.port) not in log
    assert len(second_http_recorder.requests) == 3  # the other channels were told all the same
    assert len(alert_env.stub.messages) == 3


def test_each_database_is_told_on_its_own_urls_and_defaults_apply_to_the_rest(
    tmp_path,
    http_recorder,  # noqa: F811
    second_http_recorder,  # noqa: F811
):
    shared = f"json://127.0.0.1:{http_recorder.port}/shared/{_token()}"
    own = f"json://127.0.0.1:{second_http_recorder.port}/billing/{_token()}"
    config = tmp_path / "databases.yaml"
    config.write_text(
        f"defaults:\n  notify_urls: [{shared}]\ndatabases:\n"
        "  - key: shop\n    url_env: SHOP_URL\n"
        f"  - key: billing\n    url_env: BILLING_URL\n    notify_urls:\n      - {own}\n"
    )
    settings = load_settings({"BACKUP_CONFIG_FILE": str(config)})
    notifier = Notifier(settings, environ={})
    stale = FreshnessFacts(limit_hours=26)

    assert notifier.notify([Event.stale("shop", stale, None, "shop")]) is True
    assert notifier.notify([Event.stale("billing", stale, None, "billing")]) is True
    [shop] = http_recorder.requests
    [billing] = second_http_recorder.requests
    assert shop.json()["title"] == "No verified backup of shop in the last 26 hours"
    assert billing.json()["title"] == "No verified backup of billing in the last 26 hours"
    assert billing.json()["type"] == "failure"

    # A run of no one database (a restore that failed before naming one) reaches every URL once.
    run = RunFacts(job="restore_job", run_id="r1", run_url=None, kind="restore")
    notifier.notify([Event.failure(run, RunError("no backup named x"))])
    assert len(http_recorder.requests) == 2 and len(second_http_recorder.requests) == 2
    assert http_recorder.requests[1].json()["title"] == "Database restore failed"


def test_several_events_to_one_channel_are_one_message(http_recorder):  # noqa: F811
    settings = load_settings({"BACKUP_NOTIFY_URLS": f"json://127.0.0.1:{http_recorder.port}/x"})
    run = RunFacts(job="backup_job", run_id="r", run_url=None, kind="backup", database="app", backup_type="daily")
    warning = Event.health_warning(run, [("rows_not_dropped", "rows fell by 60%")], "default")
    notice = Event.success(run, BackupFacts(file_name="app_daily.dump", verified=True, rows=5), "default")
    assert Notifier(settings, environ={}).notify([warning, notice])
    [received] = http_recorder.requests
    body = received.json()
    assert body["type"] == "warning" and body["title"].startswith("Backup health warning (app)")
    assert "- rows_not_dropped: rows fell by 60%" in body["message"]
    assert "Database backup complete (app)" in body["message"] and "File: app_daily.dump" in body["message"]


@pytest.mark.parametrize(
    "value, complaint",
    [
        ("json://127.0.0.1/ok not-a-url-s3cret", "BACKUP_NOTIFY_URLS item 2 is not an apprise URL"),
        ("https//hooks.example/s3cret", "BACKUP_NOTIFY_URLS item 1 is not an apprise URL"),
    ],
)
def test_a_mistyped_notify_url_is_named_by_position_never_echoed(value, complaint):
    with pytest.raises(ConfigurationError, match=complaint) as raised:
        load_settings({"BACKUP_NOTIFY_URLS": value})
    assert "s3cret" not in str(raised.value)


def test_notify_urls_stay_out_of_settings_repr_and_unknown_schemes_are_logged_not_raised(caplog):
    settings = load_settings({"BACKUP_NOTIFY_URLS": "nosuchservice://s3cret-token-value/x"})
    assert "s3cret" not in repr(settings)
    caplog.set_level(logging.INFO)
    assert Notifier(settings, environ={}).notify([Event.stale("app", FreshnessFacts(26), None, "default")]) is False
    assert "apprise does not understand this URL" in caplog.text and "s3cret" not in caplog.text


def test_the_databases_file_may_name_the_variables_holding_its_urls(tmp_path):
    config = tmp_path / "databases.yaml"
    config.write_text(
        "defaults:\n  notify_urls: ['${TEAM_URLS}']\ndatabases:\n"
        "  - key: shop\n    url_env: SHOP_URL\n    heartbeat_url: ${SHOP_PING}\n"
    )
    env = {
        "BACKUP_CONFIG_FILE": str(config),
        "TEAM_URLS": "json://127.0.0.1:9/a-s3cret-token form://127.0.0.1:9/b",
        "SHOP_PING": "https://hc-ping.com/0f1e2d3c-s3cret",
    }
    [shop] = load_settings(env).databases
    assert shop.notify_urls == ("json://127.0.0.1:9/a-s3cret-token", "form://127.0.0.1:9/b")
    assert shop.heartbeat_url == "https://hc-ping.com/0f1e2d3c-s3cret"
    with pytest.raises(ConfigurationError, match=r"names \$\{TEAM_URLS\}, which is not set: set TEAM_URLS"):
        load_settings({k: v for k, v in env.items() if k != "TEAM_URLS"})
    with pytest.raises(
        ConfigurationError, match="SHOP_PING .named in heartbeat_url of database 'shop'. is not a URL"
    ) as bad:
        load_settings({**env, "SHOP_PING": "hc-ping.com/0f1e2d3c-s3cret"})
    assert "s3cret" not in str(bad.value)
