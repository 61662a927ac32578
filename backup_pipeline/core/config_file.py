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
        storage_prefix: db-backups/billing

Every problem is reported with its line, all at once, so a file with three mistakes takes one fix-up.
Environment variables (BACKUP_RETENTION_DAYS, ...) give the defaults that the file's `defaults:` override.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from pathlib import Path

import yaml

from backup_pipeline.core.config import (
    FRESHNESS_HOURS_RANGE,
    KEEP_LAST_RANGE,
    RETENTION_DAYS_RANGE,
    DatabaseSettings,
    check_range,
    cron,
    database_key,
    storage_prefix,
)
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.names import check_name_prefix

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"

# File field → DatabaseSettings field.
_SHARED_FIELDS = {
    "schedule": "schedule_cron",
    "retention_days": "retention_days",
    "keep_last": "keep_last",
    "storage_prefix": "storage_prefix",
    "freshness_hours": "freshness_hours",
    "verify_url_env": "verify_url_env",
}
_DATABASE_FIELDS = {"key": "key", "url_env": "url_env", "name_prefix": "name_prefix", **_SHARED_FIELDS}
_REQUIRED = ("key", "url_env")
_TOP_LEVEL = ("defaults", "databases")


class _Problems:
    """Collects line-numbered problems; raises them together."""

    def __init__(self, path: Path):
        self.path = path
        self.messages: list[tuple[int, str]] = []

    def add(self, node: yaml.Node, message: str) -> None:
        self.messages.append((node.start_mark.line + 1, message))

    def raise_if_any(self) -> None:
        lines = [f"{self.path} line {line}: {message}" for line, message in sorted(self.messages, key=lambda m: m[0])]
        if len(lines) == 1:
            raise ConfigurationError(lines[0])
        if lines:
            raise ConfigurationError(f"{self.path} has {len(lines)} problems:\n" + "\n".join(f"  {m}" for m in lines))


def load_database_file(path: Path, defaults: DatabaseSettings) -> tuple[DatabaseSettings, ...]:
    """The databases listed in the file at `path`, each completed from `defaults`."""
    problems = _Problems(path)
    sections = _sections(_compose(path), path, problems)
    shared = defaults
    if "defaults" in sections:
        fields, _ = _fields(sections["defaults"][1], _SHARED_FIELDS, "defaults", problems)
        shared = replace(defaults, **{field: value for field, (value, _) in fields.items()})
    entries = []
    for entry in sections["databases"][1].value:
        before = len(problems.messages)
        fields, given = _fields(entry, _DATABASE_FIELDS, "a database entry", problems)
        missing = [f for f in _REQUIRED if f not in given]
        if missing and isinstance(entry, yaml.MappingNode):
            problems.add(entry, f"this database has no {' and no '.join(missing)}: key and url_env are both required")
        entries.append((entry, fields, len(problems.messages) == before))
    databases = _distinct(entries, shared, problems)
    problems.raise_if_any()
    return databases


def _sections(root: yaml.Node | None, path: Path, problems: _Problems) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """The top-level sections, with a non-empty `databases` list; raises when there is nothing to read on."""
    message = "the file must be a mapping with a 'databases:' list (see deploy/README.md for an example)"
    if root is None:
        raise ConfigurationError(f"{path} is empty: {message}")
    if not isinstance(root, yaml.MappingNode):
        problems.add(root, message)
        problems.raise_if_any()
    sections = _mapping(root, problems)
    for name, (key_node, _) in sections.items():
        if name not in _TOP_LEVEL:
            problems.add(
                key_node, f"unknown section '{name}'{_suggestion(name, _TOP_LEVEL)}: use {' or '.join(_TOP_LEVEL)}"
            )
    if "databases" not in sections:
        problems.add(root, "no 'databases:' list: list each database to back up with its key and url_env")
        problems.raise_if_any()
    databases = sections["databases"][1]
    if not isinstance(databases, yaml.SequenceNode) or not databases.value:
        problems.add(databases, "'databases' must be a list with at least one entry ('- key: ...')")
        problems.raise_if_any()
    return sections


def _distinct(entries, shared: DatabaseSettings, problems: _Problems) -> tuple[DatabaseSettings, ...]:
    """The valid entries as settings, refusing repeated keys and two databases writing the same object names."""
    databases: list[DatabaseSettings] = []
    key_lines: dict[str, int] = {}
    name_owners: dict[tuple[str, str], tuple[str, int]] = {}
    for entry, fields, valid in entries:
        line = entry.start_mark.line + 1
        if "key" in fields:
            key, key_node = fields["key"]
            if key in key_lines:
                problems.add(
                    key_node, f"database key '{key}' is already used on line {key_lines[key]}: keys must be unique"
                )
                continue
            key_lines[key] = line
        if not valid:
            continue
        db = replace(shared, **{"name_prefix": None, **{field: value for field, (value, _) in fields.items()}})
        # Retention deletes whatever carries its own name prefix: two databases writing the same names would
        # prune each other's backups.
        identity = (db.storage_prefix, db.name_prefix or f"${db.url_env}")
        if identity in name_owners:
            other, other_line = name_owners[identity]
            problems.add(
                entry,
                f"database '{db.key}' would write the same object names as '{other}' (line {other_line}): "
                "give one of them its own name_prefix or storage_prefix",
            )
            continue
        name_owners[identity] = (db.key, line)
        databases.append(db)
    return tuple(databases)


