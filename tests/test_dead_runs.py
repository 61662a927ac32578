"""A backup whose process is killed (SIGKILL, as the OOM killer does) is failed, alerts, and stops holding its
database's place; several commands started together on a new DAGSTER_HOME all work.

The run's pg_dump is a stand-in that says when it has started and then waits, so the kill lands mid-dump
every time. The killed process's group (its pg_dump) is stopped by the test whatever happens. The two tests with
the daemon share one `dagster dev` (and its instance): its runs' pg_dump is the real one, except once after a
test asks for a stall.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psutil
import pytest

from tests.support.cli import CLI, make_world, module_world
from tests.support.discord_stub import DiscordStub, discord_stub  # noqa: F401
from tests.support.hardening import client_tools_folder
from tests.support.processes import free_port, start_process, stop_process
from tests.test_cli_daemon import _daemon_healthy

pytestmark = pytest.mark.slow  # kills processes, and one test runs `dagster dev`

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The daemon's dead_run_sensor ticks every 30 s; on a loaded machine its tick may come late.
SENSOR_LIMIT_S = 120


@pytest.fixture
def world(pg_admin_url, moto_server, tmp_path):
    world = make_world(pg_admin_url, moto_server, tmp_path)
    yield world
    world.drop_databases()


def stalling_pg_dump(tmp_path: Path) -> tuple[Path, Path]:
    """A BACKUP_PG_BIN_DIR whose pg_dump marks that it started, then waits (the kill comes meanwhile)."""
    started = tmp_path / "dump-started"
    folder = client_tools_folder(
        tmp_path / "stalling-bin",
        f'if [ "$1" = "--version" ]; then exec "$REAL/pg_dump" --version; fi\ntouch {started}\nsleep 300\n'
        'exec "$REAL/pg_dump" "$@"',
    )
    return folder, started


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def failure_alerts(stub, timeout: float, since: int = 0) -> list[str]:
    """The failure alerts Discord got after its first `since` messages, once at least one came (the freshness
    alert may come first)."""

    def failures() -> list[str]:
        return [m for m in stub.messages[since:] if "Database backup failed" in m]

    wait_for(failures, timeout, "a failure alert")
    return failures()


def run_of(world, run_id: str) -> dg.DagsterRun:
    with world.instance() as instance:
        return instance.get_run_by_id(run_id)


def failure_time(world, run_id: str) -> float:
    with world.instance() as instance:
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        return records[-1].event_log_entry.timestamp


@contextlib.contextmanager
def killed_mid_dump(world, tmp_path, env: dict[str, str]):
    """Starts a backup (`--no-wait`), waits until its pg_dump runs, SIGKILLs the run's process (only it, as the
    OOM killer would) and yields (run id, pid, time of the kill). Stops what is left of its group afterwards."""
    bin_dir, started = stalling_pg_dump(tmp_path)
    submitted = world.run("backup", "--no-wait", "--json", env={**env, "BACKUP_PG_BIN_DIR": str(bin_dir)})
    assert submitted.returncode == 0, submitted.stderr
    run_id = json.loads(submitted.stdout)["run_id"]
    pid = None
    try:
        wait_for(started.exists, 60, "the run's pg_dump to start")
        run = run_of(world, run_id)
        assert run.status == dg.DagsterRunStatus.STARTED
        pid = int(run.tags["backup/pid"])
        os.kill(pid, signal.SIGKILL)
        yield run_id, pid, time.time()
    finally:
        if pid is not None:  # the run's process led its own group: its pg_dump stand-in is still sleeping in it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_a_killed_backup_is_failed_and_announced_by_the_next_command(world, tmp_path, discord_stub):
    no_ui = {
        "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{free_port()}",
        "DISCORD_WEBHOOK_URL": discord_stub.webhook_url,
    }
    with killed_mid_dump(world, tmp_path, no_ui) as (run_id, pid, killed_at):
        time.sleep(2)
        # Nothing else ends it: no daemon, and its process is gone.
        assert run_of(world, run_id).status == dg.DagsterRunStatus.STARTED
        assert discord_stub.messages == []

        again = world.call("backup", "--quiet", "--json", env=no_ui)
        assert again.returncode == 0, again.stderr
        assert f"run {run_id} failed: the process running it (pid {pid}) died" in again.stderr
        failed_after = failure_time(world, run_id) - killed_at
    print(f"kill to FAILURE (the next command's check): {failed_after:.1f} s")

    run = run_of(world, run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    messages = discord_stub.wait_for_messages(1, timeout=10)
    assert len(messages) == 1, messages  # the failure, once; the new backup is --quiet
    assert "Database backup failed" in messages[0]
    assert f"the process running it (pid {pid} on " in messages[0]
    assert json.loads(again.stdout)["verified"] is True

    # Following the dead run ends at once with its failure.
    followed = world.call("follow", run_id)
    assert followed.returncode == 1
    assert f"the process running it (pid {pid} on " in followed.stderr


def test_several_commands_on_a_new_dagster_home_all_work(world, tmp_path):
    home = tmp_path / "new_home"  # does not exist yet: the commands create it together
    env = {**world.env, "DAGSTER_HOME": str(home), "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{free_port()}"}
    commands = [
        subprocess.Popen(
            [str(CLI), "prune", "--dry-run", "--json"],
            env=env,
            cwd=world.work_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(5)
    ]
    try:
        outcomes = [command.communicate(timeout=300) for command in commands]
    finally:
        for command in commands:
            if command.poll() is None:
                command.kill()
                command.wait()
    assert [command.returncode for command in commands] == [0] * 5, [err[-2000:] for _, err in outcomes]
    later = world.call("backup", "--quiet", "--json", env={"DAGSTER_HOME": str(home)})
    assert later.returncode == 0, later.stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_run_records()) == 6


@contextlib.contextmanager
def running_dagster_dev(world, extra_env: dict[str, str]):
    """`dagster dev` on the world's instance; its URL. Stopped afterwards."""
    url = f"http://127.0.0.1:{free_port()}"
    log_path = world.home / "dagster_dev.log"
    env = {**world.env, "DAGSTER_WEBSERVER_URL": url, **extra_env}
    dagster = str(Path(sys.executable).with_name("dagster"))
    argv = [dagster, "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", url.rsplit(":", 1)[1]]
    with open(log_path, "wb") as log:
        process = start_process(argv, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=log)
    try:
        wait_for(lambda: _daemon_healthy(url) or process.poll() is not None, 120, "dagster dev's daemon")
        assert process.poll() is None, log_path.read_text()[-2000:]
        yield url
    finally:
        stop_process(process)


