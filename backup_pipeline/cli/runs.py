"""One verb's run, start to end, by public paths only: start it, then follow it (follow.py) or return its id.

With a webserver at DAGSTER_WEBSERVER_URL (else one answering at http://localhost:3000) that serves this
instance (it knows the instance's latest run) and has a daemon dequeuing runs (`dagster dev`, a deployment),
the run is submitted with its GraphQL client, as the UI's Launch button does: queued, so the instance's limits
apply (one backup per database at a time). Otherwise it executes in a process of our own (run_process.py:
`execute_in_process` on the same instance), which shows in the UI all the same and carries on if the command
stops waiting.

Secrets never go in run config (Dagster stores it): a run that needs one (a restore target's password) gets it
in the environment of our own process, which is why such a run never goes to the webserver.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import dagster as dg
import requests

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.follow import RunProcess, follow
from backup_pipeline.cli.home import prepare_dagster_home
from backup_pipeline.cli.output import Progress, note
from backup_pipeline.core.errors import BackupError, ConfigurationError
from backup_pipeline.core.webserver import webserver_base_url
from backup_pipeline.defs.alerts.announce import announcer
from backup_pipeline.defs.names import PARTITION_TAG
from backup_pipeline.defs.run_lifecycle import fail_dead_runs

CODE_LOCATION_NAME = "backup_pipeline"  # as in workspace.yaml and pyproject.toml
REPOSITORY_NAME = "__repository__"  # the repository a Definitions object makes
RUN_LOG_FOLDER = "backup_db_runs"
PROBE_QUERY = """query BackupDbProbe($runId: ID!) {
  runOrError(runId: $runId) { __typename }
  instance { daemonHealth { daemonStatus(daemonType: "QUEUED_RUN_COORDINATOR") { healthy } } }
}"""


@dataclass
class RunSpec:
    """A run to start: its job, run config and tags, and the partition (a backup id) it is for."""

    job_name: str
    run_config: dict = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    partition_key: str | None = None
    # The dynamic partitions the key belongs to: it is added first, as a run for it needs it to exist.
    partitions: str | None = None
    # Asset key paths to materialize, for a run of one database's assets among several (no named job).
    asset_selection: list[list[str]] | None = None
    # Environment for the run's process only (never stored): forces a process of our own.
    private_env: dict[str, str] = field(default_factory=dict, repr=False)


def run_job(
    ctx: CliContext,
    spec: RunSpec,
    args,
    show_logs: bool = True,
    stop_note: str | None = None,
    backup_name: str | None = None,
):
    """Starts `spec` as a run and, unless `args.no_wait`, follows it to the end (or `args.timeout`).

    `backup_name`: the backup the run makes or uses, said with the run id as soon as the run starts.

    `stop_note`: Ctrl-C (or SIGTERM) while following cancels the run, printing this, and follows it to its end;
    without it, Ctrl-C only stops waiting.

    Returns (run id, FinishedRun or None when not waiting)."""
    home = prepare_dagster_home(note)
    with dg.DagsterInstance.get() as instance:
        # A run of ours whose process was killed would hold its database's place for ever: fail it first.
        fail_dead_runs(instance, announcer(ctx.settings, instance), note)
        if spec.partitions and not instance.has_dynamic_partition(spec.partitions, spec.partition_key):
            instance.add_dynamic_partitions(spec.partitions, [spec.partition_key])
        ui = webserver_base_url(ctx.settings.webserver_url)
        webserver = None if spec.private_env else queueing_webserver(instance, ui)
        process, run_id = None, submit_to_webserver(webserver, spec) if webserver else None
        if run_id is not None:
            how = f"queued through the webserver at {webserver}"
        else:
            run_id, process = start_own_process(home, spec)
            how = "running in a background process (no webserver with a daemon serves this instance)"
        url = ctx.run_url(run_id)
        of_backup = f" for backup {backup_name}" if backup_name else ""
        note(f"Run {run_id} of {spec.job_name}{of_backup}, {how}" + (f": {url}" if url else ""))
        note(started_note(run_id, spec))
        if not getattr(args, "no_wait", False):
            timeout_s = getattr(args, "timeout", None)
            try:
                return run_id, follow(
                    instance, run_id, Progress(), url, timeout_s, process, show_logs, settings=ctx.settings
                )
            except KeyboardInterrupt:
                if stop_note is None:
                    raise
            # Ctrl-C or SIGTERM: the run is canceled, and followed to its end (a second one stops waiting).
            note(stop_note)
            cancel_run(instance, run_id, process)
            return run_id, follow(instance, run_id, Progress(), url, None, process, show_logs, settings=ctx.settings)
        while instance.get_run_by_id(run_id) is None:  # our own process records it once it has loaded the code
            if process.popen.poll() is not None:
                raise BackupError(f"the run could not start ({process.ending()})")
            time.sleep(0.2)
        return run_id, None


def started_note(run_id: str, spec: RunSpec) -> str:
    """Where a person finds the run again, from any shell or the UI."""
    tag = f", tagged {PARTITION_TAG}={spec.partition_key}" if spec.partition_key else ""
    return f"  (`backup-db follow {run_id}` follows it from any shell; the UI lists it under Runs{tag})"


def cancel_run(instance: dg.DagsterInstance, run_id: str, process: RunProcess | None = None) -> None:
    """Cancels the run as the UI's Terminate does: the run coordinator drops a queued run and asks the run
    launcher to terminate a started one, which marks it CANCELING first; where no launcher can reach it (a run
    in a process of our own), it is marked CANCELING here, and the run's own step sees that and stops."""
    stopping = (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)
    run = instance.get_run_by_id(run_id)
    while run is None and process is not None and process.popen.poll() is None:
        time.sleep(0.2)  # our own process records the run once it has loaded the code
        run = instance.get_run_by_id(run_id)
    if run is None or run.is_finished:
        return
    if instance.run_coordinator.cancel_run(run_id):
        return
    run = instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished and run.status not in stopping:
        instance.report_run_canceling(run, message="Canceling the run: backup-db was interrupted (Ctrl-C or SIGTERM)")


