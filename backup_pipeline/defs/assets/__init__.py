"""The asset graph of one database: database_dump → offsite_backup → restore_verification → backup_retention."""

from __future__ import annotations

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.defs.assets.backup import build_backup_asset
from backup_pipeline.defs.assets.retention import build_retention_asset
from backup_pipeline.defs.assets.verification import build_verification_asset
from backup_pipeline.defs.names import DefinitionNames


def build_database_assets(
    db: DatabaseSettings, partitions: dg.DynamicPartitionsDefinition, storage_kind: str = "s3"
) -> list:
    """storage_kind labels the storage-side assets in the UI: "s3" for a bucket, "file" for a local folder."""
    names = DefinitionNames(db)
    return [
        build_backup_asset(db, names, partitions, storage_kind),
        build_verification_asset(db, names, partitions),
        build_retention_asset(db, names, partitions, storage_kind),
    ]
