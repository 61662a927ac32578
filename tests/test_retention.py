"""Retention deletes exactly what the policy says, only our own objects, and nothing on dry-run."""

import os
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from backup_pipeline.core.backup import writer_lock_name
from backup_pipeline.core.names import TIMESTAMP_FORMAT
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.locks import advisory_lock
from tests.support.pipeline import failure_message, load_defs

NOW = datetime.now(UTC).replace(microsecond=0)
IN_FLIGHT = timedelta(hours=1)  # the age of the upload a live backup run is still writing


def _id(backup_type: str, age: timedelta) -> str:
    return f"{backup_type}_{(NOW - age).strftime(TIMESTAMP_FORMAT)}"


def _put_backup(client, bucket, prefix, backup_id, manifest=True, verified=False, name_prefix="app"):
    base = f"{prefix}/{name_prefix}_{backup_id}.dump"
    keys = [base]
    client.put_object(Bucket=bucket, Key=base, Body=b"PGDMP fake dump body")
    if manifest:
        client.put_object(Bucket=bucket, Key=base + ".json", Body=b"{}")
        keys.append(base + ".json")
    if verified:
        client.put_object(Bucket=bucket, Key=base + ".verified.json", Body=b"{}")
        keys.append(base + ".verified.json")
    return keys


@pytest.fixture
def populated_bucket(s3_env, clean_env, moto_server):
    clean_env.setenv("BACKUP_NAME_PREFIX", "app")
    clean_env.setenv("BACKUP_KEEP_LAST", "2")
    client, bucket = moto_server.client(), s3_env["BACKUP_S3_BUCKET"]
    day = timedelta(days=1)
    kept, deleted = [], []
    kept += _put_backup(client, bucket, "db-backups", _id("daily", 1 * day), verified=True)  # newest verified
    kept += _put_backup(client, bucket, "db-backups", _id("daily", 2 * day), verified=True)  # newest verified
    kept += _put_backup(client, bucket, "db-backups", _id("daily", 5 * day))  # young
    kept += _put_backup(client, bucket, "db-backups", _id("manual", 29 * day))  # young
    deleted += _put_backup(client, bucket, "db-backups", _id("daily", 40 * day), verified=True)
    deleted += _put_backup(client, bucket, "db-backups", _id("daily", 50 * day), verified=True)
    deleted += _put_backup(client, bucket, "db-backups", _id("daily", 60 * day))
    deleted += _put_backup(client, bucket, "db-backups", _id("manual", 45 * day))
    kept += _put_backup(client, bucket, "db-backups", _id("pre-migration", 400 * day))  # pre-migration kept
    kept += _put_backup(client, bucket, "db-backups", _id("daily", -2 * day))  # future timestamp
    deleted += _put_backup(client, bucket, "db-backups", _id("daily", 3 * day), manifest=False)  # stale incomplete
    kept += _put_backup(client, bucket, "db-backups", _id("daily", IN_FLIGHT), manifest=False)  # in flight
    # A young upload whose run is gone (nobody holds its writer lock): the sweep after the prune removes it.
    deleted += _put_backup(client, bucket, "db-backups", _id("daily", timedelta(hours=2)), manifest=False)
    # Not ours: another database's backups, an app-like name with another prefix, foreign objects.
    kept += _put_backup(client, bucket, "db-backups", _id("daily", 90 * day), name_prefix="billing")
    kept += _put_backup(client, bucket, "db-backups", _id("daily", 90 * day), name_prefix="app_x")
    kept += _put_backup(client, bucket, "other-prefix", _id("daily", 90 * day))
    for key in (
        "db-backups/notes.txt",
        "db-backups/app_daily_garbage.dump",
        "db-backups/app_weekly_20200101_000000.dump",
    ):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
        kept.append(key)
    return client, bucket, set(kept), set(deleted)


def _keys(client, bucket):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _prune(instance, dry_run: bool):
    return (
        load_defs()
        .resolve_job_def("prune_job")
        .execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"ops": {"backup_retention": {"config": {"dry_run": dry_run}}}},
        )
    )


