"""Configuration from the environment (and, for several databases, a config file).

Plain Python with no Dagster import, so the `backup-db` command reads it cheaply. Every value is checked
here and a bad one raises ConfigurationError naming the variable and what to put in it. Secrets are not
read here: settings hold the *names* of the variables that carry them.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from backup_pipeline.core.dump_options import MAX_JOBS, Compression, DumpOptions, check_format, check_jobs
from backup_pipeline.core.errors import ConfigurationError

DEFAULT_STORAGE_PREFIX = "db-backups"
DEFAULT_LOCAL_DIR = "./backups"
DEFAULT_RETENTION_DAYS = 30
DEFAULT_KEEP_LAST = 7
DEFAULT_SCHEDULE_CRON = "0 6 * * *"
DEFAULT_FRESHNESS_HOURS = 26
DEFAULT_WEBSERVER_URL = "http://localhost:3000"
DEFAULT_S3_MAX_ATTEMPTS = 5
DEFAULT_DISCORD_API_BASE_URL = "https://discord.com/api/v10"
CONFIG_FILE_ENV = "BACKUP_CONFIG_FILE"

# Bounds of every numeric setting: past them a value is a typo, and some would overflow date arithmetic
# (a retention window of a million days reaches before year 1).
RETENTION_DAYS_RANGE = (1, 36_500)  # up to 100 years
KEEP_LAST_RANGE = (0, 100_000)
FRESHNESS_HOURS_RANGE = (1, 8_784)  # up to a leap year
S3_MAX_ATTEMPTS_RANGE = (1, 20)

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DATABASE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,40}$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")


@dataclass(frozen=True)
class DatabaseSettings:
    """One database to back up, and how its backups are named, scheduled and kept."""

    key: str = "default"
    url_env: str = "DATABASE_URL"
    name_prefix: str | None = None  # None: the database name from the URL
    storage_prefix: str = DEFAULT_STORAGE_PREFIX
    retention_days: int = DEFAULT_RETENTION_DAYS
    keep_last: int = DEFAULT_KEEP_LAST
    schedule_cron: str = DEFAULT_SCHEDULE_CRON
    freshness_hours: float = DEFAULT_FRESHNESS_HOURS
    # Scratch databases for verification live on this server; None: the source's server.
    verify_url_env: str | None = None
    # How pg_dump dumps (dump_options.py): custom or directory format, parallel jobs, compression.
    dump_format: str = "custom"
    dump_jobs: int = 1
    compression: str | None = None  # None: pg_dump's default (gzip)

    @property
    def is_default(self) -> bool:
        return self.key == "default"

    def dump_options(self) -> DumpOptions:
        return DumpOptions(format=self.dump_format, jobs=self.dump_jobs, compression=self.compression)


@dataclass(frozen=True)
class StorageSettings:
    """Where backups are kept: an S3-compatible bucket, or a local folder when no bucket is set."""

    bucket: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    local_dir: str = DEFAULT_LOCAL_DIR
    max_attempts: int = DEFAULT_S3_MAX_ATTEMPTS
    # Client-side encryption: the variable holding the key (never its value here), or a key file's path.
    encryption_key_env: str | None = None
    encryption_key_file: str | None = None

    @property
    def uses_s3(self) -> bool:
        return self.bucket is not None

    def describe(self) -> str:
        if self.uses_s3:
            return f"bucket '{self.bucket}' at {self.endpoint_url or 'AWS S3'}"
        return f"local folder {Path(self.local_dir).resolve()}"


@dataclass(frozen=True)
class DiscordSettings:
    """Where alerts go: a webhook, or a bot posting to a channel (names of the secret variables, not values)."""

    webhook_url_env: str | None = None
    bot_token_env: str | None = None
    channel_id: str | None = None
    api_base_url: str = DEFAULT_DISCORD_API_BASE_URL
    success_notices: bool = True

    @property
    def configured(self) -> bool:
        return self.webhook_url_env is not None or (self.bot_token_env is not None and self.channel_id is not None)


@dataclass(frozen=True)
class Settings:
    databases: tuple[DatabaseSettings, ...]
    storage: StorageSettings
    webserver_url: str = DEFAULT_WEBSERVER_URL
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    extra: dict = field(default_factory=dict)

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


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    storage = storage_settings(env)
    webserver_url = env.get("DAGSTER_WEBSERVER_URL") or DEFAULT_WEBSERVER_URL
    parsed = urlparse(webserver_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigurationError(
            f"DAGSTER_WEBSERVER_URL '{webserver_url}' is not a URL: use the address of the Dagster UI, for example "
            "http://localhost:3000 (links to runs in messages start with it)"
        )
    config_file = env.get(CONFIG_FILE_ENV)
    if config_file:
        from backup_pipeline.core.config_file import load_database_file

        databases = load_database_file(Path(config_file), defaults=default_database(env))
    else:
        databases = (default_database(env),)
    return Settings(
        databases=tuple(databases),
        storage=storage,
        webserver_url=webserver_url.rstrip("/"),
        discord=discord_settings(env),
    )


def default_database(env) -> DatabaseSettings:
    return DatabaseSettings(
        name_prefix=env.get("BACKUP_NAME_PREFIX") or None,
        storage_prefix=storage_prefix(env.get("BACKUP_S3_PREFIX"), "BACKUP_S3_PREFIX"),
        retention_days=env_int(env, "BACKUP_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, *RETENTION_DAYS_RANGE),
        keep_last=env_int(env, "BACKUP_KEEP_LAST", DEFAULT_KEEP_LAST, *KEEP_LAST_RANGE),
        schedule_cron=cron(env.get("BACKUP_SCHEDULE_CRON") or DEFAULT_SCHEDULE_CRON, "BACKUP_SCHEDULE_CRON"),
        freshness_hours=env_float(env, "BACKUP_FRESHNESS_HOURS", DEFAULT_FRESHNESS_HOURS, *FRESHNESS_HOURS_RANGE),
        verify_url_env="BACKUP_VERIFY_DATABASE_URL" if env.get("BACKUP_VERIFY_DATABASE_URL") else None,
        **dump_settings(env),
    )


def dump_settings(env) -> dict:
    dump_format = check_format((env.get("BACKUP_DUMP_FORMAT") or "custom").strip().lower())
    jobs = check_jobs(env_int(env, "BACKUP_DUMP_JOBS", 1, 1, MAX_JOBS), dump_format)
    compression = Compression.parse(env.get("BACKUP_COMPRESSION"))
    return {"dump_format": dump_format, "dump_jobs": jobs, "compression": str(compression) if compression else None}


def storage_settings(env) -> StorageSettings:
    bucket = env.get("BACKUP_S3_BUCKET") or env.get("DO_SPACES_BUCKET") or None
    bucket_var = "BACKUP_S3_BUCKET" if env.get("BACKUP_S3_BUCKET") else "DO_SPACES_BUCKET"
    region = env.get("BACKUP_S3_REGION") or env.get("DO_SPACES_REGION") or None
    if region is not None and not _REGION.match(region):
        region_var = "BACKUP_S3_REGION" if env.get("BACKUP_S3_REGION") else "DO_SPACES_REGION"
        raise ConfigurationError(
            f"{region_var} '{region}' is not a region name: use its short form, for example fra1 or us-east-1"
        )
    endpoint = env.get("BACKUP_S3_ENDPOINT_URL") or None
    if endpoint is None and env.get("DO_SPACES_REGION"):
        endpoint = f"https://{env['DO_SPACES_REGION']}.digitaloceanspaces.com"
    if bucket is not None and not _BUCKET.match(bucket):
        raise ConfigurationError(
            f"{bucket_var} '{bucket}' is not a valid bucket name: 3 to 63 lowercase letters, digits, '.' or '-'"
        )
    if endpoint is not None:
        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigurationError(
                f"BACKUP_S3_ENDPOINT_URL '{endpoint}' is not a URL: use https://host[:port], "
                "for example https://fra1.digitaloceanspaces.com"
            )
    return StorageSettings(
        bucket=bucket,
        endpoint_url=endpoint,
        region=region,
        access_key_id_env=_first_set(env, "AWS_ACCESS_KEY_ID", "DO_SPACES_KEY"),
        secret_access_key_env=_first_set(env, "AWS_SECRET_ACCESS_KEY", "DO_SPACES_SECRET"),
        local_dir=env.get("BACKUP_LOCAL_DIR") or DEFAULT_LOCAL_DIR,
        max_attempts=env_int(env, "BACKUP_S3_MAX_ATTEMPTS", DEFAULT_S3_MAX_ATTEMPTS, *S3_MAX_ATTEMPTS_RANGE),
        **encryption_settings(env),
    )


def encryption_settings(env) -> dict:
    # Only the key file's path is looked at here; the key itself is read and checked where it is used.
    key_set, key_file = bool(env.get("BACKUP_ENCRYPTION_KEY")), env.get("BACKUP_ENCRYPTION_KEY_FILE") or None
    if key_set and key_file:
        raise ConfigurationError(
            "both BACKUP_ENCRYPTION_KEY and BACKUP_ENCRYPTION_KEY_FILE are set: set only one of them"
        )
    if key_file is not None and not Path(key_file).is_file():
        raise ConfigurationError(
            f"BACKUP_ENCRYPTION_KEY_FILE '{key_file}' is not a file: point it at a file holding the key "
            "(create one with `openssl rand -base64 32 > backup.key`)"
        )
    return {"encryption_key_env": "BACKUP_ENCRYPTION_KEY" if key_set else None, "encryption_key_file": key_file}


def discord_settings(env) -> DiscordSettings:
    webhook = env.get("DISCORD_WEBHOOK_URL") or None
    token = env.get("DISCORD_BOT_TOKEN") or None
    channel = env.get("DISCORD_BACKUP_CHANNEL_ID") or None
    api_base = env.get("DISCORD_API_BASE_URL") or DEFAULT_DISCORD_API_BASE_URL
    # The webhook URL carries its token: messages here name the variable, never echo the value.
    if webhook is not None and not re.match(r"^https?://[^/\s]+/\S*$", webhook):
        raise ConfigurationError(
            "DISCORD_WEBHOOK_URL is not a URL: copy it from the channel's Integrations > Webhooks "
            "(https://discord.com/api/webhooks/<id>/<token>)"
        )
    if webhook is None and token is not None and channel is None:
        raise ConfigurationError(
            "DISCORD_BOT_TOKEN is set but DISCORD_BACKUP_CHANNEL_ID is not: set it to the id of the channel "
            "alerts go to (Discord developer mode > right-click the channel > Copy Channel ID)"
        )
    if webhook is None and channel is not None and token is None:
        raise ConfigurationError(
            "DISCORD_BACKUP_CHANNEL_ID is set but DISCORD_BOT_TOKEN is not: set the bot's token, "
            "or use DISCORD_WEBHOOK_URL instead"
        )
    if channel is not None and not channel.isdigit():
        raise ConfigurationError(
            f"DISCORD_BACKUP_CHANNEL_ID '{channel[:40]}' is not a channel id: "
            "it is a number such as 1234567890123456789"
        )
    parsed = urlparse(api_base)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigurationError(
            f"DISCORD_API_BASE_URL '{api_base}' is not a URL: use https://discord.com/api/v10 or your proxy's URL"
        )
    return DiscordSettings(
        webhook_url_env="DISCORD_WEBHOOK_URL" if webhook else None,
        bot_token_env="DISCORD_BOT_TOKEN" if token else None,
        channel_id=channel,
        api_base_url=api_base.rstrip("/"),
        success_notices=env_bool(env, "BACKUP_DISCORD_SUCCESS_NOTICES", True),
    )


def database_key(text: str, where: str) -> str:
    if not _DATABASE_KEY.match(text):
        raise ConfigurationError(
            f"{where}: database key '{text}' must start with a letter and hold only letters, digits and '_' "
            "(at most 41 characters); it names the Dagster assets and jobs of that database"
        )
    return text


def storage_prefix(value: str | None, where: str) -> str:
    if value is None:
        return DEFAULT_STORAGE_PREFIX
    prefix = value.strip("/")
    if ".." in prefix.split("/") or "\x00" in prefix or "\\" in prefix:
        raise ConfigurationError(f"{where} '{value}' must be a plain key prefix such as db-backups/app")
    return prefix


def cron(value: str, where: str) -> str:
    # A shape check only: Dagster validates the expression fully when the schedule is built.
    fields = value.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*,/-]+", f) for f in fields):
        raise ConfigurationError(f"{where} '{value}' is not a cron expression: for example '0 6 * * *'")
    return value


def env_int(env, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    kind = f"a whole number from {minimum} to {maximum}"
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{name} must be {kind}, got '{raw[:40]}'") from None
    return check_range(value, name, minimum, maximum, kind)


def env_float(env, name: str, default: float, minimum: float, maximum: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    kind = f"a number from {minimum:g} to {maximum:g}"
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{name} must be {kind}, got '{raw[:40]}'") from None
    return check_range(value, name, minimum, maximum, kind)


def check_range(value, name: str, minimum, maximum, kind: str):
    """`value` if it lies within [minimum, maximum]; else a message naming the setting and its bounds."""
    if (isinstance(value, float) and not math.isfinite(value)) or not minimum <= value <= maximum:
        raise ConfigurationError(f"{name} must be {kind}, got {str(value)[:40]}")
    return value


def env_bool(env, name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got '{env.get(name)}'")


def _first_set(env, *names: str) -> str | None:
    return next((n for n in names if env.get(n)), None)
