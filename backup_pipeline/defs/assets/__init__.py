"""The asset graph of each database: database_dump → offsite_backup → restore_verification → backup_retention
(the last, unpartitioned, is one multi-asset for all databases: build_retention_assets)."""

from __future__ import annotations

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.defs.assets.backup import build_backup_asset
from backup_pipeline.defs.assets.retention import build_retention_assets
from backup_pipeline.defs.names import DefinitionNames


def build_database_assets(
    db: DatabaseSettings, partitions: dg.DynamicPartitionsDefinition, storage_kind: str = "s3"
) -> list:
    """storage_kind labels the storage-side assets in the UI: "s3" for a bucket, "file" for a local folder."""
    names = DefinitionNames(db)
    return [
        build_backup_asset(db, names, partitions, storage_kind),
    ]


__all__ = ["build_database_assets", "build_retention_assets"]
