"""One bad answer never deletes, hangs or mislabels: a listing that leaves out an object, a download cut short,
a lock that never comes free."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from backup_pipeline.core.names import TIMESTAMP_FORMAT
from tests.support.faulty_proxy import FaultyProxy
from tests.support.pipeline import failure_message, load_defs

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)


def _id(backup_type: str, age: timedelta) -> str:
    return f"{backup_type}_{(NOW - age).strftime(TIMESTAMP_FORMAT)}"


def _put_backup(client, bucket, backup_id: str, verified: bool = True) -> list[str]:
    base = f"db-backups/app_{backup_id}.dump"
    client.put_object(Bucket=bucket, Key=base, Body=b"PGDMP fake dump body")
    client.put_object(Bucket=bucket, Key=base + ".json", Body=b"{}")
    keys = [base, base + ".json"]
    if verified:
        client.put_object(Bucket=bucket, Key=base + ".verified.json", Body=b"{}")
        keys.append(base + ".verified.json")
    return keys


def _keys(client, bucket) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _prune():
    return (
        load_defs()
        .resolve_job_def("prune_job")
        .execute_in_process(
            instance=dg.DagsterInstance.get(),
            raise_on_error=False,
            run_config={"ops": {"backup_retention": {"config": {"dry_run": False}}}},
        )
    )


@pytest.fixture
def listing_proxy(s3_env, clean_env, moto_server):
    clean_env.setenv("BACKUP_NAME_PREFIX", "app")
    with FaultyProxy(moto_server.endpoint) as proxy:
        clean_env.setenv("BACKUP_S3_ENDPOINT_URL", proxy.endpoint)
        yield proxy, moto_server.client(), s3_env["BACKUP_S3_BUCKET"]


def test_prune_never_deletes_a_verified_backup_whose_manifest_a_listing_left_out(listing_proxy):
    proxy, client, bucket = listing_proxy
    stored = set()
    for backup_type, age in (("daily", 1 * DAY), ("daily", 2 * DAY), ("manual", 3 * DAY), ("daily", 5 * DAY)):
        stored |= set(_put_backup(client, bucket, _id(backup_type, age)))
    hidden = f"db-backups/app_{_id('manual', 3 * DAY)}.dump.json"
    # Every listing leaves the manifest out: the backup looks like an incomplete upload older than a day.
    proxy.add("ListObjects", "hide", hide=(hidden,))

    result = _prune()

    assert result.success, failure_message(result)
    assert proxy.count("ListObjects", "hide") >= 1  # the listing really left it out
    assert _keys(client, bucket) == stored  # every backup, its manifest and its verification record stay
    assert proxy.count("HeadObject") >= 1  # it was looked up by name before anything was decided


def test_keep_last_counts_the_verification_record_a_listing_left_out(listing_proxy, clean_env):
    proxy, client, bucket = listing_proxy
    clean_env.setenv("BACKUP_KEEP_LAST", "2")
    _put_backup(client, bucket, _id("daily", 1 * DAY))
    middle = _put_backup(client, bucket, _id("daily", 40 * DAY))
    oldest = _put_backup(client, bucket, _id("daily", 50 * DAY))
    proxy.add("ListObjects", "hide", hide=(middle[2],))

    result = _prune()

    assert result.success, failure_message(result)
    # The 40-day-old backup is one of the newest two verified ones: it stays; the 50-day-old one goes.
    left = _keys(client, bucket)
    assert set(middle) <= left, left
    assert not set(oldest) & left, left


def test_the_more_than_half_guard_counts_backups_whose_manifests_a_listing_left_out(listing_proxy, clean_env):
    proxy, client, bucket = listing_proxy
    clean_env.setenv("BACKUP_KEEP_LAST", "0")
    stored = set(_put_backup(client, bucket, _id("daily", 1 * DAY), verified=False))
    for age in (40, 50, 60):
        stored |= set(_put_backup(client, bucket, _id("daily", age * DAY), verified=False))
    # Two of the three expired backups look like incomplete uploads: the listing alone shows 1 of 2 complete
    # backups to delete (not more than half) and two incomplete ones.
    proxy.add(
        "ListObjects", "hide", hide=tuple(f"db-backups/app_{_id('daily', age * DAY)}.dump.json" for age in (50, 60))
    )

    result = _prune()

    assert not result.success
    assert "would delete 3 of 4 backups, more than half" in failure_message(result)
    assert _keys(client, bucket) == stored
