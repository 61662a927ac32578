"""Backup storage: where backups are kept, behind one interface.

The one place that talks to storage; backup, verification, retention, restore and the command line share
it. base.py: the interface and the settings' common part; local.py, s3.py: one backend each, with its
settings type; factory.py: the registry and `open_storage`; reader.py: resumed downloads.
"""

from backup_pipeline.core.storage.base import BackupStorage, StorageSettings, StoredObject, UnfinishedUpload
from backup_pipeline.core.storage.factory import choose_storage, open_storage, storage_settings_from
from backup_pipeline.core.storage.local import LocalStorageSettings
from backup_pipeline.core.storage.reader import DownloadCutShort
from backup_pipeline.core.storage.s3 import S3StorageSettings

__all__ = [
    "BackupStorage",
    "DownloadCutShort",
    "LocalStorageSettings",
    "S3StorageSettings",
    "StorageSettings",
    "StoredObject",
    "UnfinishedUpload",
    "choose_storage",
    "open_storage",
    "storage_settings_from",
]
