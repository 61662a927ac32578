"""Configuration: typed settings from the environment (and, for several databases, a config file).

Pydantic models with no Dagster import, so the `backup-db` command reads them cheaply. Every value is
checked by its field's type (config_fields.py) and a bad one raises ConfigurationError naming the variable
and what to put in it. Secrets are not read here: settings hold the *names* of the variables that carry them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, model_validator

from backup_pipeline.core import config_fields as fields
from backup_pipeline.core.config_fields import CompleteMessage
from backup_pipeline.core.config_file import load_database_file, load_restore_targets
from backup_pipeline.core.dump_options import DumpOptions, check_jobs
from backup_pipeline.core.errors import ConfigurationError

DEFAULT_STORAGE_PREFIX = "db-backups"
DEFAULT_LOCAL_DIR = "./backups"
DEFAULT_RETENTION_DAYS = 30
DEFAULT_KEEP_LAST = 7
DEFAULT_SCHEDULE_CRON = "0 6 * * *"
DEFAULT_FRESHNESS_HOURS = 26
DEFAULT_S3_MAX_ATTEMPTS = 5
DEFAULT_STALL_SECONDS = 600
DEFAULT_HEALTH_MAX_ROW_DROP_PERCENT = 20
DEFAULT_DISCORD_API_BASE_URL = "https://discord.com/api/v10"
CONFIG_FILE_ENV = "BACKUP_CONFIG_FILE"
# Restore targets from the environment alone: `staging=STAGING_ADMIN_URL,dr=DR_ADMIN_URL` (key=variable).
RESTORE_TARGETS_ENV = "BACKUP_RESTORE_TARGETS"


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseSettings(_Settings):
    """One database to back up, and how its backups are named, scheduled and kept."""

    key: fields.DatabaseKey = "default"
    url_env: fields.EnvName = "DATABASE_URL"
    # None: the database name from the URL. Checked where that name is known (defs/resources, cli/context).
    name_prefix: str | None = None
    storage_prefix: fields.StoragePrefix = DEFAULT_STORAGE_PREFIX
    retention_days: fields.RetentionDays = DEFAULT_RETENTION_DAYS
    keep_last: fields.KeepLast = DEFAULT_KEEP_LAST
    # Grandfather-father-son: the newest verified backup of each of the last N days, ISO weeks, months, years.
    keep_daily: fields.KeepDaily = 0
    keep_weekly: fields.KeepWeekly = 0
    keep_monthly: fields.KeepMonthly = 0
    keep_yearly: fields.KeepYearly = 0
    # None: pre-migration backups are kept forever; a number: their own window, in days.
    pre_migration_retention_days: fields.RetentionDays | None = None
    # Retention runs after each successful scheduled backup of this database (BACKUP_AUTO_PRUNE=false: only
    # when someone runs prune).
    auto_prune: fields.Flag = True
    # A dump or upload that moves no bytes for this long is stopped and fails the run.
    stall_seconds: fields.StallSeconds = DEFAULT_STALL_SECONDS
    # The rows_not_dropped health check fails when total rows fall by more than this share.
    health_max_row_drop_percent: fields.RowDropPercent = DEFAULT_HEALTH_MAX_ROW_DROP_PERCENT
    schedule_cron: fields.Cron = DEFAULT_SCHEDULE_CRON
    freshness_hours: fields.FreshnessHours = DEFAULT_FRESHNESS_HOURS
    # Where verification restores (local, source or url); None: url when verify_url_env is set, else local.
    verify_on: fields.VerifyOn | None = None
    # Scratch databases for verification live on this server (verify_on url).
    verify_url_env: fields.EnvName | None = None
    # The folder the local verification server is made in; None: the temporary folder.
    verify_local_dir: str | None = None
    # How pg_dump dumps (dump_options.py): custom or directory format, parallel jobs, compression.
    dump_format: fields.DumpFormat = "custom"
    dump_jobs: fields.DumpJobs = 1
    compression: fields.CompressionText = None  # None: DEFAULT_COMPRESSION (gzip:1)

    @model_validator(mode="after")
    def _parallel_dumps_need_directory_format(self) -> DatabaseSettings:
        try:
            check_jobs(self.dump_jobs, self.dump_format)
        except ConfigurationError as exc:
            raise CompleteMessage(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _verify_on_url_needs_a_url(self) -> DatabaseSettings:
        if self.verify_on == "url" and not self.verify_url_env:
            raise CompleteMessage(
                "BACKUP_VERIFY_ON is url but BACKUP_VERIFY_DATABASE_URL is not set: set it to the libpq URL of the "
                "server that hosts verification's scratch databases (the role needs CREATEDB there)"
            )
        if self.verify_on in ("local", "source") and self.verify_url_env:
            raise CompleteMessage(
                f"BACKUP_VERIFY_ON is {self.verify_on} but BACKUP_VERIFY_DATABASE_URL is set too: unset one of "
                "them (BACKUP_VERIFY_DATABASE_URL alone means verifying on its server)"
            )
        return self

    @property
    def verify_where(self) -> str:
        """local, source or url: where this database's backups are verified."""
        return self.verify_on or ("url" if self.verify_url_env else "local")

    @property
    def is_default(self) -> bool:
        return self.key == "default"

    def dump_options(self) -> DumpOptions:
        return DumpOptions(format=self.dump_format, jobs=self.dump_jobs, compression=self.compression)


