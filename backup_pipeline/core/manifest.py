"""The JSON manifest written beside every dump, last, once the dump is stored.

A dump without a manifest is an incomplete upload: never listed, never restored, cleaned up later.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime

from backup_pipeline.core.errors import BackupError

MANIFEST_VERSION = 1


@dataclass
class Manifest:
    name: str
    backup_id: str
    type: str
    database: str
    created_at: str  # ISO 8601, UTC: the backup's own timestamp
    key: str
    size_bytes: int
    sha256: str
    server_version: str
    pg_dump_version: str
    tables: dict[str, int]
    duration_s: float
    tool_version: str
    format: str = "custom"  # custom: a pg_dump archive; directory: a tar of pg_dump's directory format
    compression: str = "default"
    dump_jobs: int = 1
    database_size_bytes: int = 0
    finished_at: str = ""
    encryption: dict | None = None
    # What the backup protects (e.g. the migration it was taken before), given by whoever asked for it.
    label: str | None = None
    # The server it was dumped from (never the user or password): two servers writing one prefix show apart.
    source_host: str | None = None
    source_port: int | None = None
    # The source database's server encoding (SQL_ASCII, LATIN1, UTF8...): a restore creates its database in it.
    encoding: str | None = None
    # The server's system identifier (pg_control_system()): which cluster it was, whatever address reached it.
    # A restore refuses a backup of another server or database than its target unless told otherwise.
    source_system_identifier: str | None = None
    manifest_version: int = MANIFEST_VERSION
    extra: dict = field(default_factory=dict)
    # Owners and privileges: the archive holds them (pg_dump without --no-owner --no-acl); what it cannot hold,
    # the database's own owner, ACL, settings, encoding and locale, is here (core/privileges/recorded.py). Absent
    # from backups taken before, whose archives carry no privileges.
    database_properties: dict | None = None
    # Role -> what the backup uses it for (owner, grantee, ...), and the object beside the dump defining them.
    roles: dict | None = None
    roles_key: str | None = None

    @property
    def carries_privileges(self) -> bool:
        return self.database_properties is not None

    @property
    def total_rows(self) -> int:
        return sum(self.tables.values())

    @property
    def source_server(self) -> str | None:
        if not self.source_host:
            return None
        return f"{self.source_host}:{self.source_port}" if self.source_port else self.source_host

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, key: str = "manifest") -> Manifest:
        """Parses strictly: every field of the right type, or BackupError naming the field and the object."""
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise BackupError(f"the manifest {key} is not JSON ({error}): the backup cannot be trusted") from None
        if not isinstance(raw, dict):
            raise BackupError(f"the manifest {key} is not a JSON object: the backup cannot be trusted")
        problems = [
            problem
            for field_name, check in _FIELD_CHECKS.items()
            if (problem := _field_problem(raw, field_name, check, field_name in _OPTIONAL)) is not None
        ]
        if problems:
            raise BackupError(
                f"the manifest {key} is damaged ({'; '.join(problems[:5])}): the backup cannot be trusted; "
                "restore another backup"
            )
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})

    def check_describes(self, name: str, backup_id: str, dump_key: str, manifest_key: str) -> Manifest:
        """Refuses a manifest that describes another backup (copied or renamed onto this name)."""
        if (self.name, self.backup_id, self.key) != (name, backup_id, dump_key) or self.type != backup_id.rsplit(
            "_", 2
        )[0]:
            raise BackupError(
                f"the manifest {manifest_key} describes {self.name} (dump {self.key}), not {name}: it was copied or "
                f"edited, so {name} cannot be trusted; restore another backup"
            )
        return self


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _is_timestamp(value) -> bool:
    try:
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


# Field → (what it must be, test). Optional fields may be absent (older manifests lack them).
_FIELD_CHECKS = {
    "name": ("text", lambda v: isinstance(v, str) and v != ""),
    "backup_id": ("text", lambda v: isinstance(v, str) and v != ""),
    "type": ("text", lambda v: isinstance(v, str) and v != ""),
    "database": ("text", lambda v: isinstance(v, str)),
    "created_at": ("an ISO 8601 time with its zone", _is_timestamp),
    "key": ("text", lambda v: isinstance(v, str) and v != ""),
    "size_bytes": ("a whole number ≥ 0", lambda v: _is_int(v) and v >= 0),
    "sha256": ("64 hex digits", lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None),
    "server_version": ("text", lambda v: isinstance(v, str)),
    "pg_dump_version": ("text", lambda v: isinstance(v, str) and re.match(r"\d+", v) is not None),
    "tables": (
        "an object of table names to whole numbers ≥ 0",
        lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_int(n) and n >= 0 for k, n in v.items()),
    ),
    "duration_s": ("a number", _is_number),
    "tool_version": ("text", lambda v: isinstance(v, str)),
    "format": ("custom or directory", lambda v: v in ("custom", "directory")),
    "compression": ("text", lambda v: isinstance(v, str)),
    "dump_jobs": ("a whole number ≥ 1", lambda v: _is_int(v) and v >= 1),
    "database_size_bytes": ("a whole number ≥ 0", lambda v: _is_int(v) and v >= 0),
    "finished_at": ("text", lambda v: isinstance(v, str)),
    "encryption": ("an object or null", lambda v: v is None or isinstance(v, dict)),
    "label": ("text or null", lambda v: v is None or isinstance(v, str)),
    "source_host": ("text or null", lambda v: v is None or isinstance(v, str)),
    "source_port": ("a port number or null", lambda v: v is None or (_is_int(v) and 0 < v < 65536)),
    "encoding": ("text or null", lambda v: v is None or isinstance(v, str)),
    "source_system_identifier": ("digits or null", lambda v: v is None or (isinstance(v, str) and v.isdigit())),
    "manifest_version": ("a whole number", _is_int),
    "extra": ("an object", lambda v: isinstance(v, dict)),
    "database_properties": ("an object or null", lambda v: v is None or isinstance(v, dict)),
    "roles": (
        "an object of role names to lists of uses, or null",
        lambda v: v is None or (isinstance(v, dict) and all(isinstance(u, list) for u in v.values())),
    ),
    "roles_key": ("text or null", lambda v: v is None or isinstance(v, str)),
}
_OPTIONAL = frozenset(
    {
        "format",
        "compression",
        "dump_jobs",
        "database_size_bytes",
        "finished_at",
        "encryption",
        "label",
        "source_host",
        "source_port",
        "encoding",
        "source_system_identifier",
        "manifest_version",
        "extra",
        "database_properties",
        "roles",
        "roles_key",
    }
)


def _field_problem(raw: dict, field_name: str, check, optional: bool) -> str | None:
    what, test = check
    if field_name not in raw:
        return None if optional else f"'{field_name}' is missing"
    value = raw[field_name]
    if test(value):
        return None
    shown = json.dumps(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"'{field_name}' must be {what}, got {shown}"


@dataclass
class VerificationRecord:
    """Written as `<name>.dump.verified.json` once a restore of the backup matched its manifest."""

    name: str
    sha256: str
    verified_at: str
    restore_duration_s: float
    tables: int
    rows: int
    pg_restore_version: str = ""
    server_version: str = ""  # of the server the verification restored into
    # What the verification left out of the restore because its role cannot create it (or never restores,
    # like subscriptions), e.g. ["EVENT TRIGGER provider_ddl_audit", "EXTENSION plpython3u"].
    left_out: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()
