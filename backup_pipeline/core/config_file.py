"""The databases file (BACKUP_CONFIG_FILE): several databases, each with its own names, schedule and retention.

    defaults:                      # optional: applies to every database below
      retention_days: 14
    databases:
      - key: billing               # names its Dagster assets, jobs and partitions
        url_env: BILLING_DATABASE_URL
        name_prefix: billing       # default: the database name from the URL
        schedule: "0 6 * * *"      # UTC
        retention_days: 30
        keep_last: 7
        keep_daily: 7              # grandfather-father-son (default 0: off)
        keep_weekly: 4
        keep_monthly: 12
        keep_yearly: 3
        pre_migration_retention_days: 365   # default: pre-migration backups are kept forever
        auto_prune: true           # retention after each successful scheduled backup
        storage_prefix: db-backups/billing
        verify_on: local           # local (default), source, or url with verify_url_env
        dump_format: directory     # every per-database setting has its field (core/settings/database.py)
        dump_jobs: 4
        compression: zstd:3
    servers:                       # optional: every database on a server (core/enrolment.py)
      - key: main                  # each database's key: main_<its name>
        url_env: MAIN_SERVER_URL   # a URL to the server (any database on it)
        include: ["app_*"]         # shell patterns (default: every database but postgres)
        exclude: ["*_test"]
        keep_last: 7               # any field `defaults:` takes, for this server's databases
        overrides:                 # and per database, by its name on the server
          app_billing: {keep_last: 14}
    restore_targets:               # optional: servers a restore may write to besides each database's own
      staging:                     # run config names it by this key only (target: staging)
        url_env: STAGING_ADMIN_URL # the variable holding its libpq URL, password included (never the URL)

Every problem is reported with its line, all at once, so a file with three mistakes takes one fix-up: the
YAML loader records where each value stands (config_file_yaml.py, which also reads the file with limits), and
pydantic's error locations are looked up there.
Environment variables (BACKUP_RETENTION_DAYS, ...) give the defaults that the file's `defaults:` override.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from backup_pipeline.core.config_fields import IN_FILE, CompleteMessage, DatabaseKey, EnvName, Text
from backup_pipeline.core.config_file_yaml import SEE_EXAMPLE, MarkedMapping, line_of, read_marked
from backup_pipeline.core.enrolment import ServerEntry
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.settings import SETTINGS
from backup_pipeline.core.settings.declaration import DATABASE, IN_DEFAULTS_AND_ENTRIES, in_section

# Every database setting (core/settings/database.py) under its file name; `defaults:` takes those that may
# apply to several databases, each entry those and its own (key, url_env, name_prefix).
_FILE_SETTINGS = in_section(SETTINGS, DATABASE)
_SETTING_NAMES = {setting.file_field: setting.name for setting in _FILE_SETTINGS}


class _Given(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def settings(self) -> dict[str, Any]:
        """The fields given, under their DatabaseSettings names."""
        return {_SETTING_NAMES[field]: value for field, value in self.model_dump(exclude_unset=True).items()}


# What `defaults:` and every database entry may set. A field left out is not set (None).
_Fields = create_model(
    "_Fields",
    __base__=_Given,
    **{s.file_field: s.file_model_field() for s in _FILE_SETTINGS if s.file_scope == IN_DEFAULTS_AND_ENTRIES},
)
_Database = create_model(
    "_Database",
    __base__=_Fields,
    **{s.file_field: s.file_model_field() for s in _FILE_SETTINGS if s.file_scope != IN_DEFAULTS_AND_ENTRIES},
)


class _Server(_Fields):
    """A `servers:` entry: its own fields, and any field `defaults:` takes, for every database it enrols."""

    key: DatabaseKey
    url_env: EnvName
    include: list[Text] = None
    exclude: list[Text] = None
    overrides: dict[Text, _Fields] = None

    def entry(self) -> ServerEntry:
        own = ("key", "url_env", "include", "exclude", "overrides")
        return ServerEntry(
            key=self.key,
            url_env=self.url_env,
            include=tuple(self.include or ()),
            exclude=tuple(self.exclude or ()),
            settings={name: value for name, value in self.settings().items() if name not in own},
            overrides={name: fields.settings() for name, fields in (self.overrides or {}).items()},
        )

    def settings(self) -> dict[str, Any]:
        given = self.model_dump(exclude_unset=True)
        return {_SETTING_NAMES.get(field, field): value for field, value in given.items()}


_NO_LIST = (
    "no 'databases:' list: list each database to back up with its key and url_env (or, under 'servers:', each "
    "server whose databases to back up)"
)
_SERVER_FIELDS = ("key", "url_env", "include", "exclude", "overrides", *_Fields.model_fields)


class _RestoreTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url_env: EnvName


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: _Fields = None
    databases: Annotated[list[Any], Field(min_length=1)] = None  # each entry validated on its own
    servers: Annotated[list[_Server], Field(min_length=1)] = None
    restore_targets: dict[DatabaseKey, _RestoreTarget] = None


_DATABASE_FIELDS = tuple(setting.file_field for setting in _FILE_SETTINGS)


def load_restore_targets(path: Path) -> dict[str, str]:
    """The file's `restore_targets:`, key → the variable holding the server's URL (already checked by
    load_database_file, which reports every problem of the file with its line)."""
    root, _ = read_marked(path)
    layout = _File.model_validate(root)
    return {key: target.url_env for key, target in (layout.restore_targets or {}).items()}


def load_servers(path: Path) -> tuple[ServerEntry, ...]:
    """The file's `servers:` (already checked by load_database_file, which reports every problem with its line)."""
    root, _ = read_marked(path)
    layout = _File.model_validate(root)
    return tuple(server.entry() for server in layout.servers or ())


