"""Backup ids and object names: the one place that knows their shape.

A backup id is `<type>_<YYYYMMDD_HHMMSS>` (UTC) and is also the Dagster partition key.
The object holding the dump is `<storage prefix>/<name prefix>_<backup id>.dump`, its manifest
`<...>.dump.json`, the roles its objects name `<...>.dump.roles.json`, and the marker written once verification
passed `<...>.dump.verified.json`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from backup_pipeline.core.errors import ConfigurationError

BACKUP_TYPES = ("daily", "pre-migration", "manual")
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
DUMP_SUFFIX = ".dump"
MANIFEST_SUFFIX = ".dump.json"
VERIFIED_SUFFIX = ".dump.verified.json"
# The roles the backup's objects name, for recreating them in a new cluster (written before the manifest).
ROLES_SUFFIX = ".dump.roles.json"

_BACKUP_ID = re.compile(r"^(?P<type>daily|pre-migration|manual)_(?P<ts>\d{8}_\d{6})$")
_NAME_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# What a backup protects, e.g. the migration it was taken before: shown in lists, the UI and the notices.
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:+@/-]{0,99}$")
MAX_LABEL_CHARS = 100


@dataclass(frozen=True, order=True)
class BackupId:
    created_at: datetime
    type: str

    @classmethod
    def new(cls, backup_type: str, now: datetime | None = None) -> BackupId:
        check_backup_type(backup_type)
        now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        return cls(created_at=now, type=backup_type)

    @classmethod
    def parse(cls, text: str) -> BackupId:
        match = _BACKUP_ID.match(text)
        if not match:
            raise ConfigurationError(
                f"'{_printable(text)}' is not a backup id: expected <type>_<YYYYMMDD_HHMMSS> with type one of "
                f"{', '.join(BACKUP_TYPES)}, for example manual_20260113_150000"
            )
        ts = match["ts"]
        try:
            # By hand, not strptime: listing 10,000 backups parses 30,000 of these.
            created = datetime(
                int(ts[0:4]), int(ts[4:6]), int(ts[6:8]), int(ts[9:11]), int(ts[11:13]), int(ts[13:15]), tzinfo=UTC
            )
        except ValueError:
            raise ConfigurationError(f"'{text}' has an impossible date or time in it") from None
        return cls(created_at=created, type=match["type"])

    def __str__(self) -> str:
        return f"{self.type}_{self.created_at.strftime(TIMESTAMP_FORMAT)}"


@dataclass(frozen=True)
class BackupName:
    """A backup of one database: `<name prefix>_<backup id>`, the file name without `.dump`."""

    prefix: str
    id: BackupId

    def __str__(self) -> str:
        return f"{self.prefix}_{self.id}"

    def dump_key(self, storage_prefix: str) -> str:
        return join_key(storage_prefix, f"{self}{DUMP_SUFFIX}")

    def manifest_key(self, storage_prefix: str) -> str:
        return join_key(storage_prefix, f"{self}{MANIFEST_SUFFIX}")

    def verified_key(self, storage_prefix: str) -> str:
        return join_key(storage_prefix, f"{self}{VERIFIED_SUFFIX}")

    def roles_key(self, storage_prefix: str) -> str:
        return join_key(storage_prefix, f"{self}{ROLES_SUFFIX}")

    @classmethod
    def parse(cls, text: str, prefix: str) -> BackupName:
        """Accepts `app_manual_20260113_150000`, with or without `.dump`, or a bare backup id."""
        check_safe_name(text)
        base = text.removesuffix(DUMP_SUFFIX)
        if base.startswith(f"{prefix}_"):
            rest = base[len(prefix) + 1 :]
        elif _BACKUP_ID.match(base):
            rest = base
        else:
            raise ConfigurationError(
                f"'{text}' is not a backup of this database: names look like {prefix}_manual_20260113_150000 "
                f"(run `backup-db list` to see them)"
            )
        return cls(prefix=prefix, id=BackupId.parse(rest))


def classify_key(key: str, storage_prefix: str, name_prefix: str) -> tuple[BackupName, str] | None:
    """(name, kind) for one of our objects, kind being dump, manifest, verified or roles; None for anything else.

    Only names with our own name prefix and shape are ours: another database's backups and foreign
    objects under the same storage prefix are never touched.
    """
    folder = join_key(storage_prefix, "")
    if not key.startswith(folder):
        return None
    base = key[len(folder) :]
    kinds = (
        (VERIFIED_SUFFIX, "verified"),
        (ROLES_SUFFIX, "roles"),
        (MANIFEST_SUFFIX, "manifest"),
        (DUMP_SUFFIX, "dump"),
    )
    for suffix, kind in kinds:  # noqa: B007 (kind is the answer after the loop)
        if base.endswith(suffix):
            stem = base[: -len(suffix)]
            break
    else:
        return None
    if not stem.startswith(f"{name_prefix}_"):
        return None
    rest = stem[len(name_prefix) + 1 :]
    if not _BACKUP_ID.match(rest):
        return None
    try:
        return BackupName(prefix=name_prefix, id=BackupId.parse(rest)), kind
    except ConfigurationError:
        return None


_ANY_STEM = re.compile(
    r"^(?P<prefix>[A-Za-z0-9][A-Za-z0-9._-]{0,62})_(?P<id>(?:daily|pre-migration|manual)_\d{8}_\d{6})$"
)


def classify_any_key(key: str, storage_prefix: str) -> tuple[BackupName, str] | None:
    """Like classify_key, for any database's backups directly under `storage_prefix` (`backup-db list --all`)."""
    folder = join_key(storage_prefix, "")
    if not key.startswith(folder) or "/" in key[len(folder) :]:
        return None
    for suffix in (VERIFIED_SUFFIX, ROLES_SUFFIX, MANIFEST_SUFFIX, DUMP_SUFFIX):
        if key.endswith(suffix):
            match = _ANY_STEM.match(key[len(folder) : -len(suffix)])
            return classify_key(key, storage_prefix, match["prefix"]) if match else None
    return None


