"""Waiting for a run: its status changes and its own log lines (bytes dumped, percent restored) as they come.

Reads the run's event log from the instance, so it follows queued runs and runs in a process of our own alike,
and `backup-db follow RUN_ID` can pick up a run another command started.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from backup_pipeline.cli.outcomes import RunFailedError, RunTimedOutError
from backup_pipeline.cli.output import Progress
from backup_pipeline.defs.alerts.announce import announcer
from backup_pipeline.defs.run_lifecycle import dead_process_message, fail_unfinished_run, run_failure_error

POLL_S = 0.5
QUEUED_NOTE_AFTER_S = 30.0
QUEUED_NOTE = (
    "still queued: the daemon starts it once the instance's limits allow (one backup per database at a time); "
    "check that `dagster dev` or `dagster-daemon run` is still running"
)
# Status words from the run's own events, so a status shows in order with the log lines around it.
STATUS_WORDS = {
    dg.DagsterEventType.RUN_ENQUEUED: "queued",
    dg.DagsterEventType.RUN_STARTING: "starting",
    dg.DagsterEventType.RUN_START: "running",
    dg.DagsterEventType.RUN_SUCCESS: "completed",
    dg.DagsterEventType.RUN_FAILURE: "failed",
    dg.DagsterEventType.RUN_CANCELING: "canceling",
    dg.DagsterEventType.RUN_CANCELED: "canceled",
}


@dataclass
class FinishedRun:
    """Metadata of each materialization (by asset key, e.g. "restore_verification") and step output (by step)."""

    run_id: str
    materializations: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)


@dataclass
class RunProcess:
    """Our own process running a run (runs.py): if it ends before the run does, the run can never finish."""

    popen: subprocess.Popen
    log_path: Path

    def ending(self) -> str:
        lines = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        return f"exit code {self.popen.returncode}{f': {lines[-1]}' if lines else ''}; its output is in {self.log_path}"


def follow(
    instance, run_id: str, progress: Progress, run_url, timeout_s=None, process=None, show_logs=True, settings=None
):
    """Waits for the run to finish, printing its progress; returns a FinishedRun, or raises RunFailedError (with
    the failing step's own message) or RunTimedOutError. `process`: our own process running it, if any (if it
    dies first, the run is failed and its failure sent to `settings`' channels)."""
    finished, status, cursor, queued_noted = FinishedRun(run_id), [None], None, False
    while True:
        run = instance.get_run_by_id(run_id)
        if run is None:
            _show_status("starting", progress, status)  # our own process is still loading the code
        else:
            # Status first, events after: a run that finished in between still has all its events read.
            cursor = _read_events(instance, run_id, cursor, finished, progress, status, show_logs)
            if run.is_finished:
                break
            if run.status == dg.DagsterRunStatus.QUEUED and progress.elapsed > QUEUED_NOTE_AFTER_S and not queued_noted:
                progress.line(QUEUED_NOTE)
                queued_noted = True
        if process is not None and process.popen.poll() is not None:
            run = instance.get_run_by_id(run_id)  # it may have finished just before its process ended
            if run is None:
                raise RunFailedError(f"the run could not start ({process.ending()})", run_id)
            if not run.is_finished:
                message = dead_process_message(process.popen.pid, how=process.ending())
                fail_unfinished_run(instance, run_id, message, announcer(settings, instance) if settings else None)
            process = None  # the loop reads the run's end
        elif timeout_s is not None and progress.elapsed >= timeout_s and run is not None:
            # Not before the run is recorded (our process loads the code first): `follow` needs it to exist.
            raise RunTimedOutError(
                f"timed out after {timeout_s:g} s: run {run_id} is still {status[-1]} and keeps going. Follow it "
                f"with `backup-db follow {run_id}`" + (f", or in the Dagster UI at {run_url}" if run_url else "")
            )
        else:
            time.sleep(POLL_S)
    if run.status != dg.DagsterRunStatus.SUCCESS:
        error = run_failure_error(instance, run_id).message
        raise RunFailedError(error or f"the run {status[-1]} (see its logs in the Dagster UI)", run_id)
    return finished


def _read_events(instance, run_id: str, cursor, finished: FinishedRun, progress, status: list, show_logs: bool):
    """Shows each new event of the run (status changes, log lines) and keeps what the verbs report."""
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, limit=1000)
        for entry in (record.event_log_entry for record in page.records):
            event = entry.dagster_event
            kind = event.event_type if event else None
            # Our steps log progress at INFO (and WARNING); at ERROR only Dagster's executor speaks ("Dependencies
            # for step ... Not executing."), about steps skipped after a failure whose own message ends the command.
            level = entry.level if isinstance(entry.level, int) else logging.INFO
            if event is None and show_logs and entry.user_message and logging.INFO <= level < logging.ERROR:
                progress.line(entry.user_message)
            elif kind in STATUS_WORDS:
                _show_status(STATUS_WORDS[kind], progress, status)
            elif kind == dg.DagsterEventType.STEP_FAILURE:
                progress.line(f"step {event.step_key} failed")
            elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
                materialization = event.step_materialization_data.materialization
                finished.materializations[materialization.asset_key.to_user_string()] = _values(materialization)
            elif kind == dg.DagsterEventType.STEP_OUTPUT:
                finished.outputs[event.step_key] = _values(event.step_output_data)
        cursor = page.cursor
        if not page.has_more:
            return cursor


def _show_status(word: str, progress: Progress, status: list) -> None:
    if word != status[-1]:
        status.append(word)
        progress.line(f"Status: {word}")


def _values(data) -> dict:
    return {key: getattr(value, "value", value) for key, value in (data.metadata or {}).items()}
