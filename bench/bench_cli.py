"""`backup-db` timed end to end, as users run it (a fresh process each time, wall clock).

1. `backup-db list` (and `list --json`) over 10,000 complete, verified backups (30,000 objects: dump,
   manifest, verification marker) plus incomplete uploads and another database's backups, in moto's S3
   server. The objects are created through moto's own API in the server's process (tiny bodies: a
   listing never reads them), so filling takes a second instead of minutes of PUTs.
2. `backup-db backup` of a ~50 MB database that looks like an application's (bench.generate_data) into
   moto's S3 server, with a fresh Dagster instance and no daemon: the command starts the run, which
   dumps, uploads, and verifies by a real restore; the clock stops when the command exits.

  .venv/bin/python -m bench.bench_cli [--backups 10000] [--size 50MB] [--repeat 3] [--keep-db]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.measure import Series

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("backup-db"))
BUCKET = "bench-cli"
NAME_PREFIX = "app"
ADMIN_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
OUR_VARS = re.compile(r"^(DATABASE_URL|BACKUP_.*|AWS_.*|DO_SPACES_.*|DISCORD_.*|DAGSTER_.*)$")


def serve_filled_moto(port: int, backups: int) -> None:
    """In this process: moto's S3 server on `port`, its bucket filled through moto's API; prints `ready`."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.s3.models import s3_backends

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(BUCKET, "us-east-1")
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(backups):
        kind = "pre-migration" if i % 20 == 0 else "manual" if i % 7 == 0 else "daily"
        stamp = (now - timedelta(hours=i + 1, seconds=i % 60)).strftime("%Y%m%d_%H%M%S")
        base = f"db-backups/{NAME_PREFIX}_{kind}_{stamp}.dump"
        backend.put_object(BUCKET, base, b"PGDMP" + bytes(59))
        backend.put_object(BUCKET, base + ".json", b"{}")
        backend.put_object(BUCKET, base + ".verified.json", b"{}")
    for i in range(50):  # uploads that never finished: listed by nobody
        backend.put_object(BUCKET, f"db-backups/{NAME_PREFIX}_daily_20200101_{i:06d}.dump", b"PGDMP")
    for i in range(500):  # another database's backups under the same prefix: not ours
        backend.put_object(BUCKET, f"db-backups/billing_daily_20250101_{i:06d}.dump", b"PGDMP")
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def _free_port() -> int:
    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.support.processes import free_port

    return free_port()


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not OUR_VARS.match(k)}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "BACKUP_S3_REGION": "us-east-1",
            "DAGSTER_HOME": str(home),
        }
    )
    return env


def _cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def bench_list(backups: int, repeat: int, work: Path) -> dict:
    from tests.support.processes import start_process, stop_process

    port = _free_port()
    server = start_process(
        [sys.executable, "-m", "bench.bench_cli", "serve-moto", str(port), str(backups)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = time.monotonic()
        assert server.stdout.readline().strip() == b"ready", "moto did not start"
        print(f"moto filled with {backups} backups ({3 * backups + 550} objects) in {time.monotonic() - started:.1f} s")
        env = _base_env(work / "dagster_home_list")
        env.update(
            {
                "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{NAME_PREFIX}",
                "BACKUP_S3_BUCKET": BUCKET,
                "BACKUP_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            }
        )
        results = {}
        for args in (["list"], ["list", "--json"]):
            label = "backup-db " + " ".join(args)
            wall, server_cpu = Series(f"{label}, {backups} backups: wall"), Series(f"{label}: moto server CPU")
            for _ in range(repeat):
                cpu_before = _cpu_seconds(server.pid)
                t0 = time.monotonic()
                done = subprocess.run([CLI, *args], env=env, cwd=work, capture_output=True, text=True)
                wall.add(time.monotonic() - t0)
                server_cpu.add(_cpu_seconds(server.pid) - cpu_before)
                assert done.returncode == 0, done.stderr
                if args == ["list"]:
                    assert f"Total: {backups} backups" in done.stdout.splitlines()[-1], done.stdout[-300:]
                else:
                    assert len(json.loads(done.stdout)) == backups
            for series in (wall, server_cpu):
                print(series.row())
            results[label] = {"wall_s": wall.values, "moto_cpu_s": server_cpu.values}
        return results
    finally:
        stop_process(server)


def bench_backup(size: str, repeat: int, work: Path, admin_url: str, keep_db: bool) -> dict:
    from bench.generate_data import build, database_url, parse_size
    from tests.support.moto import MotoServer

    dbname = "bench_cli_50m"
    print(f"building {dbname} ({size}) with bench.generate_data ...")
    built = build(admin_url, dbname, parse_size(size), log=lambda _m: None)
    print(f"  {built['size_bytes'] / 1024**2:.1f} MB on disk, built in {built['build_s']} s")
    moto = MotoServer()
    wall = Series(f"backup-db backup, {built['size_bytes'] / 1024**2:.0f} MB database: wall")
    runs = []
    try:
        for i in range(repeat):
            home = work / f"dagster_home_backup_{i}"
            home.mkdir()
            shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
            bucket = f"bench-cli-backup-{i}"
            moto.client().create_bucket(Bucket=bucket)
            env = _base_env(home)
            env.update(
                {
                    "DATABASE_URL": database_url(admin_url, dbname),
                    "BACKUP_S3_BUCKET": bucket,
                    "BACKUP_S3_ENDPOINT_URL": moto.endpoint,
                }
            )
            t0 = time.monotonic()
            done = subprocess.run([CLI, "backup", "--json"], env=env, cwd=work, capture_output=True, text=True)
            wall.add(time.monotonic() - t0)
            assert done.returncode == 0, done.stderr
            result = json.loads(done.stdout)
            assert result["verified"] is True
            runs.append({"wall_s": wall.values[-1], "dump_bytes": result["size_bytes"], "progress": done.stderr})
            print(f"  run {i + 1}: {wall.values[-1]:.1f} s, dump {result['size_bytes'] / 1024**2:.1f} MB")
            moto.client().delete_object(Bucket=bucket, Key=result["key"])  # moto keeps objects in RAM
        print(wall.row())
        return {"database_bytes": built["size_bytes"], "runs": runs, "wall_s": wall.values}
    finally:
        moto.stop()
        if not keep_db:
            import psycopg
            from psycopg import sql

            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-moto"]:
        serve_filled_moto(int(argv[1]), int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backups", type=int, default=10_000)
    parser.add_argument("--size", default="50MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["list", "backup"])
    parser.add_argument("--keep-db", action="store_true", help="keep the generated database afterwards")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", ADMIN_URL_DEFAULT))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(PROJECT_ROOT))
    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    results = {"machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}}
    try:
        if args.only in (None, "list"):
            results["list"] = bench_list(args.backups, args.repeat, work)
        if args.only in (None, "backup"):
            results["backup"] = bench_backup(args.size, args.repeat, work, args.admin_url, args.keep_db)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = PROJECT_ROOT / "bench" / "results" / "cli.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
