"""One bad answer never deletes, hangs or mislabels: a listing that leaves out an object, a download cut short,
a lock that never comes free."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from backup_pipeline.core.names import TIMESTAMP_FORMAT
from tests.support.faulty_proxy import FaultyProxy
from tests.support.pipeline import failure_message, load_defs, run_restore
from tests.support.scratch import claimed_in_this_process, still_there

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


# ---------------------------------------------------------------------------------------- downloads cut short


@pytest.fixture
def stored_backup(s3_env, clean_env, moto_server):
    """One verified backup in moto, then storage reached through a fault-injecting proxy.

    Verified on the source server: its scratch database is where "leaves nothing" is checked, and the reads of
    the dump are the table of contents' and the restore's own (a local verification server reads the table of
    contents once more, for its extension check)."""
    from tests.support.pipeline import run_backup

    clean_env.setenv("BACKUP_VERIFY_ON", "source")

    result, backup_id = run_backup(dg.DagsterInstance.get(), "manual")
    assert result.success, failure_message(result)
    client, bucket = moto_server.client(), s3_env["BACKUP_S3_BUCKET"]
    dbname = s3_env["DATABASE_URL"].rsplit("/", 1)[1]
    name = f"{dbname}_{backup_id}"
    # Verified again below: the marker of the first verification goes, so a new one shows a new pass.
    client.delete_object(Bucket=bucket, Key=f"db-backups/{name}.dump.verified.json")
    with FaultyProxy(moto_server.endpoint) as proxy:
        clean_env.setenv("BACKUP_S3_ENDPOINT_URL", proxy.endpoint)
        yield proxy, client, bucket, backup_id, name


def _verify(backup_id: str):
    return (
        load_defs()
        .resolve_job_def("verify_job")
        .execute_in_process(instance=dg.DagsterInstance.get(), partition_key=backup_id, raise_on_error=False)
    )


def _after_the_table_of_contents(proxy) -> None:
    """Lets a restore's first read of the dump (pg_restore --list reads its table of contents) through
    untouched, so the faults added next meet the restore's own download."""
    proxy.add("GetObject", "pass", times=1, path_suffix=".dump")


def _dump_size(client, bucket, name) -> int:
    return client.head_object(Bucket=bucket, Key=f"db-backups/{name}.dump")["ContentLength"]


def test_a_download_cut_short_is_resumed_where_it_stopped_and_verification_passes(stored_backup):
    proxy, client, bucket, backup_id, name = stored_backup
    size = _dump_size(client, bucket, name)
    assert size > 30_000
    _after_the_table_of_contents(proxy)
    # The connection drops twice mid-body, then a proxy sends a shorter body with a matching Content-Length.
    proxy.add("GetObject", "cut_body", keep_bytes=10_000, times=2, path_suffix=".dump")
    proxy.add("GetObject", "short_body", keep_bytes=5_000, times=1, path_suffix=".dump")

    result = _verify(backup_id)

    assert result.success, failure_message(result)
    assert proxy.count("GetObject", "cut_body") == 2 and proxy.count("GetObject", "short_body") == 1
    assert proxy.count("GetObject", ranged=True) == 3  # each resumed from where it stopped, not from the start
    assert client.head_object(Bucket=bucket, Key=f"db-backups/{name}.dump.verified.json")


def test_a_download_that_keeps_failing_says_cut_short_not_corrupted_and_leaves_nothing(stored_backup, pg_admin_url):

    proxy, client, bucket, backup_id, name = stored_backup
    size = _dump_size(client, bucket, name)
    _after_the_table_of_contents(proxy)
    proxy.add("GetObject", "cut_body", keep_bytes=10_000, times=1, path_suffix=".dump")
    proxy.add("GetObject", "cut_body", keep_bytes=0, path_suffix=".dump")  # then every resumption fails

    with claimed_in_this_process() as scratch:
        result = _verify(backup_id)

    message = failure_message(result)
    assert not result.success
    assert f"the download was cut short after 10000 of {size} bytes; the stored object was not checked" in message
    assert "corrupted" not in message and "ResponseStreamingError" not in message.split("the last:")[0]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"db-backups/{name}.dump.verified.json" not in keys
    assert not still_there(pg_admin_url, scratch)


