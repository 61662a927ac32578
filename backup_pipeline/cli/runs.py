"""One verb's run, start to end: the instance, the launch, following it, and the no-wait answer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.home import prepare_dagster_home
from backup_pipeline.cli.output import Progress, note


@dataclass
class RunSpec:
    """A run to start: which job, its run config and tags, and the partition (a backup id) it is for."""

    job_name: str
    run_config: dict = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    partition_key: str | None = None
    # Asset key paths to materialize, for a run of one database's assets among several (no named job).
    asset_selection: list[list[str]] | None = None
    # Environment for the run's process only (never stored): forces a process of our own.
    private_env: dict[str, str] = field(default_factory=dict, repr=False)

    def public(self) -> dict:
        return {
            "job_name": self.job_name,
            "run_config": self.run_config,
            "tags": self.tags,
            "partition_key": self.partition_key,
            "asset_selection": self.asset_selection,
        }


@dataclass
class LaunchedRun:
    run_id: str
    via_queue: bool
    process: object | None = None  # worker_process.RunProcess when we run it ourselves
    submitted_at: float = field(default_factory=time.time)


@dataclass
class WaitOptions:
    wait: bool = True
    timeout_s: float | None = None

    @classmethod
    def from_args(cls, args) -> WaitOptions:
        return cls(wait=not getattr(args, "no_wait", False), timeout_s=getattr(args, "timeout", None))


def run_job(ctx: CliContext, spec: RunSpec, options: WaitOptions, show_logs: bool = True, before_launch=None):
    """Starts `spec` as a run and, unless told not to wait, follows it to the end.

    Returns (run id, FinishedRun or None when not waiting). `before_launch(instance)` runs first, e.g. to
    register the backup's partition, which must exist before a run for it starts.
    """
    from backup_pipeline.cli.worker_process import start_worker

    home = prepare_dagster_home(note)
    # Our own run process starts loading the code now, while we load Dagster and look for a daemon.
    standby = start_worker(home, spec)
    try:
        import dagster as dg

        from backup_pipeline.cli.follow import follow
        from backup_pipeline.cli.launch import daemon_is_running, submit_to_queue, wait_until_recorded
        from backup_pipeline.cli.outcomes import DaemonGoneError

        progress = Progress()
        with dg.DagsterInstance.get() as instance:
            if before_launch is not None:
                before_launch(instance)
            if not spec.private_env and daemon_is_running(instance):
                standby.stand_down()
                launched = submit_to_queue(instance, spec)
            else:
                launched = LaunchedRun(run_id=standby.run_id, via_queue=False, process=standby.go())
            standby = None
            _announce(ctx, spec, launched)
            if not options.wait:
                wait_until_recorded(instance, launched)
                return launched.run_id, None
            try:
                finished = follow(
                    instance,
                    launched.run_id,
                    progress,
                    ctx.run_url(launched.run_id),
                    timeout_s=options.timeout_s,
                    process=launched.process,
                    show_logs=show_logs,
                    queued_at=launched.submitted_at if launched.via_queue else None,
                )
            except DaemonGoneError:
                # Nobody will dequeue it: take it off the queue and run it ourselves rather than wait forever.
                instance.run_coordinator.cancel_run(launched.run_id)
                progress.line(f"the daemon stopped before starting run {launched.run_id}: canceled it; running it here")
                process = start_worker(home, spec).go()
                launched = LaunchedRun(run_id=process.run_id, via_queue=False, process=process)
                _announce(ctx, spec, launched)
                finished = follow(
                    instance,
                    launched.run_id,
                    progress,
                    ctx.run_url(launched.run_id),
                    timeout_s=options.timeout_s,
                    process=launched.process,
                    show_logs=show_logs,
                )
        return launched.run_id, finished
    finally:
        if standby is not None:  # something failed before the run was started
            standby.stand_down()


def _announce(ctx: CliContext, spec: RunSpec, launched: LaunchedRun) -> None:
    how = "queued for the daemon" if launched.via_queue else "running in a background process (no daemon is running)"
    url = ctx.run_url(launched.run_id)
    note(f"Run {launched.run_id} of {spec.job_name}, {how}" + (f": {url}" if url else ""))


def follow_existing(ctx: CliContext, run_id: str, options: WaitOptions) -> int:
    """`backup-db follow RUN_ID`: waits for a run started earlier (e.g. after --no-wait or a timeout)."""
    prepare_dagster_home(note)
    import dagster as dg

    from backup_pipeline.cli.follow import follow
    from backup_pipeline.cli.worker_process import RunProcess
    from backup_pipeline.core.errors import ConfigurationError

    with dg.DagsterInstance.get() as instance:
        process = RunProcess.of_run(Path(instance.root_directory), run_id)
        if instance.get_run_by_id(run_id) is None and process is None:
            raise ConfigurationError(
                f"there is no run {run_id} in the Dagster instance at {instance.root_directory}: check the id and "
                "DAGSTER_HOME"
            )
        follow(instance, run_id, Progress(), ctx.run_url(run_id), timeout_s=options.timeout_s, process=process)
        print(f"Run {run_id} of {instance.get_run_by_id(run_id).job_name} completed")
    return 0
