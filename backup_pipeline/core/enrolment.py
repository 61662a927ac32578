"""Servers enrolled whole: a databases-file `servers:` entry backs up every database on a server.

    servers:
      - key: main                        # each database's key: main_<database> (asset main_app_billing/...)
        url_env: MAIN_SERVER_URL         # the variable holding a URL to the server (any database on it)
        include: ["app_*"]               # shell patterns; default: every database
        exclude: ["*_test"]
        keep_last: 7                     # any per-database setting: for every database of this server
        overrides:
          app_billing: {keep_last: 14}   # and per database, by its name on the server

The databases taken are those a session may connect to (`datallowconn`), templates left out, and `postgres`
only when an include pattern names it. What a server held at the last look is recorded beside the backups
(`<storage_prefix>/.enrolment/<key>.json`): the definitions are built from that record, so every process
(the code server, each run, the command line) sees the same databases without asking the server, and a
server that cannot be reached keeps its databases (their runs fail and say so) instead of losing them. Only a
successful look changes the record: the enrolment sensor (defs/enrolment.py) looks every minute, records a
new set, says once which databases went away, and has the code location reloaded.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backup_pipeline.core.errors import BackupError

RECORD_FOLDER = ".enrolment"
# `postgres` is every server's maintenance database: taken only when an include pattern names it.
MAINTENANCE_DATABASE = "postgres"
_MAX_KEY = 41  # config_fields.DatabaseKey


@dataclass(frozen=True)
class ServerEntry:
    """One `servers:` entry: where the server is, which of its databases to take, and their settings."""

    key: str
    url_env: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    # DatabaseSettings names → values, for every database of this server (over the file's `defaults:`).
    settings: Mapping[str, Any] = field(default_factory=dict)
    # A database's name on the server → its own settings (over `settings`).
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def chooses(self, name: str) -> bool:
        """Whether the database `name` is one this entry backs up."""
        if self.include:
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.include):
                return False
        elif name == MAINTENANCE_DATABASE:
            return False
        return not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude)

    def chosen(self, names: Iterable[str]) -> list[str]:
        return sorted(name for name in names if self.chooses(name))

    def record_key(self, storage_prefix: str) -> str:
        return f"{self.settings.get('storage_prefix') or storage_prefix}/{RECORD_FOLDER}/{self.key}.json"


def database_key(server_key: str, dbname: str) -> str:
    """The Dagster key of a database enrolled from a server: `<server key>_<name>`, letters, digits and `_`
    only, at most 41 characters (a longer or rewritten name gets a short hash, so two names never meet)."""
    plain = re.sub(r"[^A-Za-z0-9_]", "_", dbname)
    key = f"{server_key}_{plain}"
    if plain != dbname or len(key) > _MAX_KEY:
        digest = hashlib.sha256(dbname.encode()).hexdigest()[:6]
        key = f"{key[: _MAX_KEY - 7]}_{digest}"
    return key


def discover(entry: ServerEntry, environ: Mapping[str, str] | None = None) -> list[str]:
    """The databases the entry takes from its server now; BackupError when the server cannot be asked."""
    from backup_pipeline.core.postgres import PostgresTarget
    from backup_pipeline.core.postgres.databases import connectable_databases

    env = os.environ if environ is None else environ
    server = PostgresTarget.from_url(env.get(entry.url_env), entry.url_env)
    try:
        with server.connect() as conn:
            return entry.chosen(connectable_databases(conn))
    except BackupError:
        raise
    except Exception as error:  # psycopg's message names host and port, never the password
        raise BackupError(f"cannot list the databases of server '{entry.key}' ({server.server}): {error}") from None


def read_record(storage, key: str) -> list[str] | None:
    """The databases recorded at the last successful look, or None when none was ever recorded."""
    if storage.head(key) is None:
        return None
    try:
        names = json.loads(storage.read_bytes(key))["databases"]
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: looked at again, and rewritten, by the next discovery
    return sorted(str(name) for name in names)


def write_record(storage, key: str, names: Iterable[str]) -> None:
    storage.put_bytes(key, json.dumps({"databases": sorted(names)}, indent=1).encode())


@dataclass(frozen=True)
class Change:
    """What a look at a server found against its record."""

    added: tuple[str, ...]
    dropped: tuple[str, ...]

    @property
    def any(self) -> bool:
        return bool(self.added or self.dropped)


def compare(recorded: Iterable[str] | None, found: Iterable[str]) -> Change:
    before, now = set(recorded or ()), set(found)
    return Change(added=tuple(sorted(now - before)), dropped=tuple(sorted(before - now)))


def enrolled_values(entry: ServerEntry, dbname: str) -> dict[str, Any]:
    """The settings of database `dbname` of the server (over the file's defaults): the server entry's, its
    override's, and what makes it this database (key, the server's URL variable, its name there)."""
    return {
        # Object names start with the key, unique among the configured databases, unless the file says otherwise.
        "name_prefix": database_key(entry.key, dbname),
        **entry.settings,
        **entry.overrides.get(dbname, {}),
        "key": database_key(entry.key, dbname),
        "url_env": entry.url_env,
        "dbname": dbname,
    }


def current_databases(
    entry: ServerEntry, storage, storage_prefix: str, environ: Mapping[str, str] | None = None
) -> list[str]:
    """The databases the definitions are built with: the record of the last look; before any was recorded,
    what the server holds now (nothing when it cannot be asked: the enrolment sensor says why)."""
    try:
        recorded = read_record(storage, entry.record_key(storage_prefix))
    except BackupError:
        recorded = None
    if recorded is not None:
        return recorded
    try:
        return discover(entry, environ)
    except BackupError:
        return []
