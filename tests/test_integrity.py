"""A backup is bound to its name: manifests that describe another object, damaged manifests, foreign names.

Real parts: the local PostgreSQL server (pg_dump/pg_restore), moto's S3 server and a local folder.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.prune import RetentionPolicy, apply_prune, plan_prune
from backup_pipeline.core.restore import restore_to_database
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.storage.s3 import S3Storage
from backup_pipeline.core.verify import verify_backup

PREFIX = "db-backups"


@pytest.fixture(params=["s3", "local"])
def catalog(request, moto_server, tmp_path):
    if request.param == "s3":
        bucket = f"bp-integrity-{os.urandom(4).hex()}"
        client = moto_server.client()
        client.create_bucket(Bucket=bucket)
        storage = S3Storage(client, bucket, moto_server.endpoint)
    else:
        storage = LocalStorage(tmp_path / "backups")
    return BackupCatalog(storage, PREFIX, "app")


def _backup(catalog, seeded_db, when: datetime):
    backup_id = BackupId.new("manual", when)
    take_backup(PostgresTarget.from_url(seeded_db), catalog, backup_id, log=lambda _: None)
    return BackupName(prefix="app", id=backup_id)


def _objects(catalog) -> set[str]:
    return {obj.key for obj in catalog.storage.list(PREFIX)}


def test_a_manifest_copied_onto_another_name_is_refused_by_verify_restore_and_info(catalog, seeded_db):
    genuine = _backup(catalog, seeded_db, datetime(2026, 1, 13, 15, 0, tzinfo=UTC))
    impostor = BackupName(prefix="app", id=BackupId.parse("manual_20260114_150000"))
    # The attack: random bytes under a new name, with a genuine backup's manifest copied beside them.
    catalog.storage.put_bytes(impostor.dump_key(PREFIX), os.urandom(4096))
    manifest = catalog.storage.read_bytes(genuine.manifest_key(PREFIX))
    catalog.storage.put_bytes(impostor.manifest_key(PREFIX), manifest)
    server = PostgresTarget.from_url(seeded_db)

    expected = f"describes {genuine} .*not {impostor}"
    with pytest.raises(BackupError, match=expected):
        catalog.manifest(impostor)
    with pytest.raises(BackupError, match=expected):
        verify_backup(catalog, impostor, server, log=lambda _: None)
    with pytest.raises(BackupError, match=expected):
        restore_to_database(catalog, impostor, server, "bp_never_created_x", log=lambda _: None)
    # Nothing vouches for the impostor: no verification marker was written.
    assert impostor.verified_key(PREFIX) not in _objects(catalog)
    # The genuine backup is untouched and still verifies.
    assert verify_backup(catalog, genuine, server, log=lambda _: None).manifest.name == str(genuine)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("size_bytes", "12", "'size_bytes' must be a whole number ≥ 0, got \"12\""),
        (
            "tables",
            ["app.users"],
            "'tables' must be an object of table names to whole numbers ≥ 0, got [\"app.users\"]",
        ),
        ("sha256", 7, "'sha256' must be 64 hex digits, got 7"),
        ("created_at", "yesterday", "'created_at' must be an ISO 8601 time with its zone, got \"yesterday\""),
        ("duration_s", True, "'duration_s' must be a number, got true"),
        ("key", None, "'key' must be text, got null"),
    ],
)
def test_a_manifest_field_of_the_wrong_type_is_a_clear_error(catalog, seeded_db, field, value, expected):
    name = _backup(catalog, seeded_db, datetime(2026, 1, 13, 15, 0, tzinfo=UTC))
    raw = json.loads(catalog.storage.read_bytes(name.manifest_key(PREFIX)))
    raw[field] = value
    catalog.storage.put_bytes(name.manifest_key(PREFIX), json.dumps(raw).encode())
    with pytest.raises(BackupError) as caught:
        verify_backup(catalog, name, PostgresTarget.from_url(seeded_db), log=lambda _: None)
    message = str(caught.value)
    assert expected in message
    assert message.startswith(f"the manifest {name.manifest_key(PREFIX)} is damaged")
    assert "restore another backup" in message


def test_a_manifest_that_is_missing_a_field_or_is_not_an_object_is_a_clear_error(catalog, seeded_db):
    name = _backup(catalog, seeded_db, datetime(2026, 1, 13, 15, 0, tzinfo=UTC))
    raw = json.loads(catalog.storage.read_bytes(name.manifest_key(PREFIX)))
    del raw["sha256"]
    catalog.storage.put_bytes(name.manifest_key(PREFIX), json.dumps(raw).encode())
    with pytest.raises(BackupError, match="'sha256' is missing"):
        catalog.manifest(name)
    catalog.storage.put_bytes(name.manifest_key(PREFIX), b"[1, 2]")
    with pytest.raises(BackupError, match="is not a JSON object"):
        catalog.manifest(name)


def test_a_foreign_json_bak_beside_an_incomplete_upload_is_no_backup_and_prune_counts_only_real_deletions(
    catalog, seeded_db
):
    kept = _backup(catalog, seeded_db, datetime.now(UTC) - timedelta(hours=1))
    stale = BackupName(prefix="app", id=BackupId.parse("manual_20250101_000000"))
    catalog.storage.put_bytes(stale.dump_key(PREFIX), b"half an upload")
    foreign = f"{stale.manifest_key(PREFIX)}.bak"
    catalog.storage.put_bytes(foreign, catalog.storage.read_bytes(kept.manifest_key(PREFIX)))

    entries = {str(e.name): e for e in catalog.entries()}
    assert not entries[str(stale)].complete  # listed by exact names only: the .bak is not its manifest
    assert [str(e.name) for e in catalog.complete()] == [str(kept)]

    decisions = plan_prune(catalog.entries(), RetentionPolicy(retention_days=30, keep_last=7), datetime.now(UTC))
    deleted = apply_prune(catalog, decisions)
    assert [(d.name, d.keys) for d in deleted] == [(str(stale), [stale.dump_key(PREFIX)])]
    # The foreign object is not ours and stays; the real backup stays.
    assert _objects(catalog) >= {foreign, kept.dump_key(PREFIX), kept.manifest_key(PREFIX)}
    assert stale.dump_key(PREFIX) not in _objects(catalog)
