"""A backup lands in storage with its manifest, verified by a real restore, for S3 and the local folder."""

import hashlib

import dagster as dg
import psycopg
import pytest

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.postgres.catalog import table_row_counts
from backup_pipeline.core.storage import open_storage
from tests.support.pipeline import failure_message, load_defs, run_backup
from tests.support.scratch import claimed_in_this_process, still_there
from tests.support.seed import SEED_COUNTS


def _metadata(result, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {asset}")


@pytest.mark.parametrize("env_fixture", ["s3_env", "local_env"])
def test_backup_lands_with_manifest_and_verifies(env_fixture, request, pg_admin_url):
    env = request.getfixturevalue(env_fixture)
    instance = dg.DagsterInstance.get()

    with claimed_in_this_process() as scratch:
        result, backup_id = run_backup(instance, "manual")

    assert result.success, failure_message(result)
    prefix = env["DATABASE_URL"].rsplit("/", 1)[1]
    storage = open_storage(load_settings().storage)
    dump_key = f"db-backups/{prefix}_{backup_id}.dump"
    assert backup_id.startswith("manual_") and len(backup_id) == len("manual_20260113_150000")
    keys = {o.key for o in storage.list("db-backups/")}
    assert {dump_key, dump_key + ".json", dump_key + ".verified.json"} <= keys

    stored = storage.read_bytes(dump_key)
    manifest = Manifest.from_json(storage.read_bytes(dump_key + ".json"))
    assert manifest.sha256 == hashlib.sha256(stored).hexdigest()
    assert manifest.size_bytes == len(stored)
    assert stored[:5] == b"PGDMP"  # pg_dump custom format
    assert manifest.tables == SEED_COUNTS
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        assert manifest.tables == table_row_counts(conn)  # exact counts of the source
    assert manifest.type == "manual" and manifest.database == prefix

    # Verification restored into a scratch database and dropped it.
    verified = _metadata(result, "restore_verification")
    assert verified["verified"] is True and verified["rows"] == sum(SEED_COUNTS.values())
    assert not still_there(pg_admin_url, scratch)

    offsite = _metadata(result, "offsite_backup")
    assert offsite["size_bytes"] == len(stored) and offsite["sha256"] == manifest.sha256
    assert isinstance(offsite["compression_ratio"], float) and offsite["compression_ratio"] > 1
    assert offsite["server_version"].startswith(str(manifest.server_version.split(".")[0]))
    assert dump_key in offsite["uri"]
    dump_meta = _metadata(result, "database_dump")
    assert dump_meta["rows"] == sum(SEED_COUNTS.values()) and dump_meta["tables"] == len(SEED_COUNTS)

    checks = {check.check_name: check.passed for check in result.get_asset_check_evaluations()}
    assert checks["stored_object_matches_manifest"] is True

    catalog = BackupCatalog(storage, "db-backups", prefix)
    [entry] = catalog.complete()
    assert entry.verified and entry.size_bytes == len(stored)


def _damage(storage_client, bucket, key, how):
    body = storage_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    if how == "corrupt":
        middle = len(body) // 2
        body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
    else:
        body = body[: len(body) * 2 // 3]
    storage_client.put_object(Bucket=bucket, Key=key, Body=body)


@pytest.mark.parametrize("how", ["corrupt", "truncate"])
def test_damaged_object_fails_verification(how, s3_env, moto_server, pg_admin_url):
    instance = dg.DagsterInstance.get()
    result, backup_id = run_backup(instance, "manual")
    assert result.success, failure_message(result)
    prefix = s3_env["DATABASE_URL"].rsplit("/", 1)[1]
    key = f"db-backups/{prefix}_{backup_id}.dump"
    _damage(moto_server.client(), s3_env["BACKUP_S3_BUCKET"], key, how)
    with claimed_in_this_process() as scratch:
        verify = (
            load_defs()
            .resolve_job_def("verify_job")
            .execute_in_process(instance=instance, partition_key=backup_id, raise_on_error=False)
        )

    assert not verify.success
    message = failure_message(verify)
    assert ("corrupted" in message and "sha256" in message) if how == "corrupt" else "truncated" in message
    assert not still_there(pg_admin_url, scratch)  # no scratch database left behind


def test_verification_catches_rows_that_differ_from_manifest(s3_env, moto_server):
    """A dump that restores fine but to other contents than the manifest recorded must not pass."""
    instance = dg.DagsterInstance.get()
    result, backup_id = run_backup(instance, "manual")
    assert result.success
    prefix = s3_env["DATABASE_URL"].rsplit("/", 1)[1]
    key = f"db-backups/{prefix}_{backup_id}.dump.json"
    client = moto_server.client()
    manifest = Manifest.from_json(client.get_object(Bucket=s3_env["BACKUP_S3_BUCKET"], Key=key)["Body"].read())
    manifest.tables["app.users"] += 1
    client.put_object(Bucket=s3_env["BACKUP_S3_BUCKET"], Key=key, Body=manifest.to_json())

    verify = (
        load_defs()
        .resolve_job_def("verify_job")
        .execute_in_process(instance=instance, partition_key=backup_id, raise_on_error=False)
    )

    assert not verify.success
    assert "app.users: manifest 3001, restored 3000" in failure_message(verify)


def test_backup_names_use_the_configured_prefix(s3_env, clean_env):
    clean_env.setenv("BACKUP_NAME_PREFIX", "shop")
    result, backup_id = run_backup(dg.DagsterInstance.get(), "pre-migration")
    assert result.success, failure_message(result)
    storage = open_storage(load_settings().storage)
    assert storage.head(f"db-backups/shop_{backup_id}.dump.json") is not None
    assert backup_id.startswith("pre-migration_")