def test_download_to_a_file_resumes_and_a_persistent_cut_leaves_no_file(stored_backup, tmp_path):
    from backup_pipeline.core.catalog import BackupCatalog
    from backup_pipeline.core.config_loading import load_settings
    from backup_pipeline.core.errors import BackupError
    from backup_pipeline.core.names import BackupName
    from backup_pipeline.core.restore import download_to
    from backup_pipeline.core.storage import open_storage

    proxy, client, bucket, backup_id, name = stored_backup
    prefix = name.removesuffix("_" + backup_id)
    catalog = BackupCatalog(open_storage(load_settings().storage), "db-backups", prefix)
    manifest = catalog.manifest(BackupName.parse(name, prefix))
    proxy.add("GetObject", "cut_body", keep_bytes=7_000, times=3, path_suffix=".dump")
    out = tmp_path / "downloads"
    out.mkdir()
    written = download_to(catalog, manifest, str(out / "good.dump"), log=lambda _: None)
    assert written == manifest.size_bytes and (out / "good.dump").stat().st_size == written

    proxy.clear()
    proxy.add("GetObject", "short_body", keep_bytes=3_000, times=1, path_suffix=".dump")
    proxy.add("GetObject", "short_body", keep_bytes=0, path_suffix=".dump")  # no resumption gains a byte
    with pytest.raises(BackupError, match=f"cut short after 3000 of {manifest.size_bytes} bytes") as caught:
        download_to(catalog, manifest, str(out / "bad.dump"), log=lambda _: None)
    assert "corrupted" not in str(caught.value)
    assert sorted(p.name for p in out.iterdir()) == ["good.dump"]  # no partial file left


def test_a_local_file_shorter_than_its_object_says_cut_short(tmp_path):
    from backup_pipeline.core.errors import BackupError
    from backup_pipeline.core.storage.local import LocalStorage

    storage = LocalStorage(tmp_path)
    storage.put_bytes("db-backups/x.dump", b"x" * 1000)
    with storage.open_stream("db-backups/x.dump", 1500) as stream:
        with pytest.raises(BackupError, match="the download was cut short after 1000 of 1500 bytes; the stored object"):
            while stream.read(256):
                pass
    with storage.open_stream("db-backups/x.dump", 1000) as stream:
        assert stream.read() == b"x" * 1000


# ------------------------------------------------------------------------------------------- a lock held long


def test_a_backup_waiting_on_a_lock_fails_within_the_stall_limit_naming_the_lock_and_its_holder(
    s3_env, clean_env, moto_server
):
    import time

    import psycopg

    from tests.support.pipeline import run_backup

    stall_s = 3
    clean_env.setenv("BACKUP_STALL_SECONDS", str(stall_s))
    url = s3_env["DATABASE_URL"]
    client, bucket = moto_server.client(), s3_env["BACKUP_S3_BUCKET"]
    # A migration holds ACCESS EXCLUSIVE on a table across the whole backup: pg_dump and the row counting both
    # need to read it.
    with psycopg.connect(url) as migration:
        migration.execute("LOCK TABLE app.users IN ACCESS EXCLUSIVE MODE")
        holder = migration.info.backend_pid
        started = time.monotonic()
        result, _ = run_backup(dg.DagsterInstance.get(), "manual")
        took = time.monotonic() - started
        # While the lock is still held: no session of the backup is left waiting behind it.
        with psycopg.connect(url, autocommit=True) as look:
            left = look.execute(
                "SELECT pid, application_name, wait_event_type, query FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid NOT IN (%s, pg_backend_pid())",
                (holder,),
            ).fetchall()
        migration.rollback()

    message = failure_message(result)
    print(f"backup behind a held lock failed after {took:.1f} s with BACKUP_STALL_SECONDS={stall_s}: {message}")
    assert not result.success
    assert f"stalled: pg_dump wrote no bytes for {stall_s} s (BACKUP_STALL_SECONDS): it waited for a lock" in message
    assert "a lock on app.users (AccessShareLock) held by" in message and f"pid {holder}" in message, message
    assert "LOCK TABLE app.users IN ACCESS EXCLUSIVE MODE" in message, message
    assert took < stall_s + 15, took  # the limit, plus the run's own start and clean-up
    assert not left, left
    assert not client.list_objects_v2(Bucket=bucket).get("Contents")
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


# ------------------------------------------------------------------------- verification and restore that stall


def test_a_download_that_stops_sending_fails_verification_within_the_limit(stored_backup, clean_env, pg_admin_url):
    import time

    proxy, client, bucket, backup_id, name = stored_backup
    clean_env.setenv("BACKUP_STALL_SECONDS", "3")
    _after_the_table_of_contents(proxy)
    proxy.add("GetObject", "stall_body", keep_bytes=10_000, stall_s=60, path_suffix=".dump")

    started = time.monotonic()
    with claimed_in_this_process() as scratch:
        result = _verify(backup_id)
    took = time.monotonic() - started

    message = failure_message(result)
    print(f"verification behind a stalled download failed after {took:.1f} s with BACKUP_STALL_SECONDS=3")
    assert not result.success
    assert "the download stalled: storage sent no bytes for 3 s (BACKUP_STALL_SECONDS), so the restore was stopped" in (
        message
    ), message
    assert took < 3 + 15, took
    assert f"db-backups/{name}.dump.verified.json" not in {
        o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]
    }
    assert not still_there(pg_admin_url, scratch)


ADVISORY_KEY = 2226


