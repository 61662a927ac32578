"""The manifest beside each dump: written and read back exactly, damaged ones refused with the field named."""

from __future__ import annotations

import json

import pytest

from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.manifest import Manifest

NAME = "app_manual_20260113_150000"


def manifest(**changes) -> Manifest:
    fields = dict(
        name=NAME,
        backup_id="manual_20260113_150000",
        type="manual",
        database="app",
        created_at="2026-01-13T15:00:00+00:00",
        key=f"db-backups/{NAME}.dump",
        size_bytes=1234,
        sha256="0" * 64,
        server_version="15.4",
        pg_dump_version="18.1",
        tables={"public.orders": 10, "public.users": 3},
        duration_s=1.5,
        tool_version="0.1.0",
    )
    return Manifest(**{**fields, **changes})


def test_a_manifest_reads_back_as_written():
    written = manifest()
    read = Manifest.from_json(written.to_json())
    assert read == written and read.total_rows == 13


def test_older_manifests_without_the_optional_fields_still_read():
    raw = json.loads(manifest().to_json())
    for optional in ("format", "compression", "dump_jobs", "encryption", "manifest_version", "extra"):
        del raw[optional]
    assert Manifest.from_json(json.dumps(raw).encode()).format == "custom"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"size_bytes": -1}, "'size_bytes' must be a whole number ≥ 0, got -1"),
        ({"sha256": "xyz"}, "'sha256' must be 64 hex digits"),
        ({"created_at": "2026-01-13T15:00:00"}, "'created_at' must be an ISO 8601 time with its zone"),
        ({"tables": {"t": True}}, "'tables' must be an object of table names to whole numbers"),
        ({"duration_s": float("nan")}, "'duration_s' must be a number"),
    ],
)
def test_a_damaged_manifest_is_refused_naming_the_field(change, message):
    raw = {**json.loads(manifest().to_json()), **change}
    with pytest.raises(BackupError, match=message) as refused:
        Manifest.from_json(json.dumps(raw).encode(), key="db-backups/x.dump.json")
    assert "db-backups/x.dump.json is damaged" in str(refused.value)


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]"])
def test_what_is_not_a_manifest_is_refused(data):
    with pytest.raises(BackupError, match="the backup cannot be trusted"):
        Manifest.from_json(data)


def test_a_manifest_copied_onto_another_name_is_refused():
    other = manifest(name="app_manual_20260101_000000")
    with pytest.raises(BackupError, match="was copied or edited"):
        other.check_describes(NAME, "manual_20260113_150000", f"db-backups/{NAME}.dump", "m")
    assert manifest().check_describes(NAME, "manual_20260113_150000", f"db-backups/{NAME}.dump", "m")
