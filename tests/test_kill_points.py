"""SIGKILL at every stage of a backup and a restore, on S3 and on the local folder: the next command sweeps up.

Real processes throughout: `backup-db` runs each backup and restore in a run process of its own session
(cli/runs.py), which starts pg_dump/pg_restore. The stand-in client tools (BACKUP_PG_BIN_DIR) run the real ones
and then block at the stage under test, saying so by writing their pid to a file; the test waits for the
stage's own trace (the multipart upload's first part, the partial file, the dump object, the scratch
database) and SIGKILLs the run's whole process group, as an OOM kill or a lost machine would. Then the next
command must leave no password file, partial file, multipart upload, incomplete object or scratch database,
and succeed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from backup_pipeline.core.owners import pid_alive
from tests.support.cli import CLI, OUR_VARS, call_cli, row_counts
from tests.support.hardening import (
    clean_environment,
    create_database,
    database_names,
    database_url,
    drop_databases,
    new_dagster_home,
    open_multipart_uploads,
    real_pg_bin,
)
from tests.support.scratch import named_in
from tests.support.seed import SEED_COUNTS

pytestmark = [pytest.mark.slow]

PASSWORD = "Kill-Pw-9"
STAGE_TIMEOUT_S = 120
# More than one 8 MiB part: the upload becomes a multipart upload whose first part is stored before the kill.
UPLOAD_PADDING_BYTES = 9 * 1024 * 1024

# The stand-in tools block at the stage named in the folder's `stage` file (they see no environment of ours:
# pg_dump and pg_restore get only PG* and locale variables).
PG_DUMP = """#!/bin/sh
REAL={real}
HERE=$(dirname "$0")
if [ "$1" = "--version" ]; then exec "$REAL/pg_dump" "$@"; fi
case "$(cat "$HERE/stage" 2>/dev/null)" in
  dump) echo $$ > "$HERE/reached"; sleep 300; exec "$REAL/pg_dump" "$@" ;;
  upload) "$REAL/pg_dump" "$@"; head -c {padding} /dev/urandom; echo $$ > "$HERE/reached"; sleep 300 ;;
  manifest) "$REAL/pg_dump" "$@"; exec 1>&-; echo $$ > "$HERE/reached"; sleep 300 ;;
  *) exec "$REAL/pg_dump" "$@" ;;
esac
"""
PG_RESTORE = """#!/bin/sh
REAL={real}
HERE=$(dirname "$0")
if [ "$1" = "--list" ]; then exec "$REAL/pg_restore" "$@"; fi
case "$(cat "$HERE/stage" 2>/dev/null)" in
  verify|verify-local|restore|replace)
    echo "$PGDATABASE $*" >> "$HERE/restored-into"
    "$REAL/pg_restore" "$@"; echo $$ > "$HERE/reached"; sleep 300 ;;
  *) exec "$REAL/pg_restore" "$@" ;;