def _pg_restore_waiting_on_a_lock(bin_dir, real_bin, read_first: bool, lock_db: str) -> None:
    """A stand-in pg_restore: the real one answers version probes and lists tables of contents; a restore connects as pg_restore would
    (its --dbname, session name included, but in `lock_db`, since advisory locks belong to a database) and
    waits for an advisory lock another session holds there, before or after reading its whole input."""
    real_bin = real_bin.parent
    for tool in ("pg_dump", "psql"):
        (bin_dir / tool).symlink_to(real_bin / tool)
    lock = f'"{real_bin / "psql"}" -X -q -c "SELECT pg_advisory_lock({ADVISORY_KEY})" "$dbname dbname={lock_db}"'
    script = bin_dir / "pg_restore"
    script.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do\n'
        f'  case "$arg" in --version|--list) exec "{real_bin / "pg_restore"}" "$@";; esac\n'
        '  case "$arg" in --dbname=*) dbname="${arg#--dbname=}";; esac\n'
        "done\n" + ("cat > /dev/null\n" if read_first else "") + f"exec {lock}\n"
    )
    script.chmod(0o755)


@pytest.mark.parametrize("read_first", [False, True], ids=["while-reading", "after-reading"])
def test_a_restore_waiting_on_a_lock_fails_within_the_limit_naming_its_holder(
    read_first, s3_env, clean_env, tmp_path, pg_admin_url
):
    import glob
    import shutil
    import time
    from pathlib import Path

    import psycopg

    from tests.support.pipeline import run_backup

    result, backup_id = run_backup(dg.DagsterInstance.get(), "manual")
    assert result.success, failure_message(result)
    # The client the backup was taken with (the server's major), so the stand-in's version matches it.
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))
    real = Path(installed[-1]) if installed else Path(shutil.which("pg_dump")).resolve()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dbname = s3_env["DATABASE_URL"].rsplit("/", 1)[1]
    _pg_restore_waiting_on_a_lock(bin_dir, real, read_first, dbname)
    clean_env.setenv("BACKUP_PG_BIN_DIR", str(bin_dir))
    clean_env.setenv("BACKUP_STALL_SECONDS", "3")

    with psycopg.connect(s3_env["DATABASE_URL"], autocommit=True) as holder:
        holder.execute(f"SELECT pg_advisory_lock({ADVISORY_KEY})")
        holder_pid = holder.info.backend_pid
        started = time.monotonic()
        with claimed_in_this_process() as scratch:
            restore = run_restore(
                dg.DagsterInstance.get(), backup_name=f"{dbname}_{backup_id}", target_db=f"{dbname}_restored"
            )
        took = time.monotonic() - started
        # Sessions of this test's restore only: other tests on the server may be waiting on locks of their own.
        waiting = holder.execute(
            "SELECT pid, application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = ANY(%s)",
            ([dbname, f"{dbname}_restored", *scratch],),
        ).fetchall()
        holder.execute("SELECT pg_advisory_unlock_all()")

    message = failure_message(restore)
    print(
        f"restore behind a held lock ({'after' if read_first else 'while'} reading) failed after {took:.1f} s: {message}"
    )
    assert not restore.success
    assert f"pid {holder_pid}" in message and f"SELECT pg_advisory_lock({ADVISORY_KEY})" in message, message
    assert "an advisory lock (ExclusiveLock)" in message and "BACKUP_STALL_SECONDS" in message, message
    assert took < 3 + 15, took
    assert not [row for row in waiting if row[1].startswith("backup_pipeline")], waiting
    assert not still_there(pg_admin_url, [f"{dbname}_restored", *scratch])


def test_row_counts_waiting_on_a_lock_after_the_dump_fail_naming_the_lock(make_database):
    """A migration that takes a table's lock once pg_dump has read it: the dump ends, the row counting waits."""
    import subprocess
    import threading
    import time

    import psycopg

    from backup_pipeline.core.dump import RunningDump, _count_rows
    from backup_pipeline.core.postgres import PostgresTarget
    from backup_pipeline.core.streams import StalledError

    url = make_database("CREATE TABLE public.accounts (id int); INSERT INTO public.accounts VALUES (1);")
    target = PostgresTarget.from_url(url)
    with psycopg.connect(url) as migration, target.connect() as counting:
        migration.execute("LOCK TABLE public.accounts IN ACCESS EXCLUSIVE MODE")
        dump = RunningDump(
            stdout=None,
            server_version="",
            pg_dump_version="",
            database_size_bytes=0,
            encoding=None,
            _process=subprocess.Popen(["true"]),  # pg_dump, done
            _stderr=None,
            _target=target,
            _counting_conn=counting,
            _stall_s=2,
        )
        dump._counting = threading.Thread(target=_count_rows, args=(counting, dump._counts), daemon=True)
        dump._counting.start()
        started = time.monotonic()
        with pytest.raises(StalledError) as caught:
            dump.finish()
        took = time.monotonic() - started
        dump._counting.join(5)
        still_waiting = not dump._counting.is_alive()
        migration.rollback()

    message = str(caught.value)
    assert (
        "counting rows in the dump's snapshot stalled for 2 s (BACKUP_STALL_SECONDS): it waited for a lock" in message
    )
    assert "a lock on accounts (AccessShareLock)" in message and "LOCK TABLE public.accounts" in message, message
    assert 2 <= took < 6, took
    assert still_waiting  # the counting statement was cancelled, not left waiting behind the lock
