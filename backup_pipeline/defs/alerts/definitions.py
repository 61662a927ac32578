"""The alert sensors and freshness checks of one deployment, as Definitions merged into the code location."""

import dagster as dg

from backup_pipeline.core.config import Settings
from backup_pipeline.core.notify.notifier import Notifier
from backup_pipeline.defs.alerts.batches import batch_events, is_batch
from backup_pipeline.defs.alerts.dead_runs import build_dead_run_sensor
from backup_pipeline.defs.alerts.freshness import build_freshness_checks, build_freshness_sensor
from backup_pipeline.defs.alerts.incidents import build_incident_sensor, grouping, groups
from backup_pipeline.defs.alerts.run_sensors import (
    backup_failure_event,
    is_quiet,
    make_discord_on_backup_success_sensor,
    make_discord_on_run_failure_sensor,
)


def alert_definitions(settings: Settings) -> dg.Definitions:
    notifier = Notifier(settings)
    incidents = build_incident_sensor(settings, notifier)
    return dg.Definitions(
        sensors=[
            make_discord_on_run_failure_sensor(
                notifier,
                event_fn=backup_failure_event(settings),
                webserver_base_url=settings.webserver_url,
                many_events_fn=lambda instance, run: (
                    batch_events(
                        instance,
                        run,
                        settings,
                        notices=_batch_notices(settings, run),
                        grouped=incidents is not None and grouping(settings, run),
                    )
                    if is_batch(run)
                    else None
                ),
                grouped=(lambda instance, run: groups(settings, instance, run)) if incidents else None,
            ),
            *([incidents] if incidents else []),
            make_discord_on_backup_success_sensor(notifier, settings),
            build_freshness_sensor(settings, notifier),
            build_dead_run_sensor(settings),
        ],
        asset_checks=[build_freshness_checks(list(settings.databases))],
    )


def _batch_notices(settings: Settings, run: dg.DagsterRun) -> bool:
    """A failed batch also announces the databases it did back up, as the success sensor would."""
    return settings.discord.success_notices and not is_quiet(run)