esac
"""


def stand_in_tools(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    real = real_pg_bin()
    for name, text in (("pg_dump", PG_DUMP), ("pg_restore", PG_RESTORE)):
        script = folder / name
        script.write_text(text.format(real=real, padding=UPLOAD_PADDING_BYTES))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    (folder / "psql").symlink_to(real / "psql")
    return folder


class World:
    """One seeded database (its URL carries a password, so every client run writes a password file), one
    storage (a moto bucket or a local folder), one DAGSTER_HOME, one TMPDIR, and one complete backup."""

    def __init__(self, kind: str, admin_url: str, moto_server, root: Path):
        self.kind, self.admin_url, self.root = kind, admin_url, root
        self.dbname = create_database(admin_url, "bpkill")
        self.created = [self.dbname]
        self.tools = stand_in_tools(root / "bin")
        self.tmp = root / "tmp"
        self.tmp.mkdir()
        # Verification's local servers: a folder their user can reach when we are root (root's is 0700).
        self.local_servers = Path(tempfile.mkdtemp(prefix="bp-kill-servers-"))
        self.local_servers.chmod(0o755)
        url = database_url(admin_url, self.dbname).replace("postgres@", f"postgres:{PASSWORD}@")
        self.env = {
            "DATABASE_URL": url,
            "BACKUP_PG_BIN_DIR": str(self.tools),
            "DAGSTER_HOME": str(new_dagster_home(root / "dagster_home")),
            "TMPDIR": str(self.tmp),
            "BACKUP_VERIFY_LOCAL_DIR": str(self.local_servers),
        }
        self.s3 = moto_server.client()
        if kind == "s3":
            self.bucket = f"bp-kill-{secrets.token_hex(4)}"
            self.s3.create_bucket(Bucket=self.bucket)
            self.env.update(
                BACKUP_S3_BUCKET=self.bucket,
                BACKUP_S3_ENDPOINT_URL=moto_server.endpoint,
                BACKUP_S3_REGION="us-east-1",
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",
            )
        else:
            self.folder = root / "backups"
            self.env["BACKUP_LOCAL_DIR"] = str(self.folder)
        self.full_env = {k: v for k, v in os.environ.items() if not OUR_VARS.match(k) and k != "TMPDIR"}
        self.full_env.update(self.env)

    # ----------------------------------------------------------------------------------------------- running

    def set_stage(self, stage: str) -> None:
        (self.tools / "stage").write_text(stage)
        with contextlib.suppress(FileNotFoundError):
            (self.tools / "reached").unlink()

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """`backup-db ARGS` to its end, in this process (call_cli): the kills are kill_at's."""
        self.set_stage("none")
        return call_cli(list(args), self.full_env, self.root)

    def backup(self) -> str:
        result = self.run("backup", "--type", "manual", "--json")
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)["name"]

    def kill_at(self, stage: str, args: list[str], trace, env: dict[str, str] | None = None) -> object:
        """Starts `backup-db ARGS`, waits for the stand-in tool to block at `stage` and for `trace()` to show the
        stage's leftover, then SIGKILLs the run's process group (and the command's). Returns the trace."""
        self.set_stage(stage)
        command = subprocess.Popen(
            [str(CLI), *args],
            env={**self.full_env, **(env or {})},
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        groups = [command.pid]
        try:
            deadline = time.monotonic() + STAGE_TIMEOUT_S
            pid = None
            while pid is None:
                assert command.poll() is None, f"backup-db {' '.join(args)} ended before reaching the {stage} stage"
                assert time.monotonic() < deadline, f"the {stage} stage was not reached"
                with contextlib.suppress(FileNotFoundError, ValueError):
                    pid = int((self.tools / "reached").read_text())
                time.sleep(0.1)
            run_group = os.getpgid(pid)
            assert run_group not in (os.getpgid(0), 0, 1)
            groups.insert(0, run_group)  # the run process leads its own session: pg_dump/pg_restore are in it
            seen = None
            while not seen:
                assert time.monotonic() < deadline, f"nothing of the {stage} stage showed"
                seen = trace()
                time.sleep(0.1)
            return seen
        finally:
            for group in groups:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
            command.wait(timeout=30)
            self.set_stage("none")

    # ------------------------------------------------------------------------------------------------ looking

    def password_files(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir() if p.name.startswith("backup-pgpass-"))

    def objects(self) -> dict[str, int]:
        if self.kind == "s3":
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
            return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}
        return {
            p.relative_to(self.folder).as_posix(): p.stat().st_size
            for p in self.folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        }

    def unfinished(self) -> list[tuple[str, int]]:
        """Open multipart uploads (with the bytes of their parts) or partial files in the local folder."""
        if self.kind == "s3":
            found = []
            for upload in open_multipart_uploads(self.s3, self.bucket):
                parts = self.s3.list_parts(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                found.append((upload["Key"], sum(p["Size"] for p in parts.get("Parts", []))))
            return found
        if not self.folder.exists():
            return []
        return [(p.name, p.stat().st_size) for p in self.folder.rglob(".*.partial-*")]

    def incomplete(self) -> set[str]:
        """Stored dumps without a manifest."""
        keys = self.objects()
        return {k for k in keys if k.endswith(".dump") and k + ".json" not in keys}

    def local_server_folders(self) -> list[str]:
        return sorted(p.name for p in self.local_servers.glob("backup-verify-pg-*"))

    def scratch_databases(self) -> set[str]:
        """This world's scratch databases on the server: those the stand-in pg_restore was pointed at (other
        tests make and drop scratch databases of their own on the same server meanwhile)."""
        try:
            named = named_in((self.tools / "restored-into").read_text())
        except FileNotFoundError:
            return set()
        return named & database_names(self.admin_url)

    def assert_nothing_left(self, scratch: set[str]) -> None:
        assert self.password_files() == []
        assert self.unfinished() == []
        assert self.incomplete() == set()
        assert not scratch & self.scratch_databases()
        assert self.local_server_folders() == []

    def drop(self) -> None:
        drop_databases(self.admin_url, self.created)
        shutil.rmtree(self.local_servers, ignore_errors=True)


@pytest.fixture(scope="module", params=["s3", "local"])
def world(request, pg_admin_url, moto_server, tmp_path_factory):
    world = World(request.param, pg_admin_url, moto_server, tmp_path_factory.mktemp(f"kill-{request.param}"))
    try:
        with clean_environment({}):
            world.earlier = world.backup()
            yield world
    finally:
        world.drop()


BACKUP_STAGES = {
    # stage: what the kill leaves behind, as the test sees it
    "dump": lambda w, before: w.password_files(),
    "upload": lambda w, before: [u for u in w.unfinished() if u[1] > 0],
    "manifest": lambda w, before: w.incomplete(),
    "verify": lambda w, before: w.scratch_databases() - before,
    "verify-local": lambda w, before: w.local_server_folders(),
}
# The verify stage is about a scratch database on the source server: that verification is asked for.
STAGE_ENV = {"verify": {"BACKUP_VERIFY_ON": "source"}}


@pytest.mark.parametrize("stage", list(BACKUP_STAGES))
def test_a_backup_killed_at_any_stage_leaves_nothing_after_the_next_backup(world, stage):
    scratch_before = world.scratch_databases()
    objects_before = world.objects()

    left = world.kill_at(
        stage,
        ["backup", "--type", "manual"],
        lambda: BACKUP_STAGES[stage](world, scratch_before),
        STAGE_ENV.get(stage),
    )

    if stage != "verify-local":  # the local server has no password
        assert world.password_files(), "the kill left the run's password file behind"
    scratch = world.scratch_databases() - scratch_before
    if stage == "verify":
        assert scratch, "the kill left the verification's scratch database behind"
    if stage == "verify-local":
        [folder] = left
        postmaster = int((world.local_servers / folder / "data" / "postmaster.pid").read_text().split()[0])
        assert pid_alive(postmaster), "the kill should have left the local server running"
    if stage == "upload":
        print(f"{world.kind}: killed mid-upload, leaving {left}")
    name = world.backup()  # the next backup sweeps up, then succeeds

    world.assert_nothing_left(scratch)
    if stage == "verify-local":
        # The sweep stopped it (a zombie its new parent has not reaped yet counts as stopped: os.kill would still
        # find it).
        assert not pid_alive(postmaster), "the next backup left the killed run's local server running"
    listed = world.run("list", "--json")
    assert listed.returncode == 0, listed.stderr
    backups = {b["name"]: b for b in json.loads(listed.stdout)}
    assert backups[name]["verified"] and backups[world.earlier]["verified"]
    # What was stored before the kill is as it was; the killed backup is either gone or (killed during
    # verification) a complete backup, not yet verified.
    after = world.objects()
    assert {k: after.get(k) for k in objects_before} == objects_before
    killed = {b for b in backups if b not in (name, world.earlier) and not any(b in k for k in objects_before)}
    if stage.startswith("verify"):
        assert len(killed) == 1 and not backups[killed.pop()]["verified"]
    else:
        assert not killed


@pytest.fixture
def target_name(world):
    name = f"bpkill_target_{secrets.token_hex(3)}"
    world.created.append(name)
    return name


def test_a_restore_into_a_new_database_killed_leaves_no_half_database_and_the_retry_works(world, target_name):
    scratch_before = world.scratch_databases()
    args = ["restore", world.earlier, "--target-db", target_name, "--confirm", "RESTORE"]

    world.kill_at("restore", args, lambda: world.scratch_databases() - scratch_before)

    scratch = world.scratch_databases() - scratch_before
    assert scratch and target_name not in database_names(world.admin_url)  # the user's name appears only complete
    retried = world.run(*args)
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert "already exists" not in retried.stderr
    assert row_counts(database_url(world.admin_url, target_name)) == SEED_COUNTS
    world.assert_nothing_left(scratch)


def test_a_restore_over_a_database_killed_leaves_it_as_it_was_and_the_retry_replaces_it(world, target_name):
    with psycopg.connect(world.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target_name)))
    with psycopg.connect(database_url(world.admin_url, target_name), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1), (2)")
    scratch_before = world.scratch_databases()
    # Another database than the backup's: --from-other-source says that is meant.
    args = [
        "restore",
        world.earlier,
        "--target-db",
        target_name,
        "--replace",
        "--from-other-source",
        "--confirm",
        "RESTORE",
    ]

    world.kill_at("replace", args, lambda: world.scratch_databases() - scratch_before)

    scratch = world.scratch_databases() - scratch_before
    assert scratch
    assert row_counts(database_url(world.admin_url, target_name)) == {"public.kept": 2}
    retried = world.run(*args)
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert row_counts(database_url(world.admin_url, target_name)) == SEED_COUNTS
    world.assert_nothing_left(scratch)
