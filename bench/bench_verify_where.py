"""What verifying on a throwaway local server costs against verifying on the source server.

Builds the benchmark's realistic database (generate_data.py), backs it up once into a local folder, then
verifies the same backup alternately on the source server (a scratch database there) and on a local server
made for the verification (the default), `--repeat` times each. Reports the median time of each, the local
server's own overhead (initdb + start + stop, measured alone), and the peak disk of the local server's
folder (sampled every 50 ms with a walk of its files).

    .venv/bin/python -m bench.bench_verify_where --size 200MB --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.local_verify import LOCAL_SERVER_SETTINGS, LocalServerPlan
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.throwaway import ThrowawayServer
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.verify import verify_backup
from bench.generate_data import ADMIN_URL_DEFAULT, build, parse_size

QUIET = lambda _: None  # noqa: E731


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class PeakDisk:
    """The largest total size of the local server folders under `parent`, sampled while the block runs."""

    def __init__(self, parent: Path):
        self.parent, self.peak, self._done = parent, 0, threading.Event()

    def __enter__(self) -> PeakDisk:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, sum(_folder_bytes(p) for p in self.parent.glob("backup-verify-pg-*")))
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def _server_overhead() -> float:
    started = time.monotonic()
    server = ThrowawayServer(label="verify", settings=LOCAL_SERVER_SETTINGS).start()
    server.stop()
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="200MB")
    parser.add_argument("--dbname", default="bench_verify_where")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", ADMIN_URL_DEFAULT))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args(argv)
    built = build(args.admin_url, args.dbname, parse_size(args.size), log=QUIET)
    print(f"database {args.dbname}: {built['size_bytes'] / 1024**2:.0f} MiB on disk (built in {built['build_s']} s)")
    source = PostgresTarget.from_url(built["url"])
    parent = Path(tempfile.mkdtemp(prefix="bench-verify-where-"))
    parent.chmod(0o755)
    try:
        catalog = BackupCatalog(LocalStorage(parent / "backups"), "db-backups", "bench")
        backup_id = BackupId.new("manual")
        take_backup(source, catalog, backup_id, log=QUIET)
        name = BackupName(prefix="bench", id=backup_id)
        manifest = catalog.manifest(name)
        print(f"dump: {manifest.size_bytes / 1024**2:.0f} MiB ({manifest.compression})")
        times: dict[str, list[float]] = {"source": [], "local": []}
        peaks = []
        overheads = [_server_overhead() for _ in range(args.repeat)]
        for _ in range(args.repeat):
            started = time.monotonic()
            verify_backup(catalog, name, source, log=QUIET)
            times["source"].append(time.monotonic() - started)
            with PeakDisk(parent) as disk:
                started = time.monotonic()
                verify_backup(catalog, name, LocalServerPlan(parent=parent), log=QUIET)
                times["local"].append(time.monotonic() - started)
            peaks.append(disk.peak)
        for where, values in times.items():
            print(
                f"verify on {where}: median {statistics.median(values):.1f} s ({', '.join(f'{v:.1f}' for v in values)})"
            )
        print(f"local server initdb + start + stop alone: median {statistics.median(overheads):.2f} s")
        print(
            f"peak disk of the local server's folder: {max(peaks) / 1024**2:.0f} MiB "
            f"({max(peaks) / built['size_bytes']:.2f} x the source database's size)"
        )
    finally:
        import shutil

        shutil.rmtree(parent, ignore_errors=True)
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.dbname)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
