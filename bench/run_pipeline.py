"""One backup or verification through the pipeline's own entry points, in a process of its own.

The benchmark runs this as a child so the process's peak memory is the backup's alone. Prints one JSON
line: the call's duration and this process's peak RSS (the benchmark samples its children's).

    python -m bench.run_pipeline backup --url URL --storage local:/tmp/backups
    python -m bench.run_pipeline backup --url URL --storage s3://bucket --endpoint http://127.0.0.1:PORT
    python -m bench.run_pipeline verify --url URL --storage local:/tmp/backups --name NAME
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench.measure import own_peak_rss_mb


def storage_for(spec: str, endpoint: str | None):
    from backup_pipeline.core.storage.local import LocalStorage
    from backup_pipeline.core.storage.s3 import S3Storage

    if spec.startswith("local:"):
        return LocalStorage(spec.removeprefix("local:"))
    if spec.startswith("s3://"):
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        return S3Storage(client, spec.removeprefix("s3://"), endpoint)
    raise SystemExit(f"--storage must be local:<folder> or s3://<bucket>, got {spec}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["backup", "verify"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--endpoint")
    parser.add_argument("--name", help="backup to verify")
    parser.add_argument("--format", default="custom")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--compression")
    args = parser.parse_args(argv)

    from backup_pipeline.core.backup import take_backup
    from backup_pipeline.core.catalog import BackupCatalog
    from backup_pipeline.core.dump_options import DumpOptions
    from backup_pipeline.core.names import BackupId, BackupName
    from backup_pipeline.core.postgres import PostgresTarget
    from backup_pipeline.core.postgres.clients import ClientTools
    from backup_pipeline.core.verify import verify_backup

    target = PostgresTarget.from_url(args.url)
    catalog = BackupCatalog(storage_for(args.storage, args.endpoint), "db-backups", target.dbname)
    tools = ClientTools.locate()
    quiet = lambda _line: None  # noqa: E731
    started = time.monotonic()
    if args.action == "backup":
        options = DumpOptions(format=args.format, jobs=args.jobs, compression=args.compression)
        result = take_backup(target, catalog, BackupId.new("manual"), tools, options, log=quiet)
        out = {"name": result.manifest.name, "size_bytes": result.manifest.size_bytes}
    else:
        name = BackupName.parse(args.name, catalog.name_prefix)
        outcome = verify_backup(catalog, name, target, tools, log=quiet)
        out = {"name": str(name), "rows": sum(outcome.tables.values())}
    out["duration_s"] = round(time.monotonic() - started, 3)
    out["peak_rss_mb"] = round(own_peak_rss_mb(), 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
