import dagster as dg

from backup_pipeline.catalog import BackupCatalog
from backup_pipeline.settings import load_settings
from backup_pipeline.storage import storage_from_settings
from tests.support.pipeline import run_backup


def test_backup_to_moto_lands_with_manifest(s3_env):
    instance = dg.DagsterInstance.get()
    result, backup_id = run_backup(instance)
    assert result.success
    settings = load_settings()
    prefix = s3_env["DATABASE_URL"].rsplit("/", 1)[1]
    catalog = BackupCatalog(storage_from_settings(settings.storage), "db-backups", prefix)
    [entry] = catalog.complete()
    assert str(entry.name) == f"{prefix}_{backup_id}" and entry.verified
