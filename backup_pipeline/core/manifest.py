"""The JSON manifest written beside every dump, last, once the dump is stored.

A dump without a manifest is an incomplete upload: never listed, never restored, cleaned up later.
"""

from __future__ import annotations

import json
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
    manifest_version: int = MANIFEST_VERSION
    extra: dict = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.tables.values())

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, key: str = "manifest") -> Manifest:
        try:
            raw = json.loads(data)
            known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
            return cls(**known)
        except (ValueError, TypeError) as error:
            raise BackupError(f"the manifest {key} is not readable ({error}): the backup cannot be trusted") from None


@dataclass
class VerificationRecord:
    """Written as `<name>.dump.verified.json` once a restore of the backup matched its manifest."""

    name: str
    sha256: str
    verified_at: str
    restore_duration_s: float
    tables: int
    rows: int

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()
