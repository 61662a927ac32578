"""Before a run's work: sweep up what killed runs of this database left behind (core/sweep.py)."""

from __future__ import annotations

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.sweep import SweepReport, sweep_leftovers
from backup_pipeline.defs.resources import BackupStorageResource, PostgresResource


def sweep_for(
    context: dg.OpExecutionContext,
    postgres: PostgresResource,
    backup_storage: BackupStorageResource,
    db: DatabaseSettings,
    *servers: PostgresTarget,
) -> SweepReport:
    """Password files and local verification servers here; scratch databases on the database's server, its
    verification server and `servers`; the database's unfinished uploads. What cannot be swept is logged, never fails the run."""
    connection = postgres.database(db)
    catalog = backup_storage.catalog(connection, db.storage_prefix)
    return sweep_leftovers(
        catalog,
        connection.target(),
        [*connection.verify_servers(), *servers],
        log=context.log.info,
        local_server_folder=connection.local_server_parent(),
    )