@dataclass
class DagsterDev:
    url: str
    stub: DiscordStub
    bin_dir: Path
    stall: Path  # created by a test: the next pg_dump of a run the daemon launched waits
    started: Path  # created by that pg_dump once it waits


@pytest.fixture(scope="module")
def daemon_world(pg_admin_url, moto_server, tmp_path_factory):
    yield from module_world(pg_admin_url, moto_server, tmp_path_factory, "daemon_world")


@pytest.fixture(scope="module")
def dagster_dev(daemon_world, tmp_path_factory):
    """`dagster dev` on daemon_world's instance, its alerts to a Discord stand-in, its runs' pg_dump real except
    once after `stall` is created."""
    folder = tmp_path_factory.mktemp("switchable_pg_dump")
    stall, started = folder / "stall", folder / "dump-started"
    bin_dir = client_tools_folder(
        folder / "bin",
        f'if [ "$1" = "--version" ]; then exec "$REAL/pg_dump" --version; fi\n'
        f"if rm {stall} 2>/dev/null; then touch {started}; sleep 300; fi\n"
        'exec "$REAL/pg_dump" "$@"',
    )
    with DiscordStub() as stub:
        extra = {"DISCORD_WEBHOOK_URL": stub.webhook_url, "BACKUP_PG_BIN_DIR": str(bin_dir)}
        with running_dagster_dev(daemon_world, extra) as url:
            yield DagsterDev(url, stub, bin_dir, stall, started)


