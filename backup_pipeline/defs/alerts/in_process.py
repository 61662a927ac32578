"""Alerts for runs that `backup-db` executes in its own process because no daemon is running.

The run-status sensors live in the daemon and watch only runs launched through this code location, so
such a run would end unannounced. When it ends, the same sensors are evaluated once, directly, for it:
one message per run, with the same text and redaction, and never two (the daemon's sensors skip it).
"""

import dagster as dg

FAILURE_SENSOR = "discord_on_run_failure"
SUCCESS_SENSOR = "discord_on_backup_success"


def announce_in_process_run(defs: dg.Definitions, instance: dg.DagsterInstance, result) -> None:
    if result.success:
        name, event = SUCCESS_SENSOR, result.get_run_success_event()
    else:
        name, event = FAILURE_SENSOR, result.get_run_failure_event()
    sensor = defs.get_sensor_def(name)
    context = dg.build_run_status_sensor_context(
        sensor_name=name, dagster_event=event, dagster_instance=instance, dagster_run=result.dagster_run
    )
    try:
        sensor(context)
    except Exception as error:  # an alert must never change the outcome of the run it reports
        print(f"warning: the Discord notice for run {result.run_id} was not sent: {type(error).__name__}")