def queueing_webserver(instance: dg.DagsterInstance, url: str | None) -> str | None:
    """`url` when a webserver there serves this instance and a daemon dequeues its runs; else None."""
    latest = instance.get_run_records(limit=1)
    if url is None or not latest:
        return None  # nothing proves that the webserver's instance is ours
    variables = {"runId": latest[0].dagster_run.run_id}
    try:
        answer = requests.post(
            f"{url.rstrip('/')}/graphql", json={"query": PROBE_QUERY, "variables": variables}, timeout=3
        ).json()["data"]
        ours = answer["runOrError"]["__typename"] == "Run"
        return url if ours and answer["instance"]["daemonHealth"]["daemonStatus"]["healthy"] else None
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None  # nothing there, or not a Dagster webserver


def submit_to_webserver(url: str, spec: RunSpec) -> str | None:
    """Queues the run through the webserver's GraphQL API; its run id, or None if this client cannot express it."""
    from dagster_graphql import DagsterGraphQLClient

    parts = urlsplit(url)
    # Host, port and path prefix in one: the only form every client release (1.10 on) accepts.
    client = DagsterGraphQLClient(parts.netloc + parts.path.rstrip("/"), use_https=parts.scheme == "https")
    extra = {}
    if spec.asset_selection:  # a run of one database's assets among several; dagster-graphql 1.11 on
        if "asset_selection" not in inspect.signature(client.submit_job_execution).parameters:
            return None
        extra["asset_selection"] = [dg.AssetKey(path) for path in spec.asset_selection]
    partition = {PARTITION_TAG: spec.partition_key} if spec.partition_key else {}
    return client.submit_job_execution(
        spec.job_name,
        repository_location_name=CODE_LOCATION_NAME,
        repository_name=REPOSITORY_NAME,
        run_config=spec.run_config,
        tags={**spec.tags, **partition},
        **extra,
    )


def start_own_process(home, spec: RunSpec) -> tuple[str, RunProcess]:
    """`python -m backup_pipeline.cli.run_process RUN_ID SPEC` in a session of its own (Ctrl-C here leaves it
    running); secrets reach it in its environment, never in its arguments."""
    run_id = str(uuid.uuid4())
    log_path = home / RUN_LOG_FOLDER / f"{run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in asdict(spec).items() if k not in ("private_env", "partitions")}
    argv = [sys.executable, "-m", "backup_pipeline.cli.run_process", run_id, json.dumps(public)]
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            argv,
            env={**os.environ, **spec.private_env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return run_id, RunProcess(popen, log_path)


def follow_existing(ctx: CliContext, run_id: str, timeout_s: float | None):
    """`backup-db follow RUN_ID`: waits for a run started earlier (e.g. after --no-wait or a timeout).

    Returns (the finished Dagster run, what was read from its events), for the verb's own summary."""
    home = prepare_dagster_home(note)
    with dg.DagsterInstance.get() as instance:
        fail_dead_runs(
            instance, announcer(ctx.settings, instance), note
        )  # so that following a run whose process died ends at once
        if instance.get_run_by_id(run_id) is None:
            raise ConfigurationError(
                f"there is no run {run_id} in the Dagster instance at {home}: check the id and DAGSTER_HOME"
            )
        finished = follow(instance, run_id, Progress(), ctx.run_url(run_id), timeout_s)
        return instance.get_run_by_id(run_id), finished
