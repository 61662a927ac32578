"""Waiting for a run: its status changes and our own log lines (bytes dumped, percent restored) as they come.

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

POLL_S = 0.5
QUEUED_NOTE_AFTER_S = 30.0
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
    run_id: str
    # Metadata of each materialization (by asset key, e.g. "restore_verification") and step output (by step).
    materializations: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)


@dataclass
class RunProcess:
    """Our own process running a run (runs.py): if it ends before the run does, the run can never finish."""

    popen: subprocess.Popen
    log_path: Path

    def ending(self) -> str:
        return f"exit code {self.popen.returncode}; its output is in {self.log_path}"


@dataclass
class _RunEvents:
    progress: Progress
    show_logs: bool
    finished: FinishedRun
    step_errors: list[str] = field(default_factory=list)  # the failing steps' own messages
    engine_errors: list[str] = field(default_factory=list)  # when no step got to fail
    run_failure: str = "the run failed (see its logs in the Dagster UI)"
    shown_status: str | None = None

    def status(self, word: str) -> None:
        if word != self.shown_status:
            self.progress.line(f"Status: {word}")
            self.shown_status = word

    def take(self, entry) -> None:
        event = entry.dagster_event
        if event is None:
            level = entry.level if isinstance(entry.level, int) else logging.getLevelName(str(entry.level).upper())
            if self.show_logs and entry.user_message and not (isinstance(level, int) and level < logging.INFO):
                self.progress.line(entry.user_message)
            return
        kind = event.event_type
        if kind in STATUS_WORDS:
            self.status(STATUS_WORDS[kind])
        if kind == dg.DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data
            described = data.user_failure_data.description if data.user_failure_data else None
            self.step_errors.append(
                described or (data.error.message.strip() if data.error else f"{event.step_key} failed")
            )
            self.progress.line(f"step {event.step_key} failed")
        elif kind == dg.DagsterEventType.ENGINE_EVENT and event.engine_event_data and event.engine_event_data.error:
            self.engine_errors.append(event.engine_event_data.error.message.strip())
        elif kind == dg.DagsterEventType.RUN_FAILURE:
            self.run_failure = event.message or self.run_failure
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            self.finished.materializations[materialization.asset_key.to_user_string()] = _values(materialization)
        elif kind == dg.DagsterEventType.STEP_OUTPUT:
            self.finished.outputs[event.step_key] = _values(event.step_output_data)


def follow(instance, run_id: str, progress: Progress, run_url: str, timeout_s=None, process=None, show_logs=True):
    """Waits for the run to finish, printing its progress; returns a FinishedRun or raises RunFailedError or
    RunTimedOutError. `process`: our own process running it, whose early end means the run cannot finish."""
    events = _RunEvents(progress=progress, show_logs=show_logs, finished=FinishedRun(run_id=run_id))
    cursor, queued_note_shown = None, False
    while True:
        run = instance.get_run_by_id(run_id)
        if run is None:
            events.status("starting")  # our own process is still loading the code
        else:
            # Status first, events after: a run that finished in between still has all its events read.
            cursor = _read_events(instance, run_id, cursor, events)
            if run.is_finished:
                break
            queued = run.status == dg.DagsterRunStatus.QUEUED
            if queued and progress.elapsed > QUEUED_NOTE_AFTER_S and not queued_note_shown:
                queued_note_shown = True
                progress.line(
                    "still queued: the daemon starts it once the instance's limits allow (one backup per database "
                    "at a time); check that `dagster dev` or `dagster-daemon run` is still running"
                )
        if process is not None and process.popen.poll() is not None:
            run = instance.get_run_by_id(run_id)  # it may have finished just before its process ended
            if run is None:
                raise RunFailedError(f"the run could not start ({process.ending()})", run_id)
            if not run.is_finished:
                instance.report_run_failed(run, f"the process running it ended unexpectedly ({process.ending()})")
            process = None  # the loop reads the run's end
        elif timeout_s is not None and progress.elapsed >= timeout_s:
            raise RunTimedOutError(
                f"timed out after {timeout_s:g} s: run {run_id} is still {events.shown_status} and keeps going. "
                f"Follow it with `backup-db follow {run_id}`"
                + (f", or in the Dagster UI at {run_url}" if run_url else "")
            )
        else:
            time.sleep(POLL_S)
    if run.status != dg.DagsterRunStatus.SUCCESS:
        errors = dict.fromkeys(events.step_errors or events.engine_errors)
        raise RunFailedError("\n".join(errors) or events.run_failure, run_id)
    return events.finished


def _read_events(instance, run_id: str, cursor, events: _RunEvents):
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, limit=1000)
        for record in page.records:
            events.take(record.event_log_entry)
        cursor = page.cursor
        if not page.has_more:
            return cursor


def _values(data) -> dict:
    return {key: getattr(value, "value", value) for key, value in (data.metadata or {}).items()}