def _metadata(result):
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def test_dry_run_deletes_nothing_and_reports_the_plan(populated_bucket):
    client, bucket, kept, deleted = populated_bucket
    result = _prune(dg.DagsterInstance.get(), dry_run=True)
    assert result.success, failure_message(result)
    assert _keys(client, bucket) == kept | deleted
    meta = _metadata(result)
    assert meta["would_delete"] == 5 and meta["deleted"] == 0
    assert "older than 30 days" in meta["decisions"] and "pre-migration backups are kept" in meta["decisions"]


def test_prune_deletes_exactly_the_expired_keys_and_their_partitions(populated_bucket):
    client, bucket, kept, deleted = populated_bucket
    instance = dg.DagsterInstance.get()
    ids = sorted({k.rsplit("/", 1)[1].split(".")[0].removeprefix("app_") for k in kept | deleted if "/app_" in k})
    instance.add_dynamic_partitions("backups", [i for i in ids if i.count("_") == 2])

    # The in-flight upload's run is alive: it holds the writer lock on the database's server.
    source = PostgresTarget.from_url(os.environ["DATABASE_URL"])
    with advisory_lock(source, writer_lock_name(f"app_{_id('daily', IN_FLIGHT)}")) as held:
        assert held
        result = _prune(instance, dry_run=False)

    assert result.success, failure_message(result)
    assert _keys(client, bucket) == kept
    assert _metadata(result)["deleted"] == 5
    remaining = set(instance.get_dynamic_partitions("backups"))
    assert _id("daily", timedelta(days=40)) not in remaining
    assert _id("pre-migration", timedelta(days=400)) in remaining


def test_prune_refuses_to_delete_more_than_half(s3_env, clean_env, moto_server):
    clean_env.setenv("BACKUP_NAME_PREFIX", "app")
    clean_env.setenv("BACKUP_KEEP_LAST", "0")
    client, bucket = moto_server.client(), s3_env["BACKUP_S3_BUCKET"]
    for age in (40, 50, 60):
        _put_backup(client, bucket, "db-backups", _id("daily", timedelta(days=age)))
    _put_backup(client, bucket, "db-backups", _id("daily", timedelta(days=1)))
    before = _keys(client, bucket)

    result = _prune(dg.DagsterInstance.get(), dry_run=False)

    assert not result.success
    assert "would delete 3 of 4 backups, more than half" in failure_message(result)
    assert _keys(client, bucket) == before


def test_an_old_incomplete_dump_is_kept_while_a_run_still_writes_it(s3_env, clean_env, moto_server):
    # A dump of a large database can take longer than a day: the 24 h rule must not delete it under its run.
    clean_env.setenv("BACKUP_NAME_PREFIX", "app")
    client, bucket = moto_server.client(), s3_env["BACKUP_S3_BUCKET"]
    fresh = set(_put_backup(client, bucket, "db-backups", _id("daily", timedelta(hours=2)), verified=True))
    name = f"app_{_id('manual', timedelta(days=3))}"
    [dump] = _put_backup(client, bucket, "db-backups", _id("manual", timedelta(days=3)), manifest=False)

    source = PostgresTarget.from_url(os.environ["DATABASE_URL"])
    with advisory_lock(source, writer_lock_name(name)) as held:
        assert held
        result = _prune(dg.DagsterInstance.get(), dry_run=False)
    assert result.success, failure_message(result)
    assert _keys(client, bucket) == fresh | {dump}
    [decision] = [d for d in _metadata(result)["decisions_json"] if d["name"] == name]
    assert decision["action"] == "keep" and "a run is still writing it" in decision["reason"]

    result = _prune(dg.DagsterInstance.get(), dry_run=False)  # its run is gone
    assert result.success, failure_message(result)
    assert _keys(client, bucket) == fresh
    [decision] = [d for d in _metadata(result)["decisions_json"] if d["name"] == name]
    assert decision["action"] == "delete" and "older than 24 h" in decision["reason"]
