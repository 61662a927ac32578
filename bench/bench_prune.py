"""Pruning 10,000 expired backups (30,000 objects) against moto's S3 server, timed.

Measures, each on a freshly filled bucket:
  1. the prune job as users run it (`prune_job`, the backup_retention asset, in process against a real
     Dagster instance that knows every backup as a partition): list, plan, delete, drop partitions;
  2. the storage work alone: one listing, the plan, the batched deletes (catalog + prune.py).

    .venv/bin/python -m bench.bench_prune --backups 10000 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.measure import Series

PREFIX = "bench"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def backup_ids(count: int, now: datetime) -> list[str]:
    from backup_pipeline.core.names import BackupId

    oldest = now - timedelta(days=40)
    return [
        str(BackupId(created_at=(oldest - timedelta(hours=i)).replace(microsecond=0), type="daily"))
        for i in range(count)
    ]


def fill_bucket(client, bucket: str, ids: list[str]) -> None:
    manifest = b'{"note": "benchmark manifest"}'

    def put(backup_id: str) -> None:
        base = f"db-backups/{PREFIX}_{backup_id}.dump"
        client.put_object(Bucket=bucket, Key=base, Body=b"PGDMP")
        client.put_object(Bucket=bucket, Key=base + ".json", Body=manifest)
        client.put_object(Bucket=bucket, Key=base + ".verified.json", Body=manifest)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, ids))


def count_objects(client, bucket: str) -> int:
    return sum(page.get("KeyCount", 0) for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket))


def prune_with_job(endpoint: str, bucket: str, ids: list[str]) -> float:
    import dagster as dg

    from backup_pipeline.core.config_loading import load_settings
    from backup_pipeline.definitions import build_definitions

    home = Path(tempfile.mkdtemp(prefix="bench-prune-home-"))
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "DATABASE_URL": "postgresql://bench@127.0.0.1:5432/bench",
        "BACKUP_NAME_PREFIX": PREFIX,
        "BACKUP_S3_BUCKET": bucket,
        "BACKUP_S3_ENDPOINT_URL": endpoint,
        "BACKUP_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "BACKUP_KEEP_LAST": "0",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        defs = build_definitions(load_settings())
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("backups", ids)
            job = defs.resolve_job_def("prune_job")
            started = time.monotonic()
            result = job.execute_in_process(
                instance=instance, run_config={"ops": {"backup_retention": {"config": {"allow_large_prune": True}}}}
            )
            seconds = time.monotonic() - started
            assert result.success
            left = instance.get_dynamic_partitions("backups")
            if left:
                raise SystemExit(f"{len(left)} partitions were not removed")
        return seconds
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(home, ignore_errors=True)


def prune_storage_only(client, endpoint: str, bucket: str) -> float:
    from backup_pipeline.core.catalog import BackupCatalog
    from backup_pipeline.core.prune import RetentionPolicy, apply_prune, plan_prune
    from backup_pipeline.core.storage.s3 import S3Storage

    catalog = BackupCatalog(S3Storage(client, bucket, endpoint), "db-backups", PREFIX)
    started = time.monotonic()
    decisions = plan_prune(catalog.entries(), RetentionPolicy(retention_days=30, keep_last=0), datetime.now(UTC))
    apply_prune(catalog, decisions)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backups", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)

    from tests.support.moto import MotoServer

    job_series = Series(f"prune_job, {args.backups} expired backups")
    storage_series = Series(f"list + plan + delete only, {args.backups} expired backups")
    server = MotoServer()
    try:
        client = server.client()
        ids = backup_ids(args.backups, datetime.now(UTC))
        for rep in range(1, args.repeat + 1):
            for series, action in ((job_series, "job"), (storage_series, "storage")):
                bucket = f"prune-{action}-{rep}"
                client.create_bucket(Bucket=bucket)
                started = time.monotonic()
                fill_bucket(client, bucket, ids)
                print(f"filled {bucket} with {3 * len(ids)} objects in {time.monotonic() - started:.0f} s", flush=True)
                if action == "job":
                    seconds = prune_with_job(server.endpoint, bucket, ids)
                else:
                    seconds = prune_storage_only(client, server.endpoint, bucket)
                left = count_objects(client, bucket)
                if left:
                    raise SystemExit(f"{left} objects were left in {bucket}")
                series.add(seconds)
                print(f"repetition {rep}: {series.label}: {seconds:.2f} s", flush=True)
                client.delete_bucket(Bucket=bucket)
    finally:
        server.stop()
    print("\n| measure | median | spread (min-max) | runs |\n|---|---|---|---|")
    print(job_series.row())
    print(storage_series.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
