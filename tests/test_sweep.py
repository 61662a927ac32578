"""The sweep's proofs of liveness with real parts: processes and flocks, PostgreSQL sessions, moto's S3.

A sweep removes what a killed process left, and never what is not ours or still in use."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.databases import create_database, drop_database
from backup_pipeline.core.postgres.scratch import scratch_claims
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.storage.s3 import S3Storage
from backup_pipeline.core.sweep import SweepReport, sweep_password_files, sweep_scratch_databases, sweep_storage

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def holder():
    """Starts a process holding a flock on a file, as a live owner does; stopped after the test."""
    started = []

    def start(path) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "held"
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_password_files_of_dead_owners_go_and_live_or_foreign_ones_stay(tmp_path, holder):
    dead = tmp_path / f"backup-pgpass-{_dead_pid()}-abc123"
    dead.write_text("*:*:*:*:secret\n")
    live = holder(tmp_path / "backup-pgpass-1-live01")  # pid 1 lives; its lock is held too
    held_by_other_namespace = tmp_path / f"backup-pgpass-{_dead_pid()}-held01"
    other = holder(held_by_other_namespace)  # pid in the name is gone, but the lock is held: in use
    foreign = tmp_path / "backup-pgpass-abc123"  # no owner in the name: the old shape, or not ours
    foreign.write_text("x")
    assert sweep_password_files(str(tmp_path)) == [dead.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["backup-pgpass-1-live01", held_by_other_namespace.name, foreign.name]
    )
    assert live.poll() is None and other.poll() is None


def test_partial_files_in_the_local_folder_of_dead_writers_go(tmp_path, holder):
    storage = LocalStorage(tmp_path)
    folder = tmp_path / "db-backups"
    folder.mkdir()
    dead = folder / f".app_manual_20260113_150000.dump.partial-{_dead_pid()}"
    dead.write_bytes(b"x" * 1000)
    writing = folder / f".app_manual_20260113_150001.dump.partial-{_dead_pid()}"
    holder(writing)
    other_db = folder / f".other_manual_20260113_150000.dump.partial-{_dead_pid()}"
    other_db.write_bytes(b"y")
    report = SweepReport()
    sweep_storage(BackupCatalog(storage, "db-backups", "app"), None, report)
    assert report.partial_files == [(str(dead), 1000)]
    assert not dead.exists() and writing.exists() and other_db.exists()


def test_scratch_databases_go_only_when_their_owner_session_is_gone(pg_admin_url):
    server = PostgresTarget.from_url(pg_admin_url)
    owner = server.connect()
    user_db = "bp_restore_user_named_this"
    made = []
    try:
        live_claims = contextlib.ExitStack()
        live = live_claims.enter_context(scratch_claims(server))("verify")
        create_database(owner, live)
        made.append(live)
        with scratch_claims(server) as claim:  # its end, as a killed process's session ends
            dead = claim("restore")
            create_database(owner, dead)
        made += [dead, user_db]
        create_database(owner, user_db)
        time.sleep(0.2)
        removed = sweep_scratch_databases(server)
        # Every test's run sweeps this shared server with the same code: another one may drop `dead` first.
        assert live not in removed and user_db not in removed
        with server.connect() as conn:
            names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        assert live in names and user_db in names and dead not in names
        live_claims.close()
    finally:
        for name in made:
            drop_database(owner, name)
        owner.close()


def test_a_multipart_upload_of_a_running_backup_survives_and_an_abandoned_one_is_aborted(
    moto_server, s3_bucket, seeded_db
):
    client = moto_server.client()
    storage = S3Storage(client, s3_bucket, moto_server.endpoint)
    target = PostgresTarget.from_url(seeded_db)
    prefix = target.dbname
    running, killed = (f"{prefix}_manual_20260113_15000{i}" for i in (1, 2))
    uploads = {}
    for name in (running, killed, "foreign"):
        key = f"db-backups/{name}.dump"
        uploads[name] = client.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
        client.upload_part(
            Bucket=s3_bucket, Key=key, UploadId=uploads[name], PartNumber=1, Body=os.urandom(5 * 1024 * 1024)
        )
    from backup_pipeline.core.backup import writer_lock_name
    from backup_pipeline.core.postgres.locks import advisory_lock

    with advisory_lock(target, writer_lock_name(running)) as obtained:
        assert obtained
        report = SweepReport()
        sweep_storage(BackupCatalog(storage, "db-backups", prefix), target, report)
    left = {u["Key"] for u in client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])}
    assert left == {f"db-backups/{running}.dump", "db-backups/foreign.dump"}
    assert report.multipart_uploads == [(f"db-backups/{killed}.dump", 5 * 1024 * 1024)]
    for name in (running, "foreign"):
        client.abort_multipart_upload(Bucket=s3_bucket, Key=f"db-backups/{name}.dump", UploadId=uploads[name])


def test_a_running_backup_keeps_its_upload_on_a_server_that_ends_idle_sessions(
    pg_admin_url, moto_server, s3_bucket, seeded_db
):
    # Managed servers often set idle_session_timeout: the writer lock's session idles for the whole dump, and
    # a lock that went with it would let a sweep abort the upload of a backup still being written.
    from backup_pipeline.core.backup import writer_lock_name
    from backup_pipeline.core.postgres.locks import advisory_lock

    role = f"bp_idle_{os.urandom(3).hex()}"
    admin = PostgresTarget.from_url(pg_admin_url).connect()
    admin.execute(f"CREATE ROLE {role} LOGIN")
    admin.execute(f"ALTER ROLE {role} SET idle_session_timeout = '1s'")
    admin.execute(f"ALTER ROLE {role} SET idle_in_transaction_session_timeout = '1s'")
    try:
        seeded = PostgresTarget.from_url(seeded_db)
        target = PostgresTarget.from_url(f"postgresql://{role}@{seeded.host}:{seeded.port}/{seeded.dbname}")
        client = moto_server.client()
        storage = S3Storage(client, s3_bucket, moto_server.endpoint)
        running = f"{target.dbname}_manual_20260113_150009"
        key = f"db-backups/{running}.dump"
        upload = client.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
        with advisory_lock(target, writer_lock_name(running)) as obtained:
            assert obtained
            time.sleep(2.5)  # the dump runs; the lock's session says nothing meanwhile
            report = SweepReport()
            sweep_storage(BackupCatalog(storage, "db-backups", target.dbname), seeded, report)
        left = {u["Key"] for u in client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])}
        assert key in left and report.multipart_uploads == []
        client.abort_multipart_upload(Bucket=s3_bucket, Key=key, UploadId=upload)
    finally:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        admin.execute(f"DROP ROLE {role}")
        admin.close()


def test_a_scratch_database_in_use_survives_a_sweep_on_a_server_that_ends_idle_sessions(pg_admin_url):
    # The claim's session says nothing while pg_restore fills the scratch database: on a server that ends
    # idle sessions (managed hosts often do), a lock that went with it would let a sweep drop the live database.
    role = f"bp_idle_{os.urandom(3).hex()}"
    admin_target = PostgresTarget.from_url(pg_admin_url)
    admin = admin_target.connect()
    admin.execute(f"CREATE ROLE {role} LOGIN")
    admin.execute(f"ALTER ROLE {role} SET idle_session_timeout = '1s'")
    admin.execute(f"ALTER ROLE {role} SET idle_in_transaction_session_timeout = '1s'")
    scratch = None
    try:
        server = PostgresTarget(params={**admin_target.params, "user": role})
        with scratch_claims(server) as claim:
            scratch = claim("verify")
            create_database(admin, scratch)
            time.sleep(2.5)  # the restore runs; the claim's session is idle meanwhile
            removed = sweep_scratch_databases(admin_target)
            assert scratch not in removed
            with admin_target.connect() as conn:
                assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (scratch,)).fetchone()
        # Once the claim ends, the database is abandoned and the next sweep takes it.
        assert scratch in sweep_scratch_databases(admin_target)
    finally:
        if scratch:
            drop_database(admin, scratch)
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        admin.execute(f"DROP ROLE {role}")
        admin.close()
