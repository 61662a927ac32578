"""The Discord sensors in the real daemon: runs launched through Dagster, alerts delivered to the stand-in.

`dagster-daemon run -w workspace.yaml` runs in its own process group with the test's DAGSTER_HOME; runs are
queued with `dagster job launch`, so they carry the code location's origin that run-status sensors match on.
One failed backup and one successful backup: exactly one message each. A `backup-db backup` with no webserver
runs in a process of its own and announces itself: the daemon, running all along, never posts it a second time.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.run_request import InstigatorType

from backup_pipeline.core.names import BackupId
from backup_pipeline.defs.alerts.freshness import FRESHNESS_CHECK
from tests.support.alert_env import WEBSERVER_URL, alert_env, password_role  # noqa: F401
from tests.support.discord_stub import discord_stub  # noqa: F401
from tests.support.pipeline import failure_message, run_backup
from tests.support.processes import start_daemon, stop_process

pytestmark = pytest.mark.slow  # runs Dagster's own processes (daemon, webserver): -m "not slow" leaves it out

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ALERT_LATENCY_S = 60
# Generous bounds for a loaded machine; the latency goal above is what is asserted.
WAIT_S = 150


def _sensor_ticks(instance: dg.DagsterInstance, name: str) -> list:
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == name:
            return instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5)
    return []


def _wait_until(condition, timeout: float, what: str, daemon: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if daemon.poll() is not None:
            raise AssertionError(f"the daemon exited ({daemon.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def _by_kind(messages: list[str]) -> dict[str, list[str]]:
    kinds = {"failed": [], "complete": [], "dead-man": [], "other": []}
    for message in messages:
        if "Database backup failed" in message:
            kinds["failed"].append(message)
        elif "Database backup complete" in message:
            kinds["complete"].append(message)
        elif message.startswith(":rotating_light:") or "fresh again" in message:
            kinds["dead-man"].append(message)
        else:
            kinds["other"].append(message)
    return kinds


def test_daemon_posts_one_failure_message_and_one_success_notice(alert_env, tmp_path):
    instance = dg.DagsterInstance.get()
    log = tmp_path / "daemon.log"
    daemon = start_daemon(PROJECT_ROOT, log)
    try:
        # While the daemon loads: a backup in process (no code location origin, so no alert for it).
        existing, existing_id = run_backup(instance, "manual")
        assert existing.success, failure_message(existing)
        new_id = str(BackupId.new("pre-migration"))
        instance.add_dynamic_partitions("backups", [new_id])

        # Run-status sensors start from the newest event they see on their first tick: launch after it.
        _wait_until(
            lambda: (
                _sensor_ticks(instance, "discord_on_run_failure")
                and _sensor_ticks(instance, "discord_on_backup_success")
            ),
            WAIT_S,
            "the sensors' first ticks",
            daemon,
            log,
        )
        # Re-running a stored backup's partition fails (never overwritten); the new partition succeeds.
        for backup_id in (existing_id, new_id):
            launch = ["job", "launch", "-w", "workspace.yaml", "-j", "backup_job"]
            tags = json.dumps({"dagster/partition": backup_id})
            subprocess.run([str(BIN / "dagster"), *launch, "--tags", tags], cwd=PROJECT_ROOT, check=True, timeout=120)

        _wait_until(
            lambda: all(_by_kind(alert_env.stub.messages)[k] for k in ("failed", "complete")),
            WAIT_S,
            "the failure message and the success notice",
            daemon,
            log,
        )
        # backup-db finds no webserver (WEBSERVER_URL does not resolve): it runs the backup itself and posts.
        own = subprocess.run(
            [str(BIN / "backup-db"), "backup", "--json"], capture_output=True, text=True, timeout=WAIT_S
        )
        assert own.returncode == 0, own.stderr
        own_run_id = json.loads(own.stdout)["run_id"]
        assert "running in a background process" in own.stderr
        # No second message for any run: wait until each sensor has ticked again after the last post, then count.
        last_post = alert_env.stub.requests[-1].at
        for sensor in ("discord_on_run_failure", "discord_on_backup_success"):
            _wait_until(
                lambda sensor=sensor: _sensor_ticks(instance, sensor)[0].timestamp > last_post + 0.5,
                WAIT_S,
                f"a later tick of {sensor}",
                daemon,
                log,
            )
    finally:
        stop_process(daemon)

    runs = {
        run.tags.get("dagster/partition"): run
        for run in instance.get_runs(dg.RunsFilter(job_name="backup_job"))
        if run.run_id not in (existing.run_id, own_run_id)
    }
    failed, succeeded = runs[existing_id], runs[new_id]
    assert (failed.status, succeeded.status) == (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS)

    messages = alert_env.stub.messages
    kinds = _by_kind(messages)
    failures, notices = kinds["failed"], kinds["complete"]
    # The dead-man's switch may have ticked before the in-process backup landed; nothing else may be there.
    assert (len(failures), len(notices), len(kinds["other"])) == (1, 2, 0), messages
    assert f"{existing_id}` (manual)" in failures[0] and "never overwritten" in failures[0]
    [own_notice] = [m for m in notices if f"/runs/{own_run_id}" in m]
    notices.remove(own_notice)
    assert instance.get_run_by_id(own_run_id).tags["backup/announced_by"] == "backup-db"
    assert f"{WEBSERVER_URL}/runs/{failed.run_id}" in failures[0]
    assert f"{new_id}.dump`" in notices[0] and "Type: pre-migration" in notices[0] and "Verified: yes" in notices[0]
    assert f"{WEBSERVER_URL}/runs/{succeeded.run_id}" in notices[0]
    assert all(alert_env.leaked(m) == [] for m in messages)

    for run, text in ((failed, failures[0]), (succeeded, notices[0])):
        received = next(r.at for r in alert_env.stub.requests if r.content == text)
        latency = received - instance.get_run_stats(run.run_id).end_time
        assert latency < ALERT_LATENCY_S, f"alert for {run.run_id} came {latency:.0f} s after the run ended"

    # The dead-man's switch ran too: no alert (the backup is fresh), its check recorded for the UI.
    check = dg.AssetCheckKey(dg.AssetKey("restore_verification"), FRESHNESS_CHECK)
    history = instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
    assert any(record.run_id == "" for record in history)  # reported by the sensor, not by a run
