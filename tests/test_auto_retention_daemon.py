"""Unattended: with the daemon running and the schedule due, expired backups disappear without anyone
running prune (schedule → request → backup run → retention sensor → prune run)."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from tests.support.processes import start_daemon, stop_process
from tests.test_auto_retention import _put, _stored

pytestmark = pytest.mark.slow  # runs the daemon and waits for the schedule's next minute

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 300


def test_the_daemon_prunes_expired_backups_after_the_scheduled_backup(local_env, clean_env, tmp_path):
    for name, value in {
        "BACKUP_NAME_PREFIX": "app",
        "BACKUP_SCHEDULE_CRON": "* * * * *",
        "BACKUP_KEEP_LAST": "1",
    }.items():
        clean_env.setenv(name, value)
    folder = tmp_path / "backups"
    now = datetime.now(UTC)
    young = {_put(folder, "daily", now - timedelta(days=d)) for d in (1, 2)}
    expired = {_put(folder, "daily", now - timedelta(days=d)) for d in (40, 50)}
    instance = dg.DagsterInstance.get()

    log = tmp_path / "daemon.log"
    daemon = start_daemon(PROJECT_ROOT, log)
    started = time.monotonic()
    try:
        while not (expired.isdisjoint(_stored(folder)) and _prune_runs(instance)):
            assert daemon.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - started < WAIT_S, f"expired backups still there:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        took = time.monotonic() - started
    finally:
        stop_process(daemon)

    stored = _stored(folder)
    assert young <= stored and expired.isdisjoint(stored)
    assert any("_daily_" in n and n not in young for n in stored)  # the scheduled backup that started it
    [prune, *_] = _prune_runs(instance)
    backup = instance.get_run_by_id(prune.tags["backup/requested_by"])
    assert backup.job_name == "backup_job" and backup.tags["backup/type"] == "daily"
    assert backup.status == dg.DagsterRunStatus.SUCCESS and prune.tags["backup/database"] == "default"
    # Nobody ran prune: the only prune runs are the sensor's, each answering a scheduled backup.
    assert all(r.tags.get("dagster/sensor_name") == "backup_retention_sensor" for r in _prune_runs(instance))
    print(f"expired backups gone {took:.0f} s after the daemon started")


def _prune_runs(instance):
    return instance.get_runs(
        dg.RunsFilter(job_name="prune_job", statuses=[dg.DagsterRunStatus.SUCCESS]), ascending=True
    )
