"""Configuration: typed settings, read from the environment (and, for several databases, a config file) by
config_loading.py.

Each setting is declared once, in core/settings/ (its variable, file field, type, bounds, default and help);
the models here are built from those declarations over a base class that holds the rules across settings and
the helpers. Pydantic with no Dagster import, so the `backup-db` command reads them cheaply. A bad value
raises ConfigurationError naming the variable and what to put in it. Secrets are not read here: settings hold
the *names* of the variables that carry them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, SerializeAsAny, ValidationInfo, create_model, model_validator

from backup_pipeline.core import config_fields as fields
from backup_pipeline.core.config_fields import IN_ENVIRONMENT, IN_FILE, CompleteMessage
from backup_pipeline.core.dump_options import DumpOptions
from backup_pipeline.core.enrolment import ServerEntry
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.settings import BY_NAME, SETTINGS
from backup_pipeline.core.settings.declaration import DATABASE, DEPLOYMENT, DISCORD, STORAGE, model_fields
from backup_pipeline.core.storage import StorageSettings

DEFAULT_SCHEDULE_CRON = BY_NAME["schedule_cron"].default
DEFAULT_STALL_SECONDS = BY_NAME["stall_seconds"].default
CONFIG_FILE_ENV = BY_NAME["config_file"].env
# Restore targets from the environment alone: `staging=STAGING_ADMIN_URL,dr=DR_ADMIN_URL` (key=variable).
RESTORE_TARGETS_ENV = BY_NAME["restore_targets"].env


def _in_file(info: ValidationInfo) -> bool:
    return (info.context or IN_ENVIRONMENT) == IN_FILE


def _assignment(info: ValidationInfo, name: str, value: object) -> str:
    """`BACKUP_DUMP_JOBS=4` in the environment, `'dump_jobs: 4'` in the databases file."""
    setting = BY_NAME[name]
    return f"'{setting.file_field}: {value}'" if _in_file(info) else f"{setting.env}={value}"


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _DatabaseRules(_Settings):
    """DatabaseSettings without its fields (core/settings/database.py): rules across them and helpers."""

    @model_validator(mode="after")
    def _parallel_dumps_need_directory_format(self, info: ValidationInfo):
        if self.dump_jobs > 1 and self.dump_format != "directory":
            raise CompleteMessage(
                f"{_assignment(info, 'dump_jobs', self.dump_jobs)} needs "
                f"{_assignment(info, 'dump_format', 'directory')}: pg_dump runs in parallel only in the directory "
                "format"
            )
        return self

    @model_validator(mode="after")
    def _verify_on_url_needs_a_url(self, info: ValidationInfo):
        if self.verify_on == "url" and not self.verify_url_env:
            if _in_file(info):
                raise CompleteMessage(
                    "verify_on is url but no verify_url_env is given: name the variable holding the libpq URL of "
                    "the server that hosts verification's scratch databases (the role needs CREATEDB there)"
                )
            raise CompleteMessage(
                "BACKUP_VERIFY_ON is url but BACKUP_VERIFY_DATABASE_URL is not set: set it to the libpq URL of the "
                "server that hosts verification's scratch databases (the role needs CREATEDB there)"
            )
        # In the file an entry's verify_on may overrule a server inherited from BACKUP_VERIFY_DATABASE_URL.
        if self.verify_on in ("local", "source") and self.verify_url_env and not _in_file(info):
            raise CompleteMessage(
                f"BACKUP_VERIFY_ON is {self.verify_on} but BACKUP_VERIFY_DATABASE_URL is set too: unset one of "
                "them (BACKUP_VERIFY_DATABASE_URL alone means verifying on its server)"
            )
        return self

    @property
    def verify_where(self) -> str:
        """local, source or url: where this database's backups are verified."""
        return self.verify_on or ("url" if self.verify_url_env else "local")

    def target(self, environ: Mapping[str, str | None] | None = None):
        """The database as a PostgresTarget: the URL in `url_env`, on `dbname` when one is set (a database a
        `servers:` entry took); ConfigurationError naming the variable when it is unset or not a URL."""
        from backup_pipeline.core.postgres import PostgresTarget

        env = os.environ if environ is None else environ
        target = PostgresTarget.from_url(env.get(self.url_env), self.url_env)
        return target.with_database(self.dbname) if self.dbname else target

    @property
    def is_default(self) -> bool:
        return self.key == "default"

    def dump_options(self) -> DumpOptions:
        return DumpOptions(format=self.dump_format, jobs=self.dump_jobs, compression=self.compression)


DatabaseSettings = create_model(
    "DatabaseSettings",
    __base__=_DatabaseRules,
    __module__=__name__,
    __doc__="One database to back up, and how its backups are named, scheduled and kept.",
    **model_fields(SETTINGS, DATABASE),
)