def load_file_defaults(path: Path) -> dict[str, Any]:
    """The file's `defaults:`, under their DatabaseSettings names (already checked by load_database_file)."""
    root, _ = read_marked(path)
    layout = _File.model_validate(root)
    return layout.defaults.settings() if layout.defaults else {}


def load_database_file(path: Path, defaults: BaseModel) -> tuple:
    """The databases listed in the file at `path`, each a copy of `defaults` (a DatabaseSettings) with its fields."""
    root, problems = read_marked(path)
    if not isinstance(root, MarkedMapping):
        line = getattr(root, "line", 1)
        raise ConfigurationError(
            _report(path, [(line, f"the file must be a mapping with a 'databases:' list {SEE_EXAMPLE}")])
        )
    errors, layout, entries = [], None, []
    try:
        layout = _File.model_validate(root)
    except ValidationError as exc:
        errors += exc.errors()
    if not root.get("databases") and not root.get("servers"):
        problems.append((root.line, _NO_LIST))
    raw_entries = root.get("databases")
    for index, entry in enumerate(raw_entries if isinstance(raw_entries, list) else []):
        try:
            entries.append((index, _Database.model_validate(entry)))
        except ValidationError as exc:
            errors += [{**error, "loc": ("databases", index, *error["loc"])} for error in exc.errors()]
            entries.append((index, None))
    problems += _problems(root, errors)
    shared = defaults.model_dump() | (layout.defaults.settings() if layout and layout.defaults else {})
    databases = _distinct(root, entries, type(defaults), shared, problems)
    if problems:
        raise ConfigurationError(_report(path, problems))
    return databases


def _distinct(root, entries, model: type[BaseModel], shared: dict, problems: list) -> tuple:
    """The valid entries as `model`s (DatabaseSettings) over the `shared` values, checked with the rules across
    settings, refusing repeated keys and two databases writing the same object names."""
    databases = []
    key_lines: dict[str, int] = {}
    name_owners: dict[tuple[str, str], tuple[str, int]] = {}
    for index, entry in entries:
        raw = root["databases"][index]
        line = line_of(root, ("databases", index))
        key = raw.get("key") if isinstance(raw, dict) else None
        if isinstance(key, str):
            if key in key_lines:
                message = f"database key '{key}' is already used on line {key_lines[key]}: keys must be unique"
                problems.append((line_of(root, ("databases", index, "key")), message))
                continue
            key_lines[key] = line
        if entry is None:
            continue
        try:
            # The environment's name prefix is not inherited: one prefix cannot name several databases.
            db = model.model_validate({**shared, "name_prefix": None, **entry.settings()}, context=IN_FILE)
        except ValidationError as exc:
            problems += [(line, _describe(error)[1]) for error in exc.errors()]
            continue
        # Retention deletes whatever carries its own name prefix: two databases writing the same names would
        # prune each other's backups.
        identity = (db.storage_prefix, db.name_prefix or f"${db.url_env}")
        if identity in name_owners:
            other, other_line = name_owners[identity]
            message = (
                f"database '{db.key}' would write the same object names as '{other}' (line {other_line}): "
                "give one of them its own name_prefix or storage_prefix"
            )
            problems.append((line, message))
            continue
        name_owners[identity] = (db.key, line)
        databases.append(db)
    if "default" in key_lines and len(entries) > 1:
        # The key of DATABASE_URL's lone database: its jobs take the plain names (backup_job, prune_job, ...),
        # which the retention sensor would then apply to the other databases' runs.
        message = (
            "database key 'default' is reserved for a file of one database (it names the plain jobs backup_job, "
            "prune_job and the rest): with several databases choose another key"
        )
        problems.append((key_lines["default"], message))
    return tuple(databases)


