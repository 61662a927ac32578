"""The one place for the names of the Dagster definitions: asset keys, jobs, ops, partitions, resource keys,
run tags, metadata keys and links to the UI.

With one database (DATABASE_URL alone) the names are plain (`backup_job`, `database_dump`); with several,
each database's names carry its key (`billing__backup_job`, `billing/database_dump`).
No Dagster import here: the command line uses these names too.
"""

from __future__ import annotations

from dataclasses import dataclass

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.webserver import asset_link, run_link

DATABASE_TAG = "backup/database"
BACKUP_ID_TAG = "backup/id"
BACKUP_TYPE_TAG = "backup/type"
QUIET_TAG = "backup/quiet"
REQUESTED_BY_TAG = "backup/requested_by"  # who asked: a request_backup run's id, or backup-db
RUN_KIND_TAG = "backup/kind"
PARTITION_TAG = "dagster/partition"  # Dagster's own tag for a run's partition
# What the backup protects (e.g. a migration's name): stored in its manifest, shown in the UI and Discord.
LABEL_TAG = "backup/label"
STORAGE_RESOURCE_KEY = "backup_storage"
# On a failed step: the class name of our error (core/errors.py, core/prune.py), so the alerts tell a
# refused prune from a failed one by its type, not by its wording.
ERROR_CLASS_METADATA = "backup/error_class"


def run_url(webserver_url: str | None, run_id: str) -> str | None:
    """The run's page in the Dagster UI: under DAGSTER_WEBSERVER_URL, else a webserver running here; None
    when neither is known, so messages leave the link out rather than point nowhere."""
    return run_link(webserver_url, run_id)


def asset_url(webserver_url: str | None, asset_path: list[str]) -> str | None:
    return asset_link(webserver_url, list(asset_path))


@dataclass(frozen=True)
class DefinitionNames:
    db: DatabaseSettings

    def _name(self, base: str) -> str:
        return base if self.db.is_default else f"{self.db.key}__{base}"

    @property
    def key_prefix(self) -> list[str]:
        return [] if self.db.is_default else [self.db.key]

    def asset_path(self, name: str) -> list[str]:
        return [*self.key_prefix, name]

    def asset_op(self, name: str) -> str:
        """The op of an asset, which run config addresses: `billing__backup_retention`."""
        return "__".join(self.asset_path(name))

    @property
    def group(self) -> str:
        return "backups" if self.db.is_default else f"{self.db.key}_backups"

    @property
    def partitions(self) -> str:
        return "backups" if self.db.is_default else f"{self.db.key}_backups"

    @property
    def postgres_resource(self) -> str:
        return "postgres" if self.db.is_default else f"postgres_{self.db.key}"

    @property
    def backup_job(self) -> str:
        return self._name("backup_job")

    @property
    def verify_job(self) -> str:
        return self._name("verify_job")

    @property
    def prune_job(self) -> str:
        return self._name("prune_job")

    @property
    def restore_job(self) -> str:
        return self._name("restore_job")

    @property
    def request_job(self) -> str:
        return self._name("request_backup")

    @property
    def request_op(self) -> str:
        return self._name("backup_request")

    @property
    def restore_op(self) -> str:
        return self._name("restore_backup")

    @property
    def schedule(self) -> str:
        return self._name("daily_backup_schedule")

    @property
    def request_sensor(self) -> str:
        return self._name("backup_request_sensor")

    @property
    def freshness_sensor(self) -> str:
        return self._name("backup_freshness_sensor")
