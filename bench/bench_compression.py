"""Compression methods and levels with pg_dump 18: dump time, stored size and verification time.

Each setting is one real backup through `take_backup` (pg_dump custom format, streamed to a local folder)
and one `verify_backup` (stream, sha256, pg_restore into a scratch database, count every table's rows) on
the realistic data of generate_data.py, on a throwaway PostgreSQL 18 from the bundled binaries (or
--admin-url). gzip is measured with the bundled client; lz4 and zstd need a pg_dump built with them, named
with --pg-bin-dir (the bundled client is built with gzip only).

    .venv/bin/python -m bench.bench_compression --size 250MB --repeat 2 --pg-bin-dir /path/to/pg18/bin
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.dump_options import DumpOptions
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.clients import ClientTools, bundled_client_dir
from backup_pipeline.core.postgres.throwaway import ThrowawayServer
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.verify import verify_backup
from bench.generate_data import build, parse_size

# "gzip" alone is pg_dump's own default level, 6 (the product's default is gzip:1, chosen from this table).
GZIP_SETTINGS = ["none", "gzip:1", "gzip:3", "gzip", "gzip:9"]
OTHER_SETTINGS = ["lz4:1", "lz4:6", "zstd:1", "zstd:3", "zstd:9"]
QUIET = lambda _line: None  # noqa: E731


def measure(url: str, admin_url: str, tools: ClientTools, setting: str, folder: Path, second: int) -> dict:
    target = PostgresTarget.from_url(url)
    catalog = BackupCatalog(LocalStorage(folder), "db-backups", target.dbname)
    backup_id = BackupId(created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=second), type="manual")
    options = DumpOptions(compression=setting)
    started = time.monotonic()
    manifest = take_backup(target, catalog, backup_id, tools, options, log=QUIET).manifest
    dumped = time.monotonic() - started
    started = time.monotonic()
    outcome = verify_backup(
        catalog, BackupName(catalog.name_prefix, backup_id), PostgresTarget.from_url(admin_url), tools, log=QUIET
    )
    verified = time.monotonic() - started
    (folder / manifest.key).unlink()
    return {
        "setting": setting,
        "size_bytes": manifest.size_bytes,
        "dump_s": dumped,
        "verify_s": verified,
        "pg_dump": manifest.pg_dump_version,
        "pg_restore": outcome.pg_restore_version,
        "rows": sum(outcome.tables.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="250MB")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--admin-url", help="a PostgreSQL 18 superuser URL; default: a throwaway bundled server")
    parser.add_argument("--pg-bin-dir", help="a PostgreSQL 18 client built with lz4 and zstd")
    parser.add_argument("--json", help="write the raw measurements here")
    args = parser.parse_args(argv)

    server = None if args.admin_url else ThrowawayServer(label="bench").start()
    admin_url = args.admin_url or server.url
    try:
        built = build(admin_url, "bench_compression", parse_size(args.size), log=QUIET)
        print(f"built {built['database']}: {built['size_bytes'] / 1024**2:.0f} MiB on disk in {built['build_s']} s")
        runs = [(s, ClientTools.at(bundled_client_dir())) for s in GZIP_SETTINGS]
        if args.pg_bin_dir:
            runs += [(s, ClientTools.at(args.pg_bin_dir)) for s in OTHER_SETTINGS]
        results: list[dict] = []
        with tempfile.TemporaryDirectory(prefix="bench-compression-") as folder:
            second = 0
            for _ in range(args.repeat):
                for setting, tools in runs:
                    second += 1
                    result = measure(built["url"], admin_url, tools, setting, Path(folder), second)
                    results.append(result)
                    print(json.dumps(result))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        print_table(results, built["size_bytes"])
    finally:
        if server is not None:
            server.stop()
    return 0


def print_table(results: list[dict], on_disk: int) -> None:
    uncompressed = statistics.median(r["size_bytes"] for r in results if r["setting"] == "none")
    print(f"\n{on_disk / 1024**2:.0f} MiB on disk; medians of {len(results) // len({r['setting'] for r in results})}")
    print("| setting | pg_dump | stored size | ratio | dump time | verification time | pg_restore |")
    print("|---|---|---|---|---|---|---|")
    for setting in dict.fromkeys(r["setting"] for r in results):
        rows = [r for r in results if r["setting"] == setting]
        size = statistics.median(r["size_bytes"] for r in rows)
        print(
            f"| `{setting}` | {rows[0]['pg_dump']} | {size / 1024**2:.0f} MiB | {uncompressed / size:.2f}:1 "
            f"| {statistics.median(r['dump_s'] for r in rows):.1f} s "
            f"| {statistics.median(r['verify_s'] for r in rows):.1f} s | {rows[0]['pg_restore']} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
