"""The code location: every configured database's assets, jobs, schedule and sensors, and the resources.

`defs` is a `@dg.definitions` function: importing this module reads no configuration and builds nothing;
Dagster (workspace.yaml, `dg`, code servers) calls it when it loads the location. Loads with nothing
configured (the UI opens; a run then fails saying what to set).
"""

from __future__ import annotations

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings, load_settings
from backup_pipeline.defs.alerts import alert_definitions
from backup_pipeline.defs.assets import build_database_assets
from backup_pipeline.defs.automation import build_daily_schedule, build_request_sensor
from backup_pipeline.defs.jobs import build_backup_jobs
from backup_pipeline.defs.names import STORAGE_RESOURCE_KEY, DefinitionNames
from backup_pipeline.defs.resources import postgres_resource, storage_resource


def database_definitions(db: DatabaseSettings, storage_kind: str = "s3") -> dg.Definitions:
    names = DefinitionNames(db)
    partitions = dg.DynamicPartitionsDefinition(name=names.partitions)
    return dg.Definitions(
        assets=build_database_assets(db, partitions, storage_kind),
        jobs=build_backup_jobs(db, partitions),
        schedules=[build_daily_schedule(db, partitions)],
        sensors=[build_request_sensor(db, partitions)],
        resources={names.postgres_resource: postgres_resource(db)},
    )


def storage_kind(settings: Settings) -> str:
    return "s3" if settings.storage.uses_s3 else "file"


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    return dg.Definitions.merge(
        *(database_definitions(db, storage_kind(settings)) for db in settings.databases),
        dg.Definitions(resources={STORAGE_RESOURCE_KEY: storage_resource(settings.storage)}),
        alert_definitions(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
