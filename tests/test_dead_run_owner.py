"""The dead-run check fails a run only when its own process is gone: a run whose process lives in another PID
namespace (a container with the same host name) stays as it is, one whose process here is gone is failed."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

from backup_pipeline.core.process_owner import ProcessOwner
from backup_pipeline.defs.run_lifecycle import fail_dead_runs, owner_tags


@dg.op
def _noop():
    pass


@dg.job
def _some_job():
    _noop()


def _ended_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_a_run_whose_process_is_gone_from_this_namespace_is_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    me = ProcessOwner.current()
    gone = ProcessOwner(host=me.host, pid=_ended_pid(), started=None, namespace=me.namespace)
    boot = (me.namespace or "unknown").split("/", 1)[0]
    elsewhere = ProcessOwner(host=me.host, pid=gone.pid, started=None, namespace=f"{boot}/pid:[1]")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        dead_run = instance.create_run_for_job(_some_job, tags=owner_tags(gone))
        live_run = instance.create_run_for_job(_some_job, tags=owner_tags(elsewhere))

        failed = fail_dead_runs(instance, None)

        assert failed == [dead_run.run_id]
        assert instance.get_run_by_id(dead_run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(live_run.run_id).status == dg.DagsterRunStatus.NOT_STARTED
