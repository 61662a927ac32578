"""Queuing a run for the daemon: whether one is running for the instance, and submitting as `dagster job launch` does.

With a daemon running (and a queued run coordinator) the run is queued, so the instance's limits apply (one
backup per database at a time) and the daemon launches it from its own workspace. Without one the command
runs it in a process of its own (worker_process.py). Either way the run shows in the UI.

Secrets never go in run config (Dagster stores it): a run that needs one (a restore target's password)
gets it as an environment variable of our own process, which is why such a run never goes to the queue.
"""

from __future__ import annotations

import os
import sys
import time

import dagster as dg

from backup_pipeline.cli.runs import LaunchedRun, RunSpec

CODE_LOCATION_NAME = "backup_pipeline"  # as in workspace.yaml and pyproject.toml: the daemon finds the code by it
DEFINITIONS_MODULE = "backup_pipeline.definitions"
PARTITION_TAG = "dagster/partition"
# A daemon writes a heartbeat every 30 s and none when it stops, so a heartbeat older than this means gone.
DAEMON_HEARTBEAT_TOLERANCE_S = 45.0


def daemon_is_running(instance: dg.DagsterInstance) -> bool:
    """True when a daemon dequeues runs for this instance (its heartbeat is recent)."""
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._daemon.controller import get_daemon_statuses
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        return False
    daemon_type = QueuedRunCoordinatorDaemon.daemon_type()
    statuses = get_daemon_statuses(
        instance, [daemon_type], ignore_errors=True, heartbeat_tolerance_seconds=DAEMON_HEARTBEAT_TOLERANCE_S
    )
    return statuses[daemon_type].healthy is True


def latest_daemon_heartbeat(instance: dg.DagsterInstance) -> float | None:
    """When the daemon that dequeues runs last said it was alive (a Unix timestamp), if ever."""
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    heartbeat = instance.get_daemon_heartbeats().get(QueuedRunCoordinatorDaemon.daemon_type())
    return heartbeat.timestamp if heartbeat is not None else None


def submit_to_queue(instance: dg.DagsterInstance, spec: RunSpec) -> LaunchedRun:
    """Creates the run as `dagster job launch` does, with the code location's name the daemon knows, and queues it."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable, module_name=DEFINITIONS_MODULE, working_directory=os.getcwd()
        ),
        location_name=CODE_LOCATION_NAME,
    )
    with origin.create_location(instance) as location:
        repository = next(iter(location.get_repositories().values()))
        selection = [dg.AssetKey(path) for path in spec.asset_selection] if spec.asset_selection else None
        if selection:
            from dagster._core.definitions.selector import JobSubsetSelector

            remote_job = location.get_job(
                JobSubsetSelector(
                    location_name=location.name,
                    repository_name=repository.name,
                    job_name=spec.job_name,
                    op_selection=None,
                    asset_selection=selection,
                )
            )
        else:
            remote_job = repository.get_full_job(spec.job_name)
        plan = location.get_execution_plan(
            remote_job, spec.run_config, step_keys_to_execute=None, known_state=None, instance=instance
        ).execution_plan_snapshot
        tags = {**remote_job.tags, **spec.tags}
        if spec.partition_key is not None:
            tags[PARTITION_TAG] = spec.partition_key
        run = instance.create_run(
            job_name=spec.job_name,
            run_id=None,
            run_config=spec.run_config,
            resolved_op_selection=None,
            step_keys_to_execute=plan.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags=tags,
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=frozenset(selection) if selection else None,
            asset_check_selection=None,
            asset_graph=repository.asset_graph,
        )
        # The queued run coordinator only records the run as queued; the daemon launches it from its workspace.
        instance.submit_run(run.run_id, workspace=None)
    return LaunchedRun(run_id=run.run_id, via_queue=True)


def wait_until_recorded(instance: dg.DagsterInstance, launched: LaunchedRun, timeout_s: float = 300) -> None:
    """Returns once the run is in the instance (our own process records it once it has loaded the code)."""
    from backup_pipeline.core.errors import BackupError

    deadline = time.monotonic() + timeout_s
    while instance.get_run_by_id(launched.run_id) is None:
        process = launched.process
        if process is not None and not process.running():
            raise BackupError(f"the run could not start ({process.ending()}); its output is in {process.log_path}")
        if time.monotonic() > deadline:
            raise BackupError(f"run {launched.run_id} did not start within {timeout_s:.0f} s")
        time.sleep(0.2)
