"""Discord alerts: run failures (also of runs whose process died), backup notices, the dead-man's switch and the
freshness check."""

import dagster as dg

from backup_pipeline.core.config import Settings
from backup_pipeline.defs.alerts.batches import batch_messages, is_batch
from backup_pipeline.defs.alerts.dead_runs import build_dead_run_sensor
from backup_pipeline.defs.alerts.discord import DiscordClient
from backup_pipeline.defs.alerts.freshness import build_freshness_checks, build_freshness_sensor
from backup_pipeline.defs.alerts.incidents import build_incident_sensor, groups
from backup_pipeline.defs.alerts.messages import Redactor
from backup_pipeline.defs.alerts.run_sensors import (
    backup_failure_text,
    is_quiet,
    make_discord_on_backup_success_sensor,
    make_discord_on_run_failure_sensor,
)


def alert_definitions(settings: Settings) -> dg.Definitions:
    client = DiscordClient(settings.discord)
    redact = Redactor.from_settings(settings)
    incidents = build_incident_sensor(settings, client, redact)
    return dg.Definitions(
        sensors=[
            make_discord_on_run_failure_sensor(
                client,
                text_fn=backup_failure_text(settings),
                redact=redact,
                webserver_base_url=settings.webserver_url,
                many_messages_fn=lambda instance, run: (
                    batch_messages(instance, run, settings, notices=_batch_notices(settings, run))
                    if is_batch(run)
                    else None
                ),
                grouped=(lambda instance, run: groups(settings, instance, run)) if incidents else lambda i, r: False,
            ),
            *([incidents] if incidents else []),
            make_discord_on_backup_success_sensor(client, settings, redact=redact),
            build_freshness_sensor(settings, client, redact),
            build_dead_run_sensor(settings),
        ],
        asset_checks=[build_freshness_checks(list(settings.databases))],
    )


def _batch_notices(settings: Settings, run: dg.DagsterRun) -> bool:
    """A failed batch also announces the databases it did back up, as the success sensor would."""
    return settings.discord.success_notices and not is_quiet(run)


__all__ = ["DiscordClient", "alert_definitions", "make_discord_on_run_failure_sensor"]
