"""A run's life from outside it: which database and kind of work it is, which process runs it, and failing it
when that process died. Shared by the daemon's sensors and alerts and by the command line.

A run that `backup-db` executes in a process of its own (cli/run_process.py) has no run worker that Dagster's
run monitor could check: if that process is killed (SIGKILL, out of memory, a reboot) the run stays STARTED
for ever, and with a daemon it holds its database's place (tag `backup/database`, limit 1), so every later
backup of that database waits behind it. Such runs carry the host, pid and start time of their process
(RUN_HOST_TAG...) and its PID namespace, so a run of another container with the same host name is never
failed from here (its pid means nothing in this namespace). A sensor (RUNNING by default, alerts/dead_runs.py)
and every `backup-db` command that opens the instance look for unfinished runs of this host whose process is
gone and fail them; the failure is then posted as the process would have posted it, since no run-status sensor
watches runs executed in process.

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
from filelock import FileLock

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.notify.events import RunError
from backup_pipeline.core.process_owner import ProcessOwner, this_host
from backup_pipeline.defs.names import (
    ANNOUNCED_TAG,
    DATABASE_TAG,
    ERROR_CLASS_METADATA,
    KIND_TAG,
    REQUEST_JOB,
    RESTORE_JOB,
    RETENTION_JOB,
    RUN_HOST_TAG,
    RUN_PID_NAMESPACE_TAG,
    RUN_PID_STARTED_TAG,
    RUN_PID_TAG,
    DefinitionNames,
)

LOCK_FILE = ".backup-db-dead-runs.lock"
UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
DIED_UNSEEN = "killed, out of memory, or the machine restarted"


# Which run is this


def job_kinds(settings: Settings) -> dict[str, tuple[DatabaseSettings | None, str]]:
    """Named job → (its database, when it has only one; what kind of job it is)."""
    kinds: dict[str, tuple[DatabaseSettings | None, str]] = {
        REQUEST_JOB: (None, "request"),
        RESTORE_JOB: (None, "restore"),
        RETENTION_JOB: (None, "prune"),
    }
    for db in settings.databases:
        kinds.update({job: (db, purpose) for job, purpose in DefinitionNames(db).named_jobs().items()})
    return kinds


def run_database_and_kind(run: dg.DagsterRun, settings: Settings) -> tuple[DatabaseSettings | None, str]:
    """Which database a run concerned and what it did (backup, verify, prune, restore, request, else other):
    from our tags, else from the job, else from the assets it selected (a run started from the UI's Materialize
    button carries none of our tags)."""
    db, kind = job_kinds(settings).get(run.job_name, (None, "other"))
    by_key = {d.key: d for d in settings.databases}
    db = by_key.get(run.tags.get(DATABASE_TAG, ""), db)
    kind = run.tags.get(KIND_TAG, kind)
    if kind in ("restore", "prune") and db is None:  # named in the op's config (restore_job, retention_job)
        key = op_config_with(run.run_config, "database").get("database")
        db = by_key.get(key) if key else (settings.databases[0] if len(settings.databases) == 1 else None)
    if (db is None or kind == "other") and run.asset_selection:
        db, kind = _from_assets(run.asset_selection, settings, db, kind)
    return db, kind


def _from_assets(selection, settings: Settings, db, kind):
    paths = [key.path for key in selection]
    for candidate in settings.databases:
        prefix = DefinitionNames(candidate).key_prefix
        if all(path[: len(prefix)] == prefix for path in paths):
            db = candidate
            break
    leaves = {path[-1] for path in paths}
    if kind == "other":
        if "database_dump" in leaves:
            kind = "backup"
        elif leaves == {"restore_verification"}:
            kind = "verify"
        elif leaves == {"backup_retention"}:
            kind = "prune"
    return db, kind


def op_config_with(run_config: dict, key: str) -> dict:
    """The config of the run's op that has `key` (each of our jobs has one op with config), else {}."""
    for op in (run_config or {}).get("ops", {}).values():
        config = (op or {}).get("config") or {}
        if key in config:
            return config
    return {}


# How it ended


def run_failure_error(instance: dg.DagsterInstance, run_id: str, failure_event=None) -> RunError:
    """The failing step's own error, or the run's when no step got to fail (a crash, the run monitor)."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        error = step_error(record.event_log_entry.dagster_event.step_failure_data)
        if error is not None:
            return error
    if failure_event is None:
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        if not records:
            return RunError("")
        failure_event = records[-1].event_log_entry.dagster_event
    failure = failure_event.job_failure_data if failure_event.is_job_failure else None
    if failure is not None and failure.error is not None:
        return RunError(failure.error.message, failure.error.cls_name)
    return RunError(failure_event.message or "")


def step_error(data) -> RunError | None:
    """A failed step's own error: our message and error class, else the innermost exception's."""
    if data.user_failure_data and data.user_failure_data.description:
        error_class = data.user_failure_data.metadata.get(ERROR_CLASS_METADATA)
        return RunError(data.user_failure_data.description, error_class.value if error_class else None)
    if data.error:
        error = _innermost(data.error)
        return RunError(error.message, error.cls_name)
    return None


def _innermost(error):
    """The user's own exception, not the framework's wrapper around it."""
    while error.cause is not None:
        error = error.cause
    return error


# Which process runs it


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


# Failing a run whose process died


def dead_process_message(pid: int, host: str | None = None, how: str = DIED_UNSEEN) -> str:
    """Why the run failed: its process (`pid` on `host`) ended before the run did, `how` as far as is known."""
    where = f"pid {pid} on {host}" if host else f"pid {pid}"
    return (
        f"the process running it ({where}) died before the run ended ({how}); nothing it was doing completed. "
        "Start it again; what the run left behind is cleaned up by the next run"
    )


# Posts a finished run's notice (alerts/announce.py's announcer): for runs executed in process, which no
# run-status sensor sees.
Announce = Callable[[str], None]


def fail_unfinished_run(instance: dg.DagsterInstance, run_id: str, message: str, announce: Announce | None) -> bool:
    """Fails the run unless it has ended meanwhile, and posts its failure when no sensor will. True if failed."""
    with _instance_lock():
        return _fail_unfinished_run(instance, run_id, message, announce)


def fail_dead_runs(
    instance: dg.DagsterInstance, announce: Announce | None, log: Callable[[str], None] = lambda _: None
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
            message = dead_process_message(owner.pid, owner.host)
            if _fail_unfinished_run(instance, record.dagster_run.run_id, message, announce):
                failed.append(record.dagster_run.run_id)
                log(f"run {record.dagster_run.run_id} failed: the process running it (pid {owner.pid}) died")
    return failed


def _fail_unfinished_run(instance, run_id: str, message: str, announce: Announce | None) -> bool:
    run = instance.get_run_by_id(run_id)  # read under the lock: a sweep beside us may have failed it already
    if run is None or run.is_finished:
        return False
    instance.report_run_failed(run, message)
    if announce is not None and run.tags.get(ANNOUNCED_TAG):
        announce(run_id)  # executed in process: no run-status sensor sees it
    return True


def _instance_lock():
    """Serialises sweeps of one DAGSTER_HOME (the daemon's sensor and commands), so a run is failed once. The
    lock is the kernel's (flock), released when its holder dies however it dies."""
    home = os.environ.get("DAGSTER_HOME")
    if not home or not Path(home).is_dir():
        return contextlib.nullcontext()
    return FileLock(Path(home) / LOCK_FILE, mode=0o600)
