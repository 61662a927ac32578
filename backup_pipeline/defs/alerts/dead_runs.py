"""The sensor that fails runs whose process died (run_lifecycle.py), so they alert and leave the queue."""

from __future__ import annotations

import dagster as dg

from backup_pipeline.core.config import Settings
from backup_pipeline.core.process_owner import this_host
from backup_pipeline.defs.alerts.announce import announcer
from backup_pipeline.defs.names import DEAD_RUN_SENSOR
from backup_pipeline.defs.run_lifecycle import fail_dead_runs

DEAD_RUN_SENSOR_INTERVAL_S = 30


def build_dead_run_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(
        name=DEAD_RUN_SENSOR,
        minimum_interval_seconds=DEAD_RUN_SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Fails runs that `backup-db` started in a process of its own on this host when that process has "
            "died (killed, out of memory), and sends their failure to every alert channel, so that they alert and stop "
            "holding their database's place in the run queue. Runs the daemon launched are the run monitor's."
        ),
    )
    def dead_run_sensor(context: dg.SensorEvaluationContext):
        failed = fail_dead_runs(context.instance, announcer(settings, context.instance), context.log.info)
        if not failed:
            return dg.SkipReason(f"no unfinished run on {this_host()} has lost its process")
        return dg.SkipReason(f"failed {len(failed)} run(s) whose process died: {', '.join(failed)}")

    return dead_run_sensor
