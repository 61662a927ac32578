"""Dagster resources: the database to back up and the backup storage.

Thin wrappers: the plumbing lives in core/postgres and core/storage/, shared with the command line.
Secrets arrive as dg.EnvVar, so Dagster stores the variable's name, never its value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.encryption import EncryptionKey, load_key
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.local_verify import LocalServerPlan
from backup_pipeline.core.names import backup_name_prefix
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.clients import ClientTools
from backup_pipeline.core.storage import (
    BackupStorage,
    S3StorageSettings,
    StorageSettings,
    open_storage,
    storage_settings_from,
)


@dataclass(frozen=True)
class DatabaseConnection:
    """One database to back up, and the server that hosts scratch databases for its verification.

    URLs are read from their variables here, in the process that uses them: Dagster stores no URL.
    """

    url_env: str = "DATABASE_URL"
    verify_url_env: str | None = None
    # The database on the server of url_env when it is not the URL's own (one a `servers:` entry took).
    dbname: str | None = None
    name_prefix: str | None = None
    verify_on: str = "local"
    verify_local_dir: str | None = None

    def target(self) -> PostgresTarget:
        target = PostgresTarget.from_url(os.environ.get(self.url_env), self.url_env)
        return target.with_database(self.dbname) if self.dbname else target

    def verify_place(self) -> PostgresTarget | LocalServerPlan:
        """Where verification restores: a throwaway local server (the default), or a server."""
        if self.verify_on == "local":
            return LocalServerPlan(parent=Path(self.verify_local_dir) if self.verify_local_dir else None)
        if self.verify_on == "url":
            if not self.verify_url_env:
                raise ConfigurationError(
                    "verify_on is url but no verify_url_env names the variable holding the verification server's URL"
                )
            return PostgresTarget.from_url(os.environ.get(self.verify_url_env), self.verify_url_env)
        return self.target()

    def verify_servers(self) -> list[PostgresTarget]:
        """The servers verification may have left scratch databases on: the source's, and the configured one."""
        servers = [self.target()]
        if self.verify_url_env and os.environ.get(self.verify_url_env):
            servers.append(PostgresTarget.from_url(os.environ[self.verify_url_env], self.verify_url_env))
        return servers

    def local_server_parent(self) -> Path | None:
        return Path(self.verify_local_dir) if self.verify_local_dir else None

    def tools(self) -> ClientTools:
        return ClientTools.locate()

    def backup_name_prefix(self) -> str:
        return backup_name_prefix(self.name_prefix, self.target().dbname)


class PostgresResource(dg.ConfigurableResource):
    """The PostgreSQL databases to back up: one resource for all of them.

    One resource per database would make every asset carry every resource, which costs the code location
    seconds to load per hundred databases; each database's settings travel with its assets instead.
    """

    def database(self, db: DatabaseSettings) -> DatabaseConnection:
        return DatabaseConnection(
            url_env=db.url_env,
            verify_url_env=db.verify_url_env,
            dbname=db.dbname,
            name_prefix=db.name_prefix,
            verify_on=db.verify_where,
            verify_local_dir=db.verify_local_dir,
        )


class BackupStorageResource(dg.ConfigurableResource):
    """Where backups are kept: one storage backend's settings (core/storage/), opened by its factory."""

    # The backend's settings as plain values (`backend` names the backend; unset ones left out, as Dagster's
    # config maps hold no nulls): its config takes only its own Config classes, and core never imports Dagster.
    # Read back as the backend's typed settings (`storage_settings`).
    settings: dict[str, Any]
    # dagster-aws's view of the S3 connection, credentials as dg.EnvVar (the UI shows the variables' names).
    # The client itself is built by core/storage/s3.py's s3_client, the one place that sets its retries,
    # timeouts and checksum mode, from `settings`; empty for a backend that is not S3.
    s3: S3Resource
    # dg.EnvVar("BACKUP_ENCRYPTION_KEY") when set: Dagster records the variable's name, never the key.
    encryption_key: str | None = None

    @property
    def storage_settings(self) -> StorageSettings:
        return storage_settings_from(self.settings)

    def storage(self) -> BackupStorage:
        return open_storage(self.storage_settings)

    def encryption(self) -> EncryptionKey | None:
        return load_key(self.encryption_key, self.storage_settings.encryption_key_file)

    def catalog(self, postgres: DatabaseConnection, storage_prefix: str) -> BackupCatalog:
        return BackupCatalog(self.storage(), storage_prefix, postgres.backup_name_prefix(), self.encryption())


def _env_var(name: str | None):
    """dg.EnvVar when the variable is set where the definitions load; None lets boto3/our checks decide."""
    return dg.EnvVar(name) if name and os.environ.get(name) else None


def postgres_resource() -> PostgresResource:
    return PostgresResource()


def storage_resource(settings: StorageSettings) -> BackupStorageResource:
    return BackupStorageResource(
        settings=settings.model_dump(exclude_none=True),
        s3=_s3_resource(settings),
        encryption_key=_env_var(settings.encryption_key_env),
    )


def _s3_resource(settings: StorageSettings) -> S3Resource:
    if not isinstance(settings, S3StorageSettings):
        return S3Resource()
    return S3Resource(
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=_env_var(settings.access_key_id_env),
        aws_secret_access_key=_env_var(settings.secret_access_key_env),
        max_attempts=settings.max_attempts,
    )
