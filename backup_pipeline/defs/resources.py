"""Dagster resources: the database to back up and the backup storage.

Thin wrappers: the plumbing lives in postgres.py and storage.py, shared with the command line.
Secrets arrive as dg.EnvVar, so Dagster stores the variable's name, never its value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config import DatabaseSettings, StorageSettings
from backup_pipeline.core.encryption import EncryptionKey, load_key
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.local_verify import LocalServerPlan
from backup_pipeline.core.names import backup_name_prefix
from backup_pipeline.core.postgres import ClientTools, PostgresTarget
from backup_pipeline.core.storage import BackupStorage, LocalStorage, storage_from_settings


@dataclass(frozen=True)
class DatabaseConnection:
    """One database to back up, and the server that hosts scratch databases for its verification.

    URLs are read from their variables here, in the process that uses them: Dagster stores no URL.
    """

    url_env: str = "DATABASE_URL"
    verify_url_env: str | None = None
    name_prefix: str | None = None
    verify_on: str = "local"
    verify_local_dir: str | None = None

    def target(self) -> PostgresTarget:
        return PostgresTarget.from_url(os.environ.get(self.url_env), self.url_env)

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
            name_prefix=db.name_prefix,
            verify_on=db.verify_where,
            verify_local_dir=db.verify_local_dir,
        )


class BackupStorageResource(dg.ConfigurableResource):
    """Where backups are kept: an S3-compatible bucket through dagster-aws, or a local folder."""

    bucket: str | None = None
    local_dir: str = "./backups"
    # Where and as whom (shown in the UI's resource config); the client itself is built by core/storage.py's
    # s3_client, the one place that sets its retries, timeouts and checksum mode.
    s3: S3Resource
    checksums: str | None = None
    # dg.EnvVar("BACKUP_ENCRYPTION_KEY") when set: Dagster records the variable's name, never the key.
    encryption_key: str | None = None
    encryption_key_file: str | None = None
    # Names of the variables the user set (never their values), so messages name those.
    bucket_env: str = "BACKUP_S3_BUCKET"
    endpoint_env: str = "BACKUP_S3_ENDPOINT_URL"
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None

    def storage(self) -> BackupStorage:
        if self.bucket:
            named = StorageSettings(
                bucket=self.bucket,
                endpoint_url=self.s3.endpoint_url,
                region=self.s3.region_name,
                max_attempts=self.s3.max_attempts,
                checksums=self.checksums,
                access_key_id_env=self.access_key_id_env,
                secret_access_key_env=self.secret_access_key_env,
                bucket_env=self.bucket_env,
                endpoint_env=self.endpoint_env,
            )
            return storage_from_settings(named)
        return LocalStorage(self.local_dir)

    def encryption(self) -> EncryptionKey | None:
        return load_key(self.encryption_key, self.encryption_key_file)

    def catalog(self, postgres: DatabaseConnection, storage_prefix: str) -> BackupCatalog:
        return BackupCatalog(self.storage(), storage_prefix, postgres.backup_name_prefix(), self.encryption())


def _env_var(name: str | None):
    """dg.EnvVar when the variable is set where the definitions load; None lets boto3/our checks decide."""
    return dg.EnvVar(name) if name and os.environ.get(name) else None


def postgres_resource() -> PostgresResource:
    return PostgresResource()


def storage_resource(settings: StorageSettings) -> BackupStorageResource:
    s3 = S3Resource(
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=_env_var(settings.access_key_id_env),
        aws_secret_access_key=_env_var(settings.secret_access_key_env),
        max_attempts=settings.max_attempts,
    )
    return BackupStorageResource(
        bucket=settings.bucket,
        local_dir=settings.local_dir,
        s3=s3,
        checksums=settings.checksums,
        encryption_key=_env_var(settings.encryption_key_env),
        encryption_key_file=settings.encryption_key_file,
        bucket_env=settings.bucket_env,
        endpoint_env=settings.endpoint_env,
        access_key_id_env=settings.access_key_id_env,
        secret_access_key_env=settings.secret_access_key_env,
    )
