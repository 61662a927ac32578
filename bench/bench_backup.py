"""Backup and verification speed and memory, side by side with plain pg_dump / pg_restore, repeated.

Each repetition runs, one after the other on the same database:
  1. `pg_dump -Fc > /dev/null` alone: the floor;
  2. the original workflows' way: `pg_dump -Fc --no-owner --no-acl -f FILE`, then boto3 `upload_file`
     to moto (with --moto);
  3. our backup through backup_pipeline.core.backup.take_backup (what the database_dump/offsite_backup asset
     runs), in a process of its own, into a local folder and, with --moto, into moto's S3 server;
  4. plain `pg_restore` of that file into a fresh database, and our verification (verify_backup: stream from
     storage through sha256 into pg_restore, count every table's rows, drop the scratch database).
Then prints medians, spread (min-max), per-repetition ratios and peak RSS.

    .venv/bin/python -m bench.bench_backup --dbname bench_1g --repeat 3 --moto
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from bench.generate_data import ADMIN_URL_DEFAULT, database_url
from bench.measure import Series, paired_ratios, run

PYTHON = sys.executable


def pipeline(action: str, url: str, storage: str, endpoint: str | None = None, extra: list[str] | None = None):
    argv = [PYTHON, "-m", "bench.run_pipeline", action, "--url", url, "--storage", storage, *(extra or [])]
    if endpoint:
        argv += ["--endpoint", endpoint]
    measured = run(argv)
    if measured.returncode != 0:
        raise SystemExit(f"{action} failed:\n{measured.stderr.decode(errors='replace')[-3000:]}")
    return measured, json.loads(measured.stdout.decode().strip().splitlines()[-1])


def recreate_database(admin_url: str, name: str, drop_only: bool = False) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))


def empty_bucket(client, bucket: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dbname", default="bench_1g")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", ADMIN_URL_DEFAULT))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--moto", action="store_true", help="also upload to moto's S3 server (holds objects in RAM)")
    parser.add_argument("--no-verify", action="store_true", help="skip the restore comparison")
    parser.add_argument(
        "--dagster-job",
        action="store_true",
        help="also run backup_job (dump, upload, verify) through Dagster and record its process's RSS",
    )
    parser.add_argument("--format", default="custom", help="our backup's dump format (custom or directory)")
    parser.add_argument("--jobs", type=int, default=1, help="pg_dump/pg_restore jobs for --format directory")
    parser.add_argument("--compression", help="our backup's compression (gzip:N, ...); default pg_dump's")
    parser.add_argument("--workdir", default=tempfile.gettempdir(), help="where dump files and local backups go")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args(argv)

    url = database_url(args.admin_url, args.dbname)
    work = Path(tempfile.mkdtemp(prefix="bench-backup-", dir=args.workdir))
    ours_extra = ["--format", args.format, "--jobs", str(args.jobs)]
    if args.compression:
        ours_extra += ["--compression", args.compression]
    restore_jobs = ["--jobs", str(args.jobs)] if args.format == "directory" else []
    fresh_db = f"{args.dbname}_restore"
    series = {
        key: Series(label)
        for key, label in [
            ("floor", "pg_dump -Fc > /dev/null"),
            ("orig_dump", "original: pg_dump -f file"),
            ("orig_upload", "original: upload_file to moto"),
            ("orig_total", "original: dump + upload to moto"),
            ("ours_local", "ours: backup to local folder"),
            ("ours_moto", "ours: backup to moto"),
            ("plain_restore", "pg_restore into a fresh database"),
            ("ours_verify", "ours: verify_backup"),
            ("ours_job", "ours: backup_job through Dagster (dump, upload, verify)"),
        ]
    }
    rss = {
        key: Series(label)
        for key, label in [
            ("pg_dump", "pg_dump alone"),
            ("ours_local_py", "ours (local): backup process"),
            ("ours_local_child", "ours (local): its pg_dump"),
            ("ours_local_tree", "ours (local): process + pg_dump (sampled sum)"),
            ("ours_moto_py", "ours (moto): backup process"),
            ("ours_moto_tree", "ours (moto): process + pg_dump (sampled sum)"),
            ("verify_py", "ours: verification process"),
            ("job_py", "ours: Dagster run process (backup_job)"),
            ("job_tree", "ours: Dagster run process + children (sampled sum)"),
        ]
    }
    moto = client = None
    if args.moto:
        from tests.support.moto import MotoServer

        moto = MotoServer()
        client = moto.client()
        client.create_bucket(Bucket="bench")
    size_bytes = 0
    try:
        with psycopg.connect(url) as conn:
            db_size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
        print(f"database {args.dbname}: {db_size / 1024**2:.0f} MB on disk; {args.repeat} repetitions", flush=True)
        for rep in range(1, args.repeat + 1):
            floor = run(["pg_dump", "-Fc", f"--dbname={url}"], stdout=subprocess.DEVNULL)
            series["floor"].add(floor.seconds)
            rss["pg_dump"].add(floor.peak_of("pg_dump"))

            local_dir = work / f"local-{rep}"
            measured, out = pipeline("backup", url, f"local:{local_dir}", extra=ours_extra)
            series["ours_local"].add(out["duration_s"])
            rss["ours_local_py"].add(out["peak_rss_mb"])
            rss["ours_local_child"].add(measured.peak_of("pg_dump"))
            rss["ours_local_tree"].add(measured.tree_peak_rss_mb)
            size_bytes, local_name = out["size_bytes"], out["name"]

            dump_file = work / "original.dump"
            orig = run(["pg_dump", "-Fc", "--no-owner", "--no-acl", f"--dbname={url}", f"--file={dump_file}"])
            series["orig_dump"].add(orig.seconds)
            if client is not None:
                started = time.monotonic()
                client.upload_file(str(dump_file), "bench", f"original/{rep}.dump")
                upload_s = time.monotonic() - started
                series["orig_upload"].add(upload_s)
                series["orig_total"].add(orig.seconds + upload_s)
                empty_bucket(client, "bench")

                measured, out = pipeline("backup", url, "s3://bench", moto.endpoint, extra=ours_extra)
                series["ours_moto"].add(out["duration_s"])
                rss["ours_moto_py"].add(out["peak_rss_mb"])
                rss["ours_moto_tree"].add(measured.tree_peak_rss_mb)
                empty_bucket(client, "bench")

            if not args.no_verify:
                recreate_database(args.admin_url, fresh_db)
                plain_source = dump_file
                if args.format == "directory":  # compare like with like: plain parallel restore of a directory
                    plain_source = work / "original.dir"
                    shutil.rmtree(plain_source, ignore_errors=True)
                    subprocess.run(
                        [
                            "pg_dump",
                            "-Fd",
                            f"--jobs={args.jobs}",
                            "--no-owner",
                            "--no-acl",
                            f"--dbname={url}",
                            f"--file={plain_source}",
                        ],
                        check=True,
                    )
                restore = run(
                    [
                        "pg_restore",
                        "--no-owner",
                        "--no-acl",
                        "--exit-on-error",
                        *restore_jobs,
                        f"--dbname={database_url(args.admin_url, fresh_db)}",
                        str(plain_source),
                    ]
                )
                if restore.returncode != 0:
                    raise SystemExit(f"pg_restore failed: {restore.stderr.decode(errors='replace')[-2000:]}")
                series["plain_restore"].add(restore.seconds)
                recreate_database(args.admin_url, fresh_db, drop_only=True)

                measured, out = pipeline("verify", url, f"local:{local_dir}", extra=["--name", local_name])
                series["ours_verify"].add(out["duration_s"])
                rss["verify_py"].add(out["peak_rss_mb"])
            if args.dagster_job:
                env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_", "AWS_", "DO_SPACES_"))}
                env.update(
                    {
                        "DATABASE_URL": url,
                        "BACKUP_DUMP_FORMAT": args.format,
                        "BACKUP_DUMP_JOBS": str(args.jobs),
                        "BACKUP_COMPRESSION": args.compression or "",
                    }
                )
                if client is not None:
                    env.update(
                        {
                            "BACKUP_S3_BUCKET": "bench",
                            "BACKUP_S3_ENDPOINT_URL": moto.endpoint,
                            "BACKUP_S3_REGION": "us-east-1",
                            "AWS_ACCESS_KEY_ID": "testing",
                            "AWS_SECRET_ACCESS_KEY": "testing",
                        }
                    )
                else:
                    env["BACKUP_LOCAL_DIR"] = str(work / f"job-{rep}")
                measured = run([PYTHON, "-m", "bench.run_job"], env=env)
                if measured.returncode != 0:
                    raise SystemExit(f"backup_job failed:\n{measured.stderr.decode(errors='replace')[-3000:]}")
                out = json.loads(measured.stdout.decode().strip().splitlines()[-1])
                series["ours_job"].add(out["duration_s"])
                rss["job_py"].add(out["peak_rss_mb"])
                rss["job_tree"].add(measured.tree_peak_rss_mb)
                if client is not None:
                    empty_bucket(client, "bench")
                shutil.rmtree(work / f"job-{rep}", ignore_errors=True)
            shutil.rmtree(local_dir, ignore_errors=True)
            dump_file.unlink(missing_ok=True)
            done = ", ".join(f"{s.label} {s.values[-1]:.1f} s" for s in series.values() if len(s.values) == rep)
            print(f"repetition {rep}: {done}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if moto is not None:
            moto.stop()

    report(series, rss, args, db_size, size_bytes)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "database": args.dbname,
                    "database_size_bytes": db_size,
                    "dump_size_bytes": size_bytes,
                    "times_s": {k: s.values for k, s in series.items()},
                    "rss_mb": {k: s.values for k, s in rss.items()},
                },
                indent=2,
            )
        )
    return 0


def report(series: dict, rss: dict, args, db_size: int, dump_size: int) -> None:
    print(
        f"\n{args.dbname}: {db_size / 1024**2:.0f} MB on disk, our dump {dump_size / 1024**2:.0f} MB "
        f"({db_size / max(dump_size, 1):.2f}:1); format {args.format}, jobs {args.jobs}, "
        f"compression {args.compression or 'default'}\n"
    )
    print("| measure | median | spread (min-max) | runs |\n|---|---|---|---|")
    for s in series.values():
        if s.values:
            print(s.row())
    print("\n| ratio (per repetition, median) | median | spread | runs |\n|---|---|---|---|")
    pairs = [
        ("ours_local", "floor"),
        ("ours_moto", "floor"),
        ("orig_total", "floor"),
        ("ours_moto", "orig_total"),
        ("ours_verify", "plain_restore"),
    ]
    for top, bottom in pairs:
        if series[top].values and series[bottom].values:
            print(paired_ratios(series[top], series[bottom]).row(unit="x"))
    print("\n| peak RSS | median | spread | runs |\n|---|---|---|---|")
    for s in rss.values():
        if s.values:
            print(s.row(unit="MB"))


if __name__ == "__main__":
    sys.exit(main())