def _compose(path: Path) -> yaml.Node | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"BACKUP_CONFIG_FILE points at {path}, which does not exist: create it (see deploy/README.md) "
            "or unset BACKUP_CONFIG_FILE to back up DATABASE_URL alone"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read BACKUP_CONFIG_FILE {path}: {exc}") from None
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigurationError(f"{path}{line}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML: {exc}") from None


def _mapping(node: yaml.MappingNode, problems: _Problems) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """Field name → (key node, value node); a repeated field is a problem, not a silent override."""
    result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(name, str):
            problems.add(key_node, "field names must be plain words such as retention_days")
            continue
        if name in result:
            problems.add(key_node, f"'{name}' is given twice (first on line {result[name][0].start_mark.line + 1})")
            continue
        result[name] = (key_node, value_node)
    return result


def _fields(node: yaml.Node, allowed: dict[str, str], what: str, problems: _Problems):
    """The checked values of a mapping (DatabaseSettings field → (value, value node)) and the names it gives."""
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, f"{what} must be a mapping of fields such as 'key: billing'")
        return {}, set()
    values = {}
    given = _mapping(node, problems)
    for name, (key_node, value_node) in given.items():
        if name not in allowed:
            problems.add(
                key_node,
                f"unknown field '{name}'{_suggestion(name, allowed)} (fields: {', '.join(allowed)})",
            )
            continue
        try:
            values[allowed[name]] = (_CHECKS[name](value_node, name), value_node)
        except ConfigurationError as exc:
            problems.add(value_node, str(exc))
    return values, set(given)


def _scalar(node: yaml.Node, name: str, kind: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.value == "" and node.tag != _STR:
        raise ConfigurationError(f"{name} must be {kind}")
    return node.value


def _whole_number(minimum: int, maximum: int):
    def check(node: yaml.Node, name: str) -> int:
        kind = f"a whole number from {minimum} to {maximum}"
        text = _scalar(node, name, kind)
        if node.tag == _INT:
            value = yaml.SafeLoader("").construct_yaml_int(node)
        elif node.tag == _STR and text.strip().isdigit():  # "30" quoted means 30 too
            value = int(text)
        else:
            raise ConfigurationError(f"{name} must be {kind}, got '{text[:40]}'")
        return check_range(value, name, minimum, maximum, kind)

    return check


def _number(minimum: float, maximum: float):
    def check(node: yaml.Node, name: str) -> float:
        kind = f"a number from {minimum:g} to {maximum:g}"
        text = _scalar(node, name, kind)
        if node.tag == _INT:
            value = float(yaml.SafeLoader("").construct_yaml_int(node))
        elif node.tag == _FLOAT:
            value = yaml.SafeLoader("").construct_yaml_float(node)
        else:
            raise ConfigurationError(f"{name} must be {kind}, got '{text}'")
        return check_range(value, name, minimum, maximum, kind)

    return check


def _text(node: yaml.Node, name: str) -> str:
    text = _scalar(node, name, "text")
    if node.tag != _STR or not text:
        raise ConfigurationError(f"{name} must be text, got '{text}'" if text else f"{name} must not be empty")
    return text


def _env_name(node: yaml.Node, name: str) -> str:
    text = _text(node, name)
    if not _ENV_NAME.match(text):
        # Not echoed: a URL pasted here may carry a password.
        raise ConfigurationError(
            f"{name} must be the name of an environment variable (for example BILLING_DATABASE_URL) that holds "
            "the URL, never the URL itself"
        )
    return text


def _key(node: yaml.Node, name: str) -> str:
    text = _text(node, name)
    try:
        return database_key(text, name)
    except ConfigurationError as exc:
        raise ConfigurationError(str(exc).removeprefix(f"{name}: ")) from None


def _name_prefix(node: yaml.Node, name: str) -> str:
    text = _text(node, name)
    try:
        return check_name_prefix(text)
    except ConfigurationError:
        raise ConfigurationError(
            f"{name} '{text}' is not usable in object names: use letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 63 characters"
        ) from None


def _schedule(node: yaml.Node, name: str) -> str:
    return cron(_text(node, name), name)


def _storage_prefix(node: yaml.Node, name: str) -> str:
    return storage_prefix(_text(node, name), name)


_CHECKS = {
    "key": _key,
    "url_env": _env_name,
    "name_prefix": _name_prefix,
    "schedule": _schedule,
    "retention_days": _whole_number(*RETENTION_DAYS_RANGE),
    "keep_last": _whole_number(*KEEP_LAST_RANGE),
    "storage_prefix": _storage_prefix,
    "freshness_hours": _number(*FRESHNESS_HOURS_RANGE),
    "verify_url_env": _env_name,
}


def _suggestion(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
