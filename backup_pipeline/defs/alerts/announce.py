"""Discord notices for runs that `backup-db` executes in its own process (cli/run_process.py).

The run-status sensors run in the daemon and watch the runs launched through this code location; a run
executed in process has no code location origin, so it is never theirs, and it is tagged ANNOUNCED_TAG so
that no sensor ever takes it up later. Its own process posts the message the sensors would have posted: the
same text and redaction, built from the run and its event log, and no sensor is invoked to do it.
"""

import dagster as dg

from backup_pipeline.core.config import Settings
from backup_pipeline.defs.alerts.discord import DiscordClient
from backup_pipeline.defs.alerts.messages import Redactor
from backup_pipeline.defs.alerts.run_sensors import run_notice_text
from backup_pipeline.defs.names import ANNOUNCED_TAG

ANNOUNCER = "backup-db"
__all__ = ["ANNOUNCED_TAG", "ANNOUNCER", "announce_finished_run", "announcer"]


def announcer(settings: Settings, instance: dg.DagsterInstance):
    """announce_finished_run for these settings and instance, as run_lifecycle's failing of dead runs takes it."""
    return lambda run_id: announce_finished_run(settings, instance, run_id)


def announce_finished_run(settings: Settings, instance: dg.DagsterInstance, run_id: str) -> None:
    client = DiscordClient(settings.discord)
    if not client.configured:
        return
    try:
        text = run_notice_text(instance, instance.get_run_by_id(run_id), settings)
        if text is not None:
            client.post(Redactor.from_settings(settings)(text))
    except Exception as error:  # an alert must never change the outcome of the run it reports
        print(f"warning: the Discord notice for run {run_id} was not sent: {type(error).__name__}")
