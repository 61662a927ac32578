"""Notices for runs that `backup-db` executes in its own process (cli/run_process.py).

The run-status sensors run in the daemon and watch the runs launched through this code location; a run
executed in process has no code location origin, so it is never theirs, and it is tagged ANNOUNCED_TAG so
that no sensor ever takes it up later. Its own process sends what the sensors would have sent: the same
events to the same channels, built from the run and its event log, and no sensor is invoked to do it.
"""

import dagster as dg

from backup_pipeline.core.config import Settings
from backup_pipeline.core.notify.notifier import Notifier
from backup_pipeline.defs.alerts.run_sensors import run_notice_events
from backup_pipeline.defs.names import ANNOUNCED_TAG

ANNOUNCER = "backup-db"
__all__ = ["ANNOUNCED_TAG", "ANNOUNCER", "announce_finished_run", "announcer"]


def announcer(settings: Settings, instance: dg.DagsterInstance):
    """announce_finished_run for these settings and instance, as run_lifecycle's failing of dead runs takes it."""
    return lambda run_id: announce_finished_run(settings, instance, run_id)


def announce_finished_run(settings: Settings, instance: dg.DagsterInstance, run_id: str) -> None:
    notifier = Notifier(settings)
    if not notifier.configured:
        return
    try:
        events = run_notice_events(instance, instance.get_run_by_id(run_id), settings)
        # One message per channel, as the sensors' warning and notice were one before.
        notifier.notify(events)
    except Exception as error:  # an alert must never change the outcome of the run it reports
        print(f"warning: the notice for run {run_id} was not sent: {type(error).__name__}")
