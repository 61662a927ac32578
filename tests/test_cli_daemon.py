"""With a daemon running for the instance, `backup-db` queues its run and the daemon starts it.

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

from backup_pipeline.cli.launch import daemon_is_running
from tests.support.cli import PROJECT_ROOT, make_world, status_lines
from tests.support.processes import start_process, stop_process

pytestmark = pytest.mark.slow  # runs Dagster's own processes (daemon, webserver): -m "not slow" leaves it out


@pytest.fixture(scope="module")
def world(pg_admin_url, moto_server, tmp_path_factory):
    world = make_world(pg_admin_url, moto_server, tmp_path_factory.mktemp("cli_daemon"))
    yield world
    world.drop_databases()


@pytest.fixture
def daemon(world):
    """`dagster-daemon run` for the world's instance, with the world's configuration; stopped afterwards."""
    log = open(world.home / "daemon.log", "wb")
    process = start_process(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")],
        env=world.env,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 90
        with world.instance() as instance:
            while not daemon_is_running(instance):
                assert process.poll() is None, (world.home / "daemon.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "the daemon sent no heartbeat within 90 s"
                time.sleep(0.5)
        yield process
    finally:
        stop_process(process)
        log.close()


def test_backup_goes_through_the_daemons_queue(world, daemon):
    submitted = world.run("backup", "--type", "manual", "--no-wait", "--quiet", "--json")
    assert submitted.returncode == 0, submitted.stderr
    answer = json.loads(submitted.stdout)
    assert "queued for the daemon" in submitted.stderr
    backup_id = answer["name"].removeprefix(f"{world.db_name}_")
    with world.instance() as instance:
        run = instance.get_run_by_id(answer["run_id"])
        assert run is not None and run.job_name == "backup_job"
        assert run.tags["dagster/partition"] == backup_id and run.tags["backup/quiet"] == "true"
        assert instance.has_dynamic_partition("backups", backup_id)

    followed = world.run("follow", answer["run_id"], timeout=180)
    assert followed.returncode == 0, followed.stderr + (world.home / "daemon.log").read_text()[-3000:]
    assert status_lines(followed.stderr) == ["queued", "starting", "running", "completed"]
    assert f"verified {answer['name']}" in followed.stderr

    with world.instance() as instance:
        run = instance.get_run_by_id(answer["run_id"])
        queued = instance.get_records_for_run(answer["run_id"], of_type=dg.DagsterEventType.RUN_ENQUEUED).records
    assert run.status == dg.DagsterRunStatus.SUCCESS and len(queued) == 1
    assert not (world.home / "backup_db_runs" / f"{answer['run_id']}.log").exists()  # the daemon ran it, not us
    listed = json.loads(world.run("list", "--json").stdout)
    assert [(b["name"], b["verified"]) for b in listed] == [(answer["name"], True)]
