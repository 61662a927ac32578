"""The code location: every configured database's assets, partitions and resources; the jobs, schedules and
sensors that serve all of them.

Their number does not grow with the databases (see defs/names.py): one request sensor, one freshness
sensor, one set of alert sensors, one schedule per distinct cron.

`defs` is a `@dg.definitions` function: importing this module reads no configuration and builds nothing;
Dagster (workspace.yaml, `dg`, code servers) calls it when it loads the location. Loads with nothing
configured (the UI opens; a run then fails saying what to set).
"""

from __future__ import annotations

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.enrolled import load_all_settings as load_settings
from backup_pipeline.core.notify.notifier import Notifier
from backup_pipeline.defs.alerts.definitions import alert_definitions
from backup_pipeline.defs.assets import build_database_assets, build_retention_assets
from backup_pipeline.defs.automation import (
    build_backup_schedules,
    build_batch_sensor,
    build_request_sensor,
    build_retention_job,
    make_retention_on_backup_success_sensor,
)
from backup_pipeline.defs.batches import build_batch_job
from backup_pipeline.defs.enrolment import build_enrolment_sensor
from backup_pipeline.defs.jobs import build_named_asset_jobs, build_request_job, build_restore_job
from backup_pipeline.defs.names import POSTGRES_RESOURCE_KEY, STORAGE_RESOURCE_KEY, DefinitionNames
from backup_pipeline.defs.resources import postgres_resource, storage_resource


def database_assets(db: DatabaseSettings, storage_kind: str = "s3") -> list:
    partitions = dg.DynamicPartitionsDefinition(name=DefinitionNames(db).partitions)
    return build_database_assets(db, partitions, storage_kind)


def storage_kind(settings: Settings) -> str:
    return settings.storage.kind


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    named_jobs = [
        job for db in settings.databases if DefinitionNames(db).named_jobs() for job in build_named_asset_jobs(db)
    ]
    backup_job = next((job for job in named_jobs if job.name == "backup_job"), None)
    retention_job = build_retention_job(settings)
    prune_job = retention_job or next(job for job in named_jobs if job.name == "prune_job")
    # Several databases: every backup a request asks for is a backup_batch run (defs/batches.py).
    batch_job = build_batch_job(settings) if retention_job else None
    enrolment = build_enrolment_sensor(settings, Notifier(settings))
    return dg.Definitions.merge(
        dg.Definitions(
            assets=[
                *(asset for db in settings.databases for asset in database_assets(db, storage_kind(settings))),
                build_retention_assets(list(settings.databases), storage_kind(settings)),
            ],
            jobs=[*named_jobs, *([retention_job, batch_job] if retention_job else []), build_request_job(settings)]
            + [build_restore_job(settings)],
            schedules=build_backup_schedules(settings),
            sensors=[
                build_request_sensor(settings, backup_job or batch_job),
                make_retention_on_backup_success_sensor(settings, prune_job),
                *([build_batch_sensor(settings, batch_job)] if batch_job else []),
                *([enrolment] if enrolment else []),
            ],
            # Every run's steps in one process: a backup run's steps follow one another anyway, and each
            # process of its own would load the code location again (seconds with hundreds of databases).
            executor=dg.in_process_executor,
            resources={
                STORAGE_RESOURCE_KEY: storage_resource(settings.storage),
                POSTGRES_RESOURCE_KEY: postgres_resource(),
            },
        ),
        alert_definitions(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