class StorageSettings(_Settings):
    """Where backups are kept: an S3-compatible bucket, or a local folder when no bucket is set."""

    bucket: fields.Bucket | None = None
    endpoint_url: fields.EndpointUrl | None = None
    region: fields.Region | None = None
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    local_dir: str = DEFAULT_LOCAL_DIR
    max_attempts: fields.S3MaxAttempts = DEFAULT_S3_MAX_ATTEMPTS
    # boto3's request checksums and response validation; None: when_required for an endpoint that is not
    # AWS (several S3-compatible stores reject the headers recent boto3 sends by default), else boto3's own.
    checksums: fields.S3Checksums | None = None
    # Client-side encryption: the variable holding the key (never its value here), or a key file's path.
    # Only the file's path is looked at here; the key itself is read and checked where it is used.
    encryption_key_env: str | None = None
    encryption_key_file: fields.KeyFile | None = None
    # Which variables said so, for messages: a user who set DO_SPACES_BUCKET is told about DO_SPACES_BUCKET.
    bucket_env: str = "BACKUP_S3_BUCKET"
    endpoint_env: str = "BACKUP_S3_ENDPOINT_URL"

    @model_validator(mode="after")
    def _one_encryption_key(self) -> StorageSettings:
        if self.encryption_key_env and self.encryption_key_file:
            raise CompleteMessage(
                "both BACKUP_ENCRYPTION_KEY and BACKUP_ENCRYPTION_KEY_FILE are set: set only one of them"
            )
        return self

    @property
    def uses_s3(self) -> bool:
        return self.bucket is not None

    def describe(self) -> str:
        if self.uses_s3:
            return f"bucket '{self.bucket}' at {self.endpoint_url or 'AWS S3'}"
        return f"local folder {Path(self.local_dir).resolve()}"


class DiscordSettings(_Settings):
    """Where alerts go: a webhook, or a bot posting to a channel (names of the secret variables, not values)."""

    webhook_url_env: str | None = None
    bot_token_env: str | None = None
    channel_id: fields.ChannelId | None = None
    api_base_url: fields.DiscordApiUrl = DEFAULT_DISCORD_API_BASE_URL
    success_notices: fields.Flag = True

    @model_validator(mode="after")
    def _bot_needs_token_and_channel(self) -> DiscordSettings:
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


class RestoreTarget(_Settings):
    """A server a restore may write to: run config names it by `key`; `url_env` holds its URL (with password)."""

    key: fields.DatabaseKey
    url_env: fields.EnvName


class Settings(_Settings):
    databases: tuple[DatabaseSettings, ...]
    # Besides each database's own server (keyed by the database's key), the servers a restore may write to.
    restore_targets: tuple[RestoreTarget, ...] = ()
    storage: StorageSettings
    # None: links go to a webserver found running on this machine, or are left out (core/webserver.py).
    webserver_url: fields.WebserverUrl | None = None
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


# Which variable sets each field. An empty variable counts as unset.
_DATABASE_VARIABLES = {
    "name_prefix": "BACKUP_NAME_PREFIX",
    "storage_prefix": "BACKUP_S3_PREFIX",
    "retention_days": "BACKUP_RETENTION_DAYS",
    "keep_last": "BACKUP_KEEP_LAST",
    "keep_daily": "BACKUP_KEEP_DAILY",
    "keep_weekly": "BACKUP_KEEP_WEEKLY",
    "keep_monthly": "BACKUP_KEEP_MONTHLY",
    "keep_yearly": "BACKUP_KEEP_YEARLY",
    "pre_migration_retention_days": "BACKUP_PRE_MIGRATION_RETENTION_DAYS",
    "auto_prune": "BACKUP_AUTO_PRUNE",
    "stall_seconds": "BACKUP_STALL_SECONDS",
    "health_max_row_drop_percent": "BACKUP_HEALTH_MAX_ROW_DROP_PERCENT",
    "schedule_cron": "BACKUP_SCHEDULE_CRON",
    "freshness_hours": "BACKUP_FRESHNESS_HOURS",
    "dump_format": "BACKUP_DUMP_FORMAT",
    "dump_jobs": "BACKUP_DUMP_JOBS",
    "compression": "BACKUP_COMPRESSION",
    "verify_on": "BACKUP_VERIFY_ON",
    "verify_local_dir": "BACKUP_VERIFY_LOCAL_DIR",
}
_DISCORD_VARIABLES = {
    "channel_id": "DISCORD_BACKUP_CHANNEL_ID",
    "api_base_url": "DISCORD_API_BASE_URL",
    "success_notices": "BACKUP_DISCORD_SUCCESS_NOTICES",
}


