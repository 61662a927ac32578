"""restore_verification: proof that a stored backup restores, and to the same rows that were dumped.

Part of each database's backup op (assets/backup.py), which a run may select alone to verify again."""

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.verify import verify_backup
from backup_pipeline.defs.assets.failures import fail_clearly
from backup_pipeline.defs.names import DefinitionNames
from backup_pipeline.defs.resources import BackupStorageResource, PostgresResource


def verification_spec(names: DefinitionNames) -> dg.AssetSpec:
    return dg.AssetSpec(
        names.asset_path("restore_verification"),
        deps=[dg.AssetKey(names.asset_path("offsite_backup"))],
        group_name=names.group,
        kinds={"postgres"},
        description=(
            "Downloads the stored backup, checks its sha256 against the manifest, pg_restores it into a scratch "
            "database (on a throwaway local PostgreSQL made for it, unless BACKUP_VERIFY_ON says otherwise), compares every table's row count with the manifest, then drops the scratch database. "
            "A failure fails the run, so the failure alert fires."
        ),
        skippable=True,
    )


def verify_partition(
    context,
    postgres: PostgresResource,
    backup_storage: BackupStorageResource,
    db: DatabaseSettings,
    partition_key: str,
) -> dg.MaterializeResult:
    """Verifies the backup of the run's partition; its materialization, or a failure saying what is wrong."""
    names = DefinitionNames(db)
    connection = postgres.database(db)
    with fail_clearly():
        catalog = backup_storage.catalog(connection, db.storage_prefix)
        name = BackupName(prefix=catalog.name_prefix, id=BackupId.parse(partition_key))
        outcome = verify_backup(
            catalog,
            name,
            connection.verify_place(),
            connection.tools(),
            log=context.log.info,
            stall_seconds=db.stall_seconds,
        )
    return dg.MaterializeResult(
        asset_key=names.asset_path("restore_verification"),
        metadata={
            "name": str(name),
            "verified": True,
            "sha256": outcome.manifest.sha256,
            "size_bytes": dg.MetadataValue.int(outcome.manifest.size_bytes),
            "tables": dg.MetadataValue.int(len(outcome.tables)),
            "rows": dg.MetadataValue.int(sum(outcome.tables.values())),
            "restore_duration_s": dg.MetadataValue.float(outcome.duration_s),
            "duration_s": dg.MetadataValue.float(outcome.duration_s),
            "pg_dump_version": outcome.manifest.pg_dump_version,
            "pg_restore_version": outcome.pg_restore_version,
            "server_version": outcome.server_version,
            # What the verification's role cannot create (or is never restored), so was left out: by name.
            "left_out_count": dg.MetadataValue.int(len(outcome.left_out)),
            "left_out": ", ".join(outcome.left_out),
            "verified_on": outcome.verified_on,
        },
    )
