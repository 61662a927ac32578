"""Waiting for a run: its status changes and our own log lines (bytes dumped, percent restored) as they come.

Reads the run's event log from the instance, so it follows runs started by the daemon and runs in a
process of our own alike, and `backup-db follow RUN_ID` can pick up a run another command started.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from backup_pipeline.cli.outcomes import DaemonGoneError, RunFailedError, RunTimedOutError
from backup_pipeline.cli.output import Progress

POLL_S = 0.5
QUEUED_NOTE_AFTER_S = 30.0
STATUS_WORDS = {
    dg.DagsterRunStatus.QUEUED: "queued",
    dg.DagsterRunStatus.NOT_STARTED: "starting",
    dg.DagsterRunStatus.STARTING: "starting",
    dg.DagsterRunStatus.STARTED: "running",
    dg.DagsterRunStatus.SUCCESS: "completed",
    dg.DagsterRunStatus.FAILURE: "failed",
    dg.DagsterRunStatus.CANCELING: "canceling",
    dg.DagsterRunStatus.CANCELED: "canceled",
}
# The same words from the run's events, so a status shows in order with the log lines around it.
LIFECYCLE_WORDS = {
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
class _RunEvents:
    progress: Progress
    show_logs: bool
    step_failures: list[str] = field(default_factory=list)
    engine_errors: list[str] = field(default_factory=list)
    run_failure: str | None = None
    finished: FinishedRun | None = None
    shown_status: str | None = None

    def status(self, word: str) -> None:
        if word != self.shown_status:
            self.progress.line(f"Status: {word}")
            self.shown_status = word

    def take(self, entry) -> None:
        if not entry.is_dagster_event:
            if self.show_logs and _level(entry.level) >= logging.INFO and entry.user_message:
                self.progress.line(entry.user_message)
            return
        event = entry.dagster_event
        kind = event.event_type
        if kind in LIFECYCLE_WORDS:
            self.status(LIFECYCLE_WORDS[kind])
        elif kind == dg.DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data
            described = data.user_failure_data.description if data.user_failure_data else None
            message = described or (data.error.message.strip() if data.error else f"step {event.step_key} failed")
            self.step_failures.append(message)
            self.progress.line(f"step {event.step_key} failed")
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            key = materialization.asset_key.to_user_string()
            self.finished.materializations[key] = _values(materialization.metadata)
        elif kind == dg.DagsterEventType.STEP_OUTPUT:
            self.finished.outputs[event.step_key] = _values(event.step_output_data.metadata)
        elif kind == dg.DagsterEventType.ENGINE_EVENT and event.engine_event_data and event.engine_event_data.error:
            self.engine_errors.append(event.engine_event_data.error.message.strip())
        if kind == dg.DagsterEventType.RUN_FAILURE:
            self.run_failure = event.message

    def failure_message(self) -> str:
        messages = list(dict.fromkeys(self.step_failures or self.engine_errors))
        return "\n".join(messages) or self.run_failure or "the run failed (see its logs in the Dagster UI)"


def follow(
    instance: dg.DagsterInstance,
    run_id: str,
    progress: Progress,
    run_url: str | None,
    timeout_s: float | None = None,
    process=None,
    show_logs: bool = True,
    queued_at: float | None = None,
) -> FinishedRun:
    """Waits for the run to finish, printing its progress; raises RunFailedError or RunTimedOutError.

    `queued_at`: when we queued the run; if no daemon heartbeat arrives after it while the run stays queued,
    raises DaemonGoneError (a daemon that stopped leaves a recent heartbeat behind for a while).
    """
    events = _RunEvents(progress=progress, show_logs=show_logs, finished=FinishedRun(run_id=run_id))
    cursor = None
    queued_note_shown = False
    while True:
        run = instance.get_run_by_id(run_id)
        if run is None:
            events.status("starting")  # our own process is still loading the code
        else:
            # Status first, events after: a run that finished in between still has all its events read.
            cursor = _read_events(instance, run_id, cursor, events)
            if run.is_finished:
                break
            if run.status == dg.DagsterRunStatus.QUEUED and queued_at is not None:
                _check_daemon_alive(instance, queued_at)
            queued = run.status == dg.DagsterRunStatus.QUEUED
            if queued and progress.elapsed > QUEUED_NOTE_AFTER_S and not queued_note_shown:
                queued_note_shown = True
                progress.line(
                    "still queued: the daemon starts it once the instance's limits allow (one backup per database "
                    "at a time); check that `dagster dev` or `dagster-daemon run` is still running"
                )
        if process is not None and not process.running():
            _process_ended(instance, run_id, process, events)
        if timeout_s is not None and progress.elapsed >= timeout_s:
            raise RunTimedOutError(
                f"timed out after {timeout_s:g} s: run {run_id} is still {events.shown_status} and keeps going. "
                f"Follow it with `backup-db follow {run_id}`"
                + (f", or in the Dagster UI at {run_url}" if run_url else "")
            )
        time.sleep(POLL_S)
    events.status(STATUS_WORDS.get(run.status, run.status.value.lower()))
    if run.status != dg.DagsterRunStatus.SUCCESS:
        raise RunFailedError(events.failure_message(), run_id)
    return events.finished


def _check_daemon_alive(instance, queued_at: float) -> None:
    from backup_pipeline.cli.launch import DAEMON_HEARTBEAT_TOLERANCE_S, latest_daemon_heartbeat

    if time.time() - queued_at < DAEMON_HEARTBEAT_TOLERANCE_S:
        return
    heartbeat = latest_daemon_heartbeat(instance)
    if heartbeat is None or heartbeat < queued_at:
        raise DaemonGoneError()


def _read_events(instance, run_id: str, cursor, events: _RunEvents):
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, limit=1000)
        for record in page.records:
            events.take(record.event_log_entry)
        cursor = page.cursor
        if not page.has_more:
            return cursor


def _process_ended(instance, run_id: str, process, events: _RunEvents) -> None:
    """Our run process exited: fine if the run finished; otherwise the run can never finish, so say why."""
    run = instance.get_run_by_id(run_id)
    if run is not None and run.is_finished:
        return
    detail = f"{process.ending()}: {_last_line(process.log_path)}; its output is in {process.log_path}"
    if run is None:
        raise RunFailedError(f"the run could not start ({detail})", run_id)
    message = f"the process running it ended unexpectedly ({detail})"
    instance.report_run_failed(run, message)
    raise RunFailedError(events.failure_message() if events.step_failures else message, run_id)


def _last_line(path: Path | None) -> str:
    if path is None or not path.exists():
        return "no output"
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def _level(level) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(str(level).upper())
    return number if isinstance(number, int) else logging.INFO


def _values(metadata) -> dict:
    return {key: getattr(value, "value", value) for key, value in (metadata or {}).items()}