def load_settings(environ: Mapping[str, str | None] | None = None) -> Settings:
    env = {name: value for name, value in (os.environ if environ is None else environ).items() if value}
    database = _from_environment(
        DatabaseSettings, env, _DATABASE_VARIABLES, verify_url_env=_set(env, "BACKUP_VERIFY_DATABASE_URL")
    )
    config_file = env.get(CONFIG_FILE_ENV)
    return _from_environment(
        Settings,
        env,
        {"webserver_url": "DAGSTER_WEBSERVER_URL"},
        databases=load_database_file(Path(config_file), defaults=database) if config_file else (database,),
        storage=_storage(env),
        discord=_discord(env),
        restore_targets=_restore_targets(env, Path(config_file) if config_file else None),
    )


def _restore_targets(env: dict[str, str], config_file: Path | None) -> tuple[RestoreTarget, ...]:
    """The file's restore_targets, then BACKUP_RESTORE_TARGETS' (`key=VARIABLE,...`), a later key winning."""
    targets = load_restore_targets(config_file) if config_file else {}
    for item in filter(None, (part.strip() for part in env.get(RESTORE_TARGETS_ENV, "").split(","))):
        key, equals, variable = item.partition("=")
        if not equals:
            raise ConfigurationError(
                f"{RESTORE_TARGETS_ENV} must list key=VARIABLE pairs separated by commas (for example "
                f"staging=STAGING_ADMIN_URL), got an item without '=' ({key[:40]})"
            )
        targets[key.strip()] = variable.strip()
    try:
        return tuple(RestoreTarget(key=key, url_env=url_env) for key, url_env in targets.items())
    except ValidationError as exc:
        raise ConfigurationError(
            f"{RESTORE_TARGETS_ENV}: " + "; ".join(_message(error, {}) for error in exc.errors())
        ) from None


def _storage(env: dict[str, str]) -> StorageSettings:
    # The original workflows' DO_SPACES_* names stand in for the BACKUP_S3_* ones.
    variables = {
        "bucket": _set(env, "BACKUP_S3_BUCKET") or "DO_SPACES_BUCKET",
        "region": _set(env, "BACKUP_S3_REGION") or "DO_SPACES_REGION",
        "endpoint_url": "BACKUP_S3_ENDPOINT_URL",
        "local_dir": "BACKUP_LOCAL_DIR",
        "max_attempts": "BACKUP_S3_MAX_ATTEMPTS",
        "checksums": "BACKUP_S3_CHECKSUMS",
        "encryption_key_file": "BACKUP_ENCRYPTION_KEY_FILE",
    }
    derived = {"bucket_env": variables["bucket"]}
    if "BACKUP_S3_ENDPOINT_URL" not in env and "DO_SPACES_REGION" in env:
        derived["endpoint_url"] = f"https://{env['DO_SPACES_REGION']}.digitaloceanspaces.com"
        derived["endpoint_env"] = "DO_SPACES_REGION"
    return _from_environment(
        StorageSettings,
        env,
        variables,
        access_key_id_env=_set(env, "AWS_ACCESS_KEY_ID", "DO_SPACES_KEY"),
        secret_access_key_env=_set(env, "AWS_SECRET_ACCESS_KEY", "DO_SPACES_SECRET"),
        encryption_key_env=_set(env, "BACKUP_ENCRYPTION_KEY"),
        **derived,
    )


def _discord(env: dict[str, str]) -> DiscordSettings:
    if "DISCORD_WEBHOOK_URL" in env:
        _check(fields.WebhookUrl, env["DISCORD_WEBHOOK_URL"], "DISCORD_WEBHOOK_URL")
    return _from_environment(
        DiscordSettings,
        env,
        _DISCORD_VARIABLES,
        webhook_url_env=_set(env, "DISCORD_WEBHOOK_URL"),
        bot_token_env=_set(env, "DISCORD_BOT_TOKEN"),
    )


def _from_environment(model: type[BaseModel], env: dict[str, str], variables: dict[str, str], **derived):
    """`model` from the variables that set its fields, plus values derived here; errors name the variables."""
    values = {field: env[name] for field, name in variables.items() if name in env}
    try:
        return model.model_validate({**values, **derived})
    except ValidationError as exc:
        raise ConfigurationError("\n".join(_message(error, variables) for error in exc.errors())) from None


def _check(field_type, value: str, variable: str) -> None:
    try:
        TypeAdapter(field_type).validate_python(value)
    except ValidationError as exc:
        raise ConfigurationError(_message(exc.errors()[0], {"": variable})) from None


def _message(error: dict, variables: dict[str, str]) -> str:
    field = error["loc"][0] if error["loc"] else ""
    name = variables.get(field, field)
    problem = error.get("ctx", {}).get("error")
    if isinstance(problem, CompleteMessage) or (problem is not None and not name):
        return str(problem)
    return f"{name} {problem}" if problem is not None else f"{name}: {error['msg']}"


def _set(env: dict[str, str], *names: str) -> str | None:
    """The first of `names` that is set."""
    return next((name for name in names if name in env), None)
