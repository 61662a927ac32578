"""What every verb needs from the configuration: the database, its backup names, storage and the catalog.

No Dagster here: `list` and `info` get by with this module alone.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from functools import cached_property

from backup_pipeline.core.catalog import BackupCatalog, BackupEntry
from backup_pipeline.core.config import CONFIG_FILE_ENV, DatabaseSettings, Settings
from backup_pipeline.core.enrolled import load_all_settings as load_settings
from backup_pipeline.core.errors import BackupError, BackupNotFoundError, ConfigurationError
from backup_pipeline.core.names import BackupName, backup_name_prefix, check_safe_name
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.storage import BackupStorage, open_storage
from backup_pipeline.core.streams import counted
from backup_pipeline.defs.names import run_url

# What NAME may be instead of a backup's name: the newest complete backup (of --type, when given).
LATEST = "latest"


@dataclass
class CliContext:
    settings: Settings
    db: DatabaseSettings
    _catalogs: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, database_key: str | None = None, any_database: bool = False) -> CliContext:
        """`any_database`: a verb about every database (`list --all`) needs no --database among several."""
        settings = load_settings()
        if any_database and database_key is None:
            return cls(settings=settings, db=settings.databases[0])
        return cls(settings=settings, db=choose_database(settings, database_key))

    def source(self) -> PostgresTarget:
        """The database being backed up (its URL from DATABASE_URL, or the configured variable)."""
        return self.db.target()

    @cached_property
    def name_prefix(self) -> str:
        return backup_name_prefix(self.db.name_prefix, self.source().dbname)

    @cached_property
    def storage(self) -> BackupStorage:
        return open_storage(self.settings.storage)

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

    def backup_name(self, text: str, backup_type: str | None = None) -> BackupName:
        """NAME as the user typed it, or `latest` (of `backup_type`, when given): the newest complete backup."""
        if text == LATEST:
            return self.latest(backup_type).name
        if backup_type is not None:
            raise ConfigurationError(
                f"--type goes with `latest` (the newest backup of that type); '{text[:80]}' already names one backup"
            )
        check_safe_name(text)
        try:
            return BackupName.parse(text, self.name_prefix)
        except ConfigurationError as error:
            raise ConfigurationError(f"{error}{self.did_you_mean(text)}") from None

    def latest(self, backup_type: str | None = None) -> BackupEntry:
        """The newest complete backup (of `backup_type`) not stamped in the future: a backup whose timestamp is
        ahead of this machine's clock came from a wrong clock, and taking it would roll back to the wrong day."""
        from backup_pipeline.cli.output import age, note, warn

        kind = f"{backup_type} " if backup_type else ""
        entries = self.catalog().complete(backup_type)
        future = [entry for entry in entries if entry.in_future()]
        for entry in future:
            warn(
                f"`latest` skips {entry.name}: it is stamped {entry.created_at:%Y-%m-%d %H:%M:%S} UTC, "
                f"{age(entry.created_at)} of this machine's clock (a server or machine with a wrong clock took it); "
                "name it to use it anyway"
            )
        entries = [entry for entry in entries if not entry.in_future()]
        if not entries:
            skipped = f" (only {counted(len(future), 'backup')} stamped in the future)" if future else ""
            raise BackupNotFoundError(
                f"there is no {kind}backup of {self.name_prefix} in {self.storage.describe()}{skipped}, so no "
                f"`latest`. {self.where_hint()}"
            )
        newest = entries[0]
        verified = "verified" if newest.verified else "not verified yet"
        note(f"latest {kind}backup: {newest.name} ({age(newest.created_at)} old, {verified})")
        return newest

    def find(self, text: str, backup_type: str | None = None) -> tuple[BackupName, BackupEntry]:
        """A complete backup by name (or `latest`); BackupNotFoundError (a usage error) when there is none."""
        name = self.backup_name(text, backup_type)
        return name, self.catalog().find(name)

    def where_hint(self, suggest_list_all: bool = True) -> str:
        """What to set when the backups are somewhere else: the variables that say where this command looks."""
        storage = self.settings.storage
        local_dir = getattr(storage, "local_dir", None)
        if local_dir is not None:
            where = f"BACKUP_LOCAL_DIR (here: {local_dir}), or BACKUP_S3_BUCKET for a bucket"
        else:
            bucket_env = getattr(storage, "bucket_env", "BACKUP_S3_BUCKET")
            where = (
                f"{bucket_env} and BACKUP_S3_ENDPOINT_URL (here: {self.storage.describe()}), "
                f"BACKUP_S3_PREFIX (here: '{self.db.storage_prefix}')"
            )
        hint = (
            f"Backups kept elsewhere? Set {where}, and BACKUP_NAME_PREFIX (here: '{self.name_prefix}') as the "
            "commands that made them had them, and DAGSTER_HOME for their runs"
        )
        return hint + ("; `backup-db list --all` lists every database's backups here" if suggest_list_all else "")

    def did_you_mean(self, text: str) -> str:
        """' (did you mean app_manual_20260113_150000?)' for a name close to an existing backup's, else ''."""
        base = text.strip().removesuffix(".dump")
        try:
            names = [str(entry.name) for entry in self.catalog().complete()]
        except BackupError:
            return ""  # storage unreadable: the error at hand says enough
        if not base.startswith(f"{self.name_prefix}_"):
            base = f"{self.name_prefix}_{base}"
        close = difflib.get_close_matches(base, names, n=3, cutoff=0.75)
        return f" (did you mean {' or '.join(close)}?)" if close else ""

    def run_url(self, run_id: str) -> str | None:
        """The run's page in the Dagster UI, or None when no UI is known (DAGSTER_WEBSERVER_URL or a running one)."""
        return run_url(self.settings.webserver_url, run_id)


def choose_database(settings: Settings, key: str | None) -> DatabaseSettings:
    """The database `--database KEY` names (or the only one); an unknown key is told the keys there are, and the
    closest one."""
    keys = [db.key for db in settings.databases]
    if key is None or key in keys:
        return settings.database(key)
    if not os.environ.get(CONFIG_FILE_ENV):
        raise ConfigurationError(
            f"--database {key[:60]}: only one database is configured (DATABASE_URL's) and it has no key to choose; "
            f"--database picks one of the databases listed in a databases file ({CONFIG_FILE_ENV}). Leave "
            f"--database out, or set {CONFIG_FILE_ENV}"
        )
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    hint = f" Did you mean --database {close[0]}?" if close else ""
    raise ConfigurationError(
        f"no database '{key[:60]}' is configured in {os.environ[CONFIG_FILE_ENV]}.{hint} Its databases: "
        f"{', '.join(keys)}"
    )