def join_key(storage_prefix: str, name: str) -> str:
    prefix = storage_prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


def check_backup_type(backup_type: str) -> str:
    if backup_type not in BACKUP_TYPES:
        raise ConfigurationError(
            f"unknown backup type '{_printable(backup_type)}': use one of {', '.join(BACKUP_TYPES)}"
        )
    return backup_type


def check_name_prefix(prefix: str, from_database: bool = False) -> str:
    """`from_database`: no BACKUP_NAME_PREFIX was set, so the prefix is the database's own name."""
    if not _NAME_PREFIX.match(prefix or ""):
        rule = "use letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 characters"
        if from_database:
            raise ConfigurationError(
                f"the database name '{_printable(prefix)}' cannot start backup file names (BACKUP_NAME_PREFIX is "
                f"not set, so the prefix defaults to the database name): set BACKUP_NAME_PREFIX, for example "
                f"BACKUP_NAME_PREFIX={suggested_prefix(prefix)} ({rule})"
            )
        raise ConfigurationError(f"BACKUP_NAME_PREFIX '{_printable(prefix)}' is not usable in object names: {rule}")
    return prefix


def backup_name_prefix(configured: str | None, database_name: str) -> str:
    """`<name prefix>` in object names: the configured one (BACKUP_NAME_PREFIX, the file's name_prefix), else
    the name of the database being backed up."""
    return check_name_prefix(configured or database_name, from_database=not configured)


def suggested_prefix(text: str) -> str:
    """A usable name prefix close to `text`: other characters become '_'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text or "").strip("._-")[:63]
    return cleaned or "app"


def check_label(label: str) -> str:
    if not _LABEL.match(label or ""):
        raise ConfigurationError(
            f"label '{_printable(label)}' is not usable: 1 to {MAX_LABEL_CHARS} letters, digits, spaces or "
            "'._:+@/-', starting with a letter or digit, for example 012_add_hybrid_search"
        )
    return label


def check_safe_name(text: str) -> str:
    if not text or "/" in text or "\\" in text or "\x00" in text or ".." in text:
        raise ConfigurationError(
            f"'{_printable(text)}' is not a backup name: a name has no '/', '\\', '..' or NUL in it "
            "(run `backup-db list` to see the names)"
        )
    return text


def _printable(text: str) -> str:
    return (text or "").encode("unicode_escape").decode("ascii")[:120]