class _StorageRules(_Settings):
    """The storage variables as read (core/settings/storage.py), before they choose a backend (core/storage/)."""

    # Which variables said so, for messages: a user who set DO_SPACES_BUCKET is told about DO_SPACES_BUCKET.
    bucket_env: str = "BACKUP_S3_BUCKET"
    endpoint_env: str = "BACKUP_S3_ENDPOINT_URL"

    @model_validator(mode="after")
    def _one_encryption_key(self):
        if self.encryption_key_env and self.encryption_key_file:
            raise CompleteMessage(
                "both BACKUP_ENCRYPTION_KEY and BACKUP_ENCRYPTION_KEY_FILE are set: set only one of them"
            )
        return self


# Every storage variable is checked, whichever backend they choose: a typo in BACKUP_S3_MAX_ATTEMPTS is
# reported while the local folder is in use, not on the day a bucket is set.
StorageVariables = create_model(
    "StorageVariables",
    __base__=_StorageRules,
    __module__=__name__,
    __doc__="The storage section's values, checked; `choose_storage` turns them into one backend's settings.",
    **model_fields(SETTINGS, STORAGE),
)


class _DiscordRules(_Settings):
    """DiscordSettings without its fields (core/settings/alerts.py)."""

    @model_validator(mode="after")
    def _bot_needs_token_and_channel(self):
        if self.webhook_url_env is None and self.bot_token_env is not None and self.channel_id is None:
            raise CompleteMessage(
                "DISCORD_BOT_TOKEN is set but DISCORD_BACKUP_CHANNEL_ID is not: set it to the id of the channel "
                "alerts go to (Discord developer mode > right-click the channel > Copy Channel ID)"
            )
        if self.webhook_url_env is None and self.channel_id is not None and self.bot_token_env is None:
            raise CompleteMessage(
                "DISCORD_BACKUP_CHANNEL_ID is set but DISCORD_BOT_TOKEN is not: set the bot's token, "
                "or use DISCORD_WEBHOOK_URL instead"
            )
        return self

    @property
    def configured(self) -> bool:
        return self.webhook_url_env is not None or (self.bot_token_env is not None and self.channel_id is not None)


DiscordSettings = create_model(
    "DiscordSettings",
    __base__=_DiscordRules,
    __module__=__name__,
    __doc__="Where alerts go: a webhook, or a bot posting to a channel (names of the secret variables, not values).",
    **model_fields(SETTINGS, DISCORD),
)


class RestoreTarget(_Settings):
    """A server a restore may write to: run config names it by `key`; `url_env` holds its URL (with password)."""

    key: fields.DatabaseKey
    url_env: fields.EnvName


class _SettingsRules(_Settings):
    """Settings without the deployment's own fields (core/settings/deployment.py)."""

    databases: tuple[DatabaseSettings, ...]
    # Besides each database's own server (keyed by the database's key), the servers a restore may write to.
    restore_targets: tuple[RestoreTarget, ...] = ()
    # The databases file's `servers:`; their databases are among `databases` (core/enrolment.py).
    servers: tuple[ServerEntry, ...] = ()
    # One backend's settings (core/storage/): LocalStorageSettings, S3StorageSettings.
    storage: SerializeAsAny[StorageSettings]
    discord: DiscordSettings = DiscordSettings()

    def database(self, key: str | None = None) -> DatabaseSettings:
        if key is None:
            if len(self.databases) == 1:
                return self.databases[0]
            raise ConfigurationError(
                "several databases are configured: name one with --database "
                f"({', '.join(d.key for d in self.databases)})"
            )
        for db in self.databases:
            if db.key == key:
                return db
        raise ConfigurationError(
            f"no database '{key}' is configured: choose one of {', '.join(d.key for d in self.databases)}"
        )

    def restore_targets_by_key(self) -> dict[str, str]:
        """Every server a restore may write to, key → the variable holding its URL: each configured database's
        own server under the database's key, and the restore targets."""
        return {db.key: db.url_env for db in self.databases} | {t.key: t.url_env for t in self.restore_targets}

    def restore_target_env(self, key: str) -> str:
        """The variable holding the URL of restore target `key`; ConfigurationError naming the choices."""
        targets = self.restore_targets_by_key()
        if key in targets:
            return targets[key]
        raise ConfigurationError(
            f"no restore target '{key[:60]}' is configured: use one of {', '.join(sorted(targets))}, or leave target "
            "empty for the server of the database the backup is of. The deployment lists the servers a restore may "
            f"write to (restore_targets: in the databases file, or {RESTORE_TARGETS_ENV}); run config names one by "
            "its key only"
        )


Settings = create_model(
    "Settings",
    __base__=_SettingsRules,
    __module__=__name__,
    __doc__="Everything configured: the databases, their storage, where alerts go.",
    **model_fields(SETTINGS, DEPLOYMENT),
)
