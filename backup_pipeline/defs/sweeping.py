"""Before a run's work: sweep up what killed runs of this database left behind (core/sweep.py)."""

from __future__ import annotations

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.sweep import SweepReport, sweep_leftovers
from backup_pipeline.defs.names import POSTGRES_RESOURCE_KEY, STORAGE_RESOURCE_KEY


def sweep_for(context: dg.OpExecutionContext, db: DatabaseSettings, *servers: PostgresTarget) -> SweepReport:
    """Password files and local verification servers here; scratch databases on the database's server, its
    verification server and `servers`; the database's unfinished uploads. What cannot be swept is logged, never fails the run."""
    postgres = getattr(context.resources, POSTGRES_RESOURCE_KEY).database(db)
    storage = getattr(context.resources, STORAGE_RESOURCE_KEY)
    catalog = storage.catalog(postgres, db.storage_prefix)
    target = postgres.target()
    return sweep_leftovers(
        catalog,
        target,
        [*postgres.verify_servers(), *servers],
        log=context.log.info,
        local_server_folder=postgres.local_server_parent(),
    )
