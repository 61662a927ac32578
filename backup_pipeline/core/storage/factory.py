"""From settings to a backend: the registry of storage backends.

A new backend (GCS, Azure Blob) is one module beside local.py and s3.py, with its settings type and its
`BackupStorage` subclass, and one line in BACKENDS (its variables declared in core/settings/storage.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.storage.base import BackupStorage, StorageSettings
from backup_pipeline.core.storage.local import LocalStorage, LocalStorageSettings
from backup_pipeline.core.storage.s3 import S3Storage, S3StorageSettings

# Settings type → the backend it opens. The first whose settings are chosen by the configuration wins: the
# local folder, chosen whenever no other is, stays last.
BACKENDS: dict[type[StorageSettings], type[BackupStorage]] = {
    S3StorageSettings: S3Storage,
    LocalStorageSettings: LocalStorage,
}


def choose_storage(values: Mapping[str, Any]) -> StorageSettings:
    """The settings of the backend the storage section's checked values choose (a bucket: S3)."""
    settings_type = next(t for t in BACKENDS if t.chosen_by(values))
    return settings_type.from_values(values)


def open_storage(settings: StorageSettings) -> BackupStorage:
    """The backend for `settings`: the one place storage is opened, by the Dagster resource and the CLI."""
    backend = BACKENDS.get(type(settings))
    if backend is None:
        raise ConfigurationError(f"no storage backend is registered for {type(settings).__name__}")
    return backend.from_settings(settings)


def storage_settings_from(values: Mapping[str, Any]) -> StorageSettings:
    """Settings back from plain values (`settings.model_dump()`), the backend chosen by their `backend` name."""
    name = values.get("backend")
    for settings_type in BACKENDS:
        if settings_type.model_fields["backend"].default == name:
            return settings_type.model_validate(values)
    known = ", ".join(sorted(t.model_fields["backend"].default for t in BACKENDS))
    raise ConfigurationError(f"unknown storage backend '{name}': use one of {known}")