def test_with_the_daemon_a_killed_run_is_failed_and_the_queued_backup_starts(daemon_world, tmp_path, dagster_dev):
    world, discord_stub, seen = daemon_world, dagster_dev.stub, len(dagster_dev.stub.messages)
    alerts = {"DISCORD_WEBHOOK_URL": discord_stub.webhook_url}
    # The killed backup runs in a process of its own (no webserver named), as `backup-db` does without one.
    own = {**alerts, "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{free_port()}"}
    bin_dir, started = stalling_pg_dump(tmp_path)
    first = world.run("backup", "--no-wait", "--json", env={**own, "BACKUP_PG_BIN_DIR": str(bin_dir)})
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    pid = None
    try:
        wait_for(started.exists, 60, "the run's pg_dump to start")
        pid = int(run_of(world, run_id).tags["backup/pid"])
        # A second backup of the same database, through the webserver's queue: it waits (one per database).
        queued = world.run(
            "backup", "--no-wait", "--quiet", "--json", env={**alerts, "DAGSTER_WEBSERVER_URL": dagster_dev.url}
        )
        assert queued.returncode == 0, queued.stderr
        assert "queued through the webserver" in queued.stderr
        queued_id = json.loads(queued.stdout)["run_id"]
        time.sleep(5)
        assert run_of(world, queued_id).status == dg.DagsterRunStatus.QUEUED

        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        wait_for(lambda: run_of(world, run_id).is_finished, SENSOR_LIMIT_S, "the daemon to fail the dead run")
        failed_after = failure_time(world, run_id) - killed_at
        print(f"kill to FAILURE (the daemon's dead_run_sensor): {failed_after:.1f} s")
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

    assert run_of(world, run_id).status == dg.DagsterRunStatus.FAILURE
    assert failed_after < SENSOR_LIMIT_S
    failures = failure_alerts(discord_stub, timeout=30, since=seen)
    assert len(failures) == 1 and f"the process running it (pid {pid} on " in failures[0], failures

    # No longer blocked: the queued backup of the same database starts and completes.
    wait_for(lambda: run_of(world, queued_id).is_finished, 240, "the queued backup to finish")
    assert run_of(world, queued_id).status == dg.DagsterRunStatus.SUCCESS


def test_a_run_the_daemon_launched_is_failed_when_its_worker_is_killed(daemon_world, dagster_dev):
    """The default launcher: the code server that started the run worker fails the run once the worker is gone."""
    world, url, bin_dir, started = daemon_world, dagster_dev.url, dagster_dev.bin_dir, dagster_dev.started
    seen = len(dagster_dev.stub.messages)
    dagster_dev.stall.touch()
    try:
        seed = world.run("prune", "--dry-run", env={"DAGSTER_WEBSERVER_URL": url})  # a run the webserver knows
        assert seed.returncode == 0, seed.stderr
        queued = world.run("backup", "--no-wait", "--quiet", "--json", env={"DAGSTER_WEBSERVER_URL": url})
        assert "queued through the webserver" in queued.stderr, queued.stderr
        run_id = json.loads(queued.stdout)["run_id"]
        wait_for(started.exists, 120, "the run's pg_dump to start")
        stand_in = subprocess.run(["pgrep", "-f", f"sh {bin_dir}/pg_dump"], capture_output=True, text=True)
        dump_pid = int(stand_in.stdout.split()[0])
        worker = psutil.Process(dump_pid).ppid()  # pg_dump's parent
        try:
            os.kill(worker, signal.SIGKILL)
            killed_at = time.time()
            wait_for(lambda: run_of(world, run_id).is_finished, 60, "the code server to fail the run")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(dump_pid, signal.SIGKILL)
        print(f"kill to FAILURE (daemon-launched run, code server): {failure_time(world, run_id) - killed_at:.1f} s")
        assert run_of(world, run_id).status == dg.DagsterRunStatus.FAILURE
        assert len(failure_alerts(dagster_dev.stub, timeout=60, since=seen)) == 1
    finally:
        dagster_dev.stall.unlink(missing_ok=True)
