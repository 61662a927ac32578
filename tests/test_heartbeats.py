"""Heartbeat pings sent by the backup run itself, to a healthchecks.io stand-in (a real HTTP server on
loopback): start then success; start then fail (with the error) when the dump fails; a monitor that is down
never fails the backup; the ping URL's UUID never reaches the run's event log. Uptime Kuma and Cronitor
conventions against the same server."""

import socket
import time
import uuid

import dagster as dg
import pytest

from backup_pipeline.core.notify.heartbeat import Heartbeat, heartbeat_style
from tests.support.hardening import client_tools_folder
from tests.support.http_recorder import http_recorder  # noqa: F401
from tests.support.pipeline import failure_message, run_backup


@pytest.fixture
def check_url(local_env, clean_env, http_recorder):  # noqa: F811
    """A healthchecks-style ping URL at the stand-in, set as BACKUP_HEARTBEAT_URL; its UUID is the secret."""
    check = str(uuid.uuid4())
    clean_env.setenv("BACKUP_HEARTBEAT_URL", f"{http_recorder.url}/ping/{check}")
    return check


def _event_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(repr(record.event_log_entry) for record in instance.get_records_for_run(run_id).records)


def test_a_backup_pings_start_then_success_with_its_run_id(check_url, http_recorder):  # noqa: F811
    instance = dg.DagsterInstance.get()
    result, _ = run_backup(instance, "manual")
    assert result.success, failure_message(result)

    start, success = http_recorder.requests
    assert (start.method, start.path, start.query) == ("POST", f"/ping/{check_url}/start", {"rid": result.run_id})
    assert (success.method, success.path, success.query) == ("POST", f"/ping/{check_url}", {"rid": result.run_id})
    assert start.at <= success.at
    log = _event_log_text(instance, result.run_id)
    assert "heartbeat start sent to the healthchecks heartbeat at 127.0.0.1" in log
    assert check_url not in log


def test_a_failed_dump_pings_fail_with_the_error(check_url, http_recorder, clean_env, tmp_path):  # noqa: F811
    bin_dir = client_tools_folder(
        tmp_path / "bin",
        'if [ "$1" = "--version" ]; then exec "$REAL/pg_dump" --version; fi\n'
        'echo "pg_dump: error: query failed: server closed the connection unexpectedly" >&2\nexit 1',
    )
    clean_env.setenv("BACKUP_PG_BIN_DIR", str(bin_dir))
    instance = dg.DagsterInstance.get()
    result, _ = run_backup(instance, "manual")
    assert not result.success

    start, fail = http_recorder.requests
    assert start.path == f"/ping/{check_url}/start"
    assert fail.path == f"/ping/{check_url}/fail" and fail.query == {"rid": result.run_id}
    assert b"server closed the connection unexpectedly" in fail.body
    assert check_url not in _event_log_text(instance, result.run_id)


def test_a_monitor_that_is_down_never_fails_the_backup(check_url, http_recorder):  # noqa: F811
    http_recorder.set_responses([500, 500, 500, 500])
    instance = dg.DagsterInstance.get()
    result, _ = run_backup(instance, "manual")
    assert result.success, failure_message(result)
    assert [r.status for r in http_recorder.requests] == [500, 500, 500, 500]  # each ping tried twice
    log = _event_log_text(instance, result.run_id)
    assert "heartbeat success not sent to the healthchecks heartbeat at 127.0.0.1: HTTP 500" in log
    assert check_url not in log


def test_uptime_kuma_and_cronitor_conventions(http_recorder):  # noqa: F811
    kuma_url = f"{http_recorder.url}/api/push/kumaTok3n"
    assert heartbeat_style(kuma_url) == "uptime-kuma"
    assert heartbeat_style("https://cronitor.link/p/key/backup") == "cronitor"
    assert heartbeat_style("https://hc-ping.com/5f0c") == "healthchecks"
    kuma = Heartbeat.for_url(kuma_url, None, "run-1", lambda text: text)
    assert kuma.start() and kuma.success() and kuma.fail("pg_dump failed")
    # Uptime Kuma has no start signal: two pushes, up then down with the reason.
    up, down = http_recorder.requests
    assert (up.method, up.path, up.query) == ("GET", "/api/push/kumaTok3n", {"status": "up", "msg": "OK"})
    assert down.query == {"status": "down", "msg": "pg_dump failed"}

    cronitor = Heartbeat.for_url(f"{http_recorder.url}/p/key/backup", "cronitor", None, lambda text: text)
    assert cronitor.start() and cronitor.success() and cronitor.fail("disk full")
    states = [r.query for r in http_recorder.requests[2:]]
    assert states == [{"state": "run"}, {"state": "complete"}, {"state": "fail", "message": "disk full"}]


def test_a_heartbeat_url_is_checked_without_being_echoed(clean_env):
    from backup_pipeline.core.config_loading import load_settings
    from backup_pipeline.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="BACKUP_HEARTBEAT_URL is not a URL") as raised:
        load_settings({"BACKUP_HEARTBEAT_URL": "hc-ping.com/0b1c-secret-uuid"})
    assert "secret-uuid" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="BACKUP_HEARTBEAT_STYLE must be one of healthchecks"):
        load_settings({"BACKUP_HEARTBEAT_URL": "https://hc-ping.com/x", "BACKUP_HEARTBEAT_STYLE": "nagios"})


def test_a_monitor_that_never_answers_holds_a_ping_for_one_read_timeout_only(caplog):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        heartbeat = Heartbeat(f"http://127.0.0.1:{silent.getsockname()[1]}/ping/0f1e-secret-uuid", "healthchecks")
        started = time.monotonic()
        assert heartbeat.start() is False
        elapsed = time.monotonic() - started
    assert 4 < elapsed < 8, elapsed  # 5 s without an answer, and not asked again
    assert "heartbeat start not sent to the healthchecks heartbeat at 127.0.0.1: ReadTimeout" in caplog.text
    assert "secret-uuid" not in caplog.text
