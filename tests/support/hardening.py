"""What the fault, bad-input, secrets and encryption tests share: environments, stand-in client tools, tmpfs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import CONFIG_VARS
from tests.support.dagster_home import new_dagster_home
from tests.support.seed import SEED_SQL


def real_pg_bin() -> Path:
    """The newest installed client's bin folder, else the bundled one (a machine without PostgreSQL)."""
    from backup_pipeline.core.postgres.clients import ClientTools

    clients = ClientTools.locate().clients
    installed = [c for c in clients if c.origin != "bundled"]
    return max(installed or clients, key=lambda c: c.major).bin_dir


def client_tools_folder(folder: Path, pg_dump_script: str) -> Path:
    """A BACKUP_PG_BIN_DIR whose pg_dump is `pg_dump_script` (sh; $REAL is the real bin folder), the rest real."""
    folder.mkdir(parents=True, exist_ok=True)
    real = real_pg_bin()
    script = folder / "pg_dump"
    script.write_text(f"#!/bin/sh\nREAL={real}\n{pg_dump_script}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    for tool in ("pg_restore", "psql"):
        (folder / tool).symlink_to(real / tool)
    return folder


def database_url(admin_url: str, dbname: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + dbname


def create_database(admin_url: str, prefix: str, seed_sql: str | None = SEED_SQL) -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    if seed_sql:
        with psycopg.connect(database_url(admin_url, name), autocommit=True) as conn:
            conn.execute(seed_sql)
    return name


def drop_databases(admin_url: str, names) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_names(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def bucket_state(client, bucket: str) -> dict[str, str]:
    """Every object in the bucket with the sha256 of its bytes."""
    state = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            state[item["Key"]] = hashlib.sha256(body).hexdigest()
    return state


def open_multipart_uploads(client, bucket: str) -> list:
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


@contextlib.contextmanager
def clean_environment(values: dict[str, str]):
    """os.environ without any of our variables, plus `values`; restored afterwards (usable beyond one test)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in CONFIG_VARS:
            patch.delenv(name, raising=False)
        for name, value in values.items():
            patch.setenv(name, value)
        yield patch


def s3_backup_env(admin_url: str, dbname: str, moto_server, bucket: str, root: Path) -> dict[str, str]:
    """The environment for backing up `dbname` into `bucket` on moto, with its own DAGSTER_HOME under `root`."""
    return {
        "DATABASE_URL": database_url(admin_url, dbname),
        "BACKUP_S3_BUCKET": bucket,
        "BACKUP_S3_ENDPOINT_URL": moto_server.endpoint,
        "BACKUP_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DAGSTER_HOME": str(new_dagster_home(root / "dagster_home")),
    }


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str = "64k"):
    """A tmpfs of `size` mounted at `path` (root only); skips the test where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}): run as root to test a full disk")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def pg_dump_processes(dbname: str) -> list[int]:
    """Pids of running pg_dump processes whose command line names `dbname`."""
    import psutil

    pids = []
    for process in psutil.process_iter(["cmdline"]):
        argv = process.info["cmdline"] or []
        if argv and os.path.basename(argv[0]) == "pg_dump" and any(dbname in a for a in argv[1:]):
            pids.append(process.pid)
    return pids


class ProcessSampler:
    """Records the command line of every process on the machine, sampled every few milliseconds in a thread,
    and the environment of the programs named in `environment_of`."""

    def __init__(self, every_s: float = 0.02, environment_of: tuple[str, ...] = ("pg_dump", "pg_restore")):
        import threading

        self.every_s = every_s
        self.environment_of = environment_of
        self.seen: set[tuple[str, ...]] = set()
        self.environments: dict[str, set[bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                        raw = handle.read()
                except OSError:
                    continue
                if not raw:
                    continue
                argv = tuple(a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0"))
                self.seen.add(argv)
                program = os.path.basename(argv[0])
                if program in self.environment_of:
                    try:
                        with open(f"/proc/{entry.name}/environ", "rb") as handle:
                            self.environments.setdefault(program, set()).add(handle.read())
                    except OSError:
                        pass
            self._stop.wait(self.every_s)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def programs(self) -> set[str]:
        return {os.path.basename(argv[0]) for argv in self.seen} | {
            argv[2] for argv in self.seen if len(argv) > 2 and argv[1] == "-m"
        }

    def containing(self, text: str) -> list[str]:
        return [" ".join(argv) for argv in self.seen if any(text in a for a in argv)]
