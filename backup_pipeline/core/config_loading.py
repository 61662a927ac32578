"""Reading the configuration into the settings of config.py: each section's variables from the environment,
then, for several databases, the databases file (BACKUP_CONFIG_FILE). Every value is checked as it is read; a
bad one raises ConfigurationError naming its variable and what to put in it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, TypeAdapter, ValidationError

from backup_pipeline.core import config_fields as fields
from backup_pipeline.core.config import (
    CONFIG_FILE_ENV,
    RESTORE_TARGETS_ENV,
    DatabaseSettings,
    DiscordSettings,
    RestoreTarget,
    Settings,
    StorageVariables,
)
from backup_pipeline.core.config_fields import IN_ENVIRONMENT, CompleteMessage
from backup_pipeline.core.config_file import load_database_file, load_file_defaults, load_restore_targets, load_servers
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.settings import BY_NAME, SETTINGS
from backup_pipeline.core.settings.declaration import (
    DATABASE,
    DEPLOYMENT,
    DISCORD,
    STORAGE,
    in_section,
    read_environment,
)
from backup_pipeline.core.storage import StorageSettings, choose_storage


def load_settings(environ: Mapping[str, str | None] | None = None) -> Settings:
    # An empty variable counts as unset.
    env = {name: value for name, value in (os.environ if environ is None else environ).items() if value}
    database = _from_environment(DatabaseSettings, DATABASE, env)
    config_file = env.get(CONFIG_FILE_ENV)
    databases = load_database_file(Path(config_file), defaults=database) if config_file else (database,)
    settings = _from_environment(
        Settings,
        DEPLOYMENT,
        env,
        databases=tuple(_with_variables_expanded(db, env) for db in databases),
        servers=load_servers(Path(config_file)) if config_file else (),
        storage=_storage(env),
        discord=_from_environment(DiscordSettings, DISCORD, env),
        restore_targets=_restore_targets(env, Path(config_file) if config_file else None),
    )
    return settings


def database_defaults(environ: Mapping[str, str | None] | None = None) -> dict:
    """What every database of the databases file starts from: the environment's settings, then `defaults:`."""
    env = {name: value for name, value in (os.environ if environ is None else environ).items() if value}
    config_file = env.get(CONFIG_FILE_ENV)
    shared = _from_environment(DatabaseSettings, DATABASE, env).model_dump()
    return shared | (load_file_defaults(Path(config_file)) if config_file else {})


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


def _with_variables_expanded(db: DatabaseSettings, env: dict[str, str]) -> DatabaseSettings:
    """`${NAME}` in notify_urls and heartbeat_url replaced by that variable's value, so the databases file
    need not hold the tokens (a variable named in notify_urls may hold several URLs)."""
    urls: list[str] = []
    for item in db.notify_urls:
        if fields.NOTIFY_URL_VARIABLE.match(item):
            urls += _variable_value(db, "notify_urls", item, fields.NotifyUrls, env)
        else:
            urls.append(item)
    update = {}
    if urls != list(db.notify_urls):
        update["notify_urls"] = tuple(urls)
    if db.heartbeat_url and fields.NOTIFY_URL_VARIABLE.match(db.heartbeat_url):
        update["heartbeat_url"] = _variable_value(db, "heartbeat_url", db.heartbeat_url, fields.PlainHeartbeatUrl, env)
    return db.model_copy(update=update) if update else db


def _variable_value(db: DatabaseSettings, field: str, item: str, field_type, env: dict[str, str]):
    name = fields.NOTIFY_URL_VARIABLE.match(item).group(1)
    if name not in env:
        raise ConfigurationError(
            f"{field} of database '{db.key}' names ${{{name}}}, which is not set: set {name} to the URL, or "
            f"remove it from {field}"
        )
    try:
        return TypeAdapter(field_type).validate_python(env[name])
    except ValidationError as exc:
        # The message never quotes the value: it is a secret.
        problem = exc.errors()[0].get("ctx", {}).get("error") or "is not a URL"
        raise ConfigurationError(f"{name} (named in {field} of database '{db.key}') {problem}") from None


def _storage(env: dict[str, str]) -> StorageSettings:
    derived = {"bucket_env": BY_NAME["bucket"].variable_in(env) or BY_NAME["bucket"].env}
    # The original workflows' DO_SPACES_REGION also names the endpoint.
    if "BACKUP_S3_ENDPOINT_URL" not in env and "DO_SPACES_REGION" in env:
        derived["endpoint_url"] = f"https://{env['DO_SPACES_REGION']}.digitaloceanspaces.com"
        derived["endpoint_env"] = "DO_SPACES_REGION"
    return choose_storage(_from_environment(StorageVariables, STORAGE, env, **derived).model_dump())


def _from_environment(model: type[BaseModel], section: str, env: dict[str, str], **derived):
    """`model` from the variables of `section`'s settings, plus values derived here; errors name the variables."""
    values, variables = read_environment(SETTINGS, section, env)
    for setting in in_section(SETTINGS, section):
        if setting.value_type is not None and setting.name in variables:
            _check(setting.value_type, env[variables[setting.name]], variables[setting.name])
    try:
        return model.model_validate({**values, **derived}, context=IN_ENVIRONMENT)
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
