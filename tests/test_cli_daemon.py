"""With `dagster dev` (a webserver and a daemon) serving the instance, `backup-db` queues its run through the
webserver's GraphQL API and the daemon starts it; with no such webserver, it runs the job in a process of its own.

The partition is registered before the run is queued (a dynamic partition must exist first); `--no-wait`
returns at once with the run id and `backup-db follow` waits for it; `--quiet` tags the run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests

from tests.support.cli import PROJECT_ROOT, module_world, status_lines
from tests.support.processes import free_port, start_process, stop_process

DAEMON_HEALTH = '{ instance { daemonHealth { daemonStatus(daemonType: "QUEUED_RUN_COORDINATOR") { healthy } } } }'

# slow: runs Dagster's own processes (daemon, webserver); -m "not slow" leaves it out.
pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def world(pg_admin_url, moto_server, tmp_path_factory):
    yield from module_world(pg_admin_url, moto_server, tmp_path_factory, "cli_daemon")


def _daemon_healthy(url: str) -> bool:
    try:
        answer = requests.post(f"{url}/graphql", json={"query": DAEMON_HEALTH}, timeout=5).json()
        return bool(answer["data"]["instance"]["daemonHealth"]["daemonStatus"]["healthy"])
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return False


@pytest.fixture
def dagster_dev(world):
    """`dagster dev` for the world's instance on a free loopback port; its URL. Stopped afterwards."""
    url = f"http://127.0.0.1:{free_port()}"
    log = open(world.home / "dagster_dev.log", "wb")
    process = start_process(
        [
            str(Path(sys.executable).with_name("dagster")),
            "dev",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            url.rsplit(":", 1)[1],
        ],
        env=world.env,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 120
        while not _daemon_healthy(url):
            assert process.poll() is None, (world.home / "dagster_dev.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "dagster dev's daemon was not healthy within 120 s"
            time.sleep(1)
        yield url
    finally:
        stop_process(process)
        log.close()


@pytest.mark.slow
def test_backup_goes_through_the_webservers_queue(world, dagster_dev):
    env = {"DAGSTER_WEBSERVER_URL": dagster_dev}
    # A fresh instance has no run that would prove the webserver's instance is ours: this one runs here.
    first = world.run("prune", "--dry-run", env=env)
    assert first.returncode == 0, first.stderr
    assert "running in a background process" in first.stderr

    submitted = world.run("backup", "--type", "manual", "--no-wait", "--quiet", "--json", env=env)
    assert submitted.returncode == 0, submitted.stderr
    answer = json.loads(submitted.stdout)
    assert f"queued through the webserver at {dagster_dev}" in submitted.stderr
    backup_id = answer["name"].removeprefix(f"{world.db_name}_")
    with world.instance() as instance:
        run = instance.get_run_by_id(answer["run_id"])
        assert run is not None and run.job_name == "backup_job"
        assert run.tags["dagster/partition"] == backup_id and run.tags["backup/quiet"] == "true"
        assert instance.has_dynamic_partition("backups", backup_id)

    followed = world.run("follow", answer["run_id"], env=env, timeout=180)
    assert followed.returncode == 0, followed.stderr + (world.home / "dagster_dev.log").read_text()[-3000:]
    assert status_lines(followed.stderr) == ["queued", "starting", "running", "completed"]
    assert f"verified {answer['name']}" in followed.stderr

    with world.instance() as instance:
        run = instance.get_run_by_id(answer["run_id"])
        queued = instance.get_records_for_run(answer["run_id"], of_type=dg.DagsterEventType.RUN_ENQUEUED).records
    assert run.status == dg.DagsterRunStatus.SUCCESS and len(queued) == 1
    assert not (world.home / "backup_db_runs" / f"{answer['run_id']}.log").exists()  # the daemon ran it, not us
    listed = json.loads(world.call("list", "--json").stdout)
    assert [(b["name"], b["verified"]) for b in listed] == [(answer["name"], True)]


def test_without_a_webserver_the_run_is_ours(world):
    """Nothing answers at DAGSTER_WEBSERVER_URL: the command runs the job itself, and the run is recorded."""
    result = world.run("prune", "--dry-run", "--json", env={"DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{free_port()}"})
    assert result.returncode == 0, result.stderr
    assert "running in a background process" in result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    assert (world.home / "backup_db_runs" / f"{run_id}.log").exists()
    with world.instance() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
