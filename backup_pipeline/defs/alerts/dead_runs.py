"""Runs whose process died: failed with a clear message, announced, and out of the queue's way.

A run that `backup-db` executes in a process of its own (cli/run_process.py) has no run worker that Dagster's
run monitor could check: if that process is killed (SIGKILL, out of memory, a reboot) the run stays STARTED
for ever, and with a daemon it holds its database's place (tag `backup/database`, limit 1), so every later
backup of that database waits behind it. Such runs carry the host, pid and start time of their process
(RUN_HOST_TAG...) and its PID namespace, so a run of another container with the same host name is never
failed from here (its pid means nothing in this namespace). A sensor (RUNNING by default) and every `backup-db`
command that opens the instance look for unfinished runs of this host whose process is gone and fail them;
the failure is then posted to Discord as the process would have posted it, since no run-status sensor watches
runs executed in process.

Dagster's public API has no call that fails a run: `DagsterInstance.report_run_failed` is what Dagster's own
run monitor and code server use for this, a method of the public DagsterInstance class but not marked public.
The alternative, GraphQL terminateRun with MARK_AS_CANCELED_IMMEDIATELY, needs a webserver and ends the run
CANCELED, which no failure alert sees.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from backup_pipeline.core.config import Settings
from backup_pipeline.core.file_lock import exclusive_lock
from backup_pipeline.core.process_owner import ProcessOwner, this_host
from backup_pipeline.defs.alerts.announce import announce_finished_run
from backup_pipeline.defs.names import (
    ANNOUNCED_TAG,
    DEAD_RUN_SENSOR,
    RUN_HOST_TAG,
    RUN_PID_NAMESPACE_TAG,
    RUN_PID_STARTED_TAG,
    RUN_PID_TAG,
)

DEAD_RUN_SENSOR_INTERVAL_S = 30
LOCK_FILE = ".backup-db-dead-runs.lock"
UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def owner_tags(owner: ProcessOwner | None = None) -> dict[str, str]:
    """The tags naming the process that runs a run (this one, unless told)."""
    owner = owner or ProcessOwner.current()
    tags = {RUN_HOST_TAG: owner.host, RUN_PID_TAG: str(owner.pid)}
    if owner.started:
        tags[RUN_PID_STARTED_TAG] = owner.started
    if owner.namespace:
        tags[RUN_PID_NAMESPACE_TAG] = owner.namespace
    return tags


def run_owner(run: dg.DagsterRun) -> ProcessOwner | None:
    try:
        pid = int(run.tags[RUN_PID_TAG])
    except (KeyError, ValueError):
        return None
    return ProcessOwner(
        host=run.tags.get(RUN_HOST_TAG, ""),
        pid=pid,
        started=run.tags.get(RUN_PID_STARTED_TAG),
        namespace=run.tags.get(RUN_PID_NAMESPACE_TAG),
    )


def dead_process_message(owner: ProcessOwner) -> str:
    return (
        f"the process running it (pid {owner.pid} on {owner.host}) died before the run ended (killed, out of "
        "memory, or the machine restarted); nothing it was doing completed. Start the backup again; what the "
        "run left behind is cleaned up by the next run"
    )


def fail_unfinished_run(instance: dg.DagsterInstance, settings: Settings | None, run_id: str, message: str) -> bool:
    """Fails the run unless it has ended meanwhile, and posts its failure when no sensor will. True if failed."""
    with _instance_lock():
        return _fail_unfinished_run(instance, settings, run_id, message)


def fail_dead_runs(
    instance: dg.DagsterInstance, settings: Settings, log: Callable[[str], None] = lambda _: None
) -> list[str]:
    """Fails every unfinished run of this host whose recorded process is gone; the ids of the runs failed."""
    host = this_host()
    failed = []
    with _instance_lock():
        records = instance.get_run_records(filters=dg.RunsFilter(statuses=UNFINISHED, tags={RUN_HOST_TAG: host}))
        for record in records:
            owner = run_owner(record.dagster_run)
            if owner is None or owner.is_alive():
                continue
            if _fail_unfinished_run(instance, settings, record.dagster_run.run_id, dead_process_message(owner)):
                failed.append(record.dagster_run.run_id)
                log(f"run {record.dagster_run.run_id} failed: the process running it (pid {owner.pid}) died")
    return failed


def _fail_unfinished_run(instance, settings, run_id: str, message: str) -> bool:
    run = instance.get_run_by_id(run_id)  # read under the lock: a sweep beside us may have failed it already
    if run is None or run.is_finished:
        return False
    instance.report_run_failed(run, message)
    if settings is not None and run.tags.get(ANNOUNCED_TAG):
        announce_finished_run(settings, instance, run_id)  # executed in process: no run-status sensor sees it
    return True


def _instance_lock():
    """Serialises sweeps of one DAGSTER_HOME (the daemon's sensor and commands), so a run is failed once."""
    home = os.environ.get("DAGSTER_HOME")
    return exclusive_lock(Path(home) / LOCK_FILE) if home and Path(home).is_dir() else contextlib.nullcontext()


def build_dead_run_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(
        name=DEAD_RUN_SENSOR,
        minimum_interval_seconds=DEAD_RUN_SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Fails runs that `backup-db` started in a process of its own on this host when that process has "
            "died (killed, out of memory), and posts their failure to Discord, so that they alert and stop "
            "holding their database's place in the run queue. Runs the daemon launched are the run monitor's."
        ),
    )
    def dead_run_sensor(context: dg.SensorEvaluationContext):
        failed = fail_dead_runs(context.instance, settings, context.log.info)
        if not failed:
            return dg.SkipReason(f"no unfinished run on {this_host()} has lost its process")
        return dg.SkipReason(f"failed {len(failed)} run(s) whose process died: {', '.join(failed)}")

    return dead_run_sensor