def _problems(root, errors: list[dict]) -> list[tuple[int, str]]:
    """Pydantic's errors as (line, message); the fields missing from one entry make one message."""
    problems, missing = [], {}
    for error in errors:
        if error["type"] == "missing" and len(error["loc"]) > 1:
            missing.setdefault(error["loc"][:-1], []).append(error["loc"][-1])
            continue
        about_name, message = _describe(error)
        problems.append((line_of(root, error["loc"], at_key=about_name), message))
    for loc, names in missing.items():
        message = f"this database has no {' and no '.join(names)}: key and url_env are both required"
        if loc[0] == "servers":
            message = f"this server has no {' and no '.join(names)}: key and url_env are both required"
        if loc[0] == "restore_targets":
            message = f"restore target '{loc[1]}' has no url_env: name the variable holding its server's URL"
        problems.append((line_of(root, loc), message))
    return problems


def _describe(error: dict) -> tuple[bool, str]:
    """Whether the problem is a field's name (rather than its value), and what to tell the user."""
    loc, kind = error["loc"], error["type"]
    name = loc[-1] if loc else ""
    if kind == "missing" and loc[:1] == ("servers",):
        return False, f"this server has no {name}: key and url_env are both required"
    if kind == "extra_forbidden" and len(loc) == 1:
        sections = _File.model_fields
        return True, f"unknown section '{name}'{_suggestion(name, sections)}: use {' or '.join(sections)}"
    if loc[:1] == ("restore_targets",):
        if kind == "extra_forbidden":
            return True, f"unknown field '{name}' in restore target '{loc[1]}' (its only field: url_env)"
        problem = error.get("ctx", {}).get("error")
        text = str(problem) if problem is not None else error["msg"]
        return loc[-1] == "[key]", f"restore target {text}" if loc[-1] == "[key]" else f"{name} {text}"
    if loc[:1] == ("servers",) and kind == "extra_forbidden":
        fields = _SERVER_FIELDS if len(loc) == 3 else tuple(_Fields.model_fields)
        return True, f"unknown field '{name}'{_suggestion(name, fields)} (fields: {', '.join(fields)})"
    if kind == "extra_forbidden":
        fields = _DATABASE_FIELDS if loc[0] == "databases" else tuple(_Fields.model_fields)
        return True, f"unknown field '{name}'{_suggestion(name, fields)} (fields: {', '.join(fields)})"
    if loc == ("databases",):
        return False, "'databases' must be a list with at least one entry ('- key: ...')"
    if kind in ("model_type", "model_attributes_type"):
        if loc == ("defaults",):
            return False, "defaults must be a mapping of fields such as 'retention_days: 14'"
        return False, "a database entry must be a mapping of fields such as 'key: billing'"
    problem = error.get("ctx", {}).get("error")
    return False, str(problem) if isinstance(problem, CompleteMessage) else f"{name} {problem or error['msg']}"


def _report(path: Path, problems: list[tuple[int, str]]) -> str:
    lines = [f"{path} line {line}: {message}" for line, message in sorted(problems, key=lambda p: p[0])]
    if len(lines) == 1:
        return lines[0]
    return f"{path} has {len(lines)} problems:\n" + "\n".join(f"  {line}" for line in lines)


def _suggestion(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
