"""What every verb needs from the configuration: the database, its backup names, storage and the catalog.

No Dagster here: `list` and `info` get by with this module alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

from backup_pipeline.core.catalog import BackupCatalog, BackupEntry
from backup_pipeline.core.config import DatabaseSettings, Settings, load_settings
from backup_pipeline.core.names import BackupName, backup_name_prefix, check_safe_name
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.storage import BackupStorage, storage_from_settings
from backup_pipeline.defs.names import run_url


@dataclass
class CliContext:
    settings: Settings
    db: DatabaseSettings
    _catalogs: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, database_key: str | None = None) -> CliContext:
        settings = load_settings()
        return cls(settings=settings, db=settings.database(database_key))

    def source(self) -> PostgresTarget:
        """The database being backed up (its URL from DATABASE_URL, or the configured variable)."""
        return PostgresTarget.from_url(os.environ.get(self.db.url_env), self.db.url_env)

    @cached_property
    def name_prefix(self) -> str:
        return backup_name_prefix(self.db.name_prefix, self.source().dbname)

    @cached_property
    def storage(self) -> BackupStorage:
        return storage_from_settings(self.settings.storage)

    def catalog(self, with_encryption_key: bool = False) -> BackupCatalog:
        """The catalog of this database's backups; the encryption key only when a backup will be read."""
        if with_encryption_key not in self._catalogs:
            key = None
            if with_encryption_key:
                from backup_pipeline.core.encryption import load_key

                storage = self.settings.storage
                key_value = os.environ.get(storage.encryption_key_env) if storage.encryption_key_env else None
                key = load_key(key_value, storage.encryption_key_file)
            self._catalogs[with_encryption_key] = BackupCatalog(
                self.storage, self.db.storage_prefix, self.name_prefix, key
            )
        return self._catalogs[with_encryption_key]

    def backup_name(self, text: str) -> BackupName:
        check_safe_name(text)
        return BackupName.parse(text, self.name_prefix)

    def find(self, text: str) -> tuple[BackupName, BackupEntry]:
        """A complete backup by name; BackupNotFoundError (a usage error) when there is none."""
        name = self.backup_name(text)
        return name, self.catalog().find(name)

    def run_url(self, run_id: str) -> str:
        return run_url(self.settings.webserver_url, run_id)
