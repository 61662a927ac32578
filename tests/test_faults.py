"""Backups on the worst day: every fault ends in a clear failure (or a success after retrying), no half-written
backup, and the backups taken before it untouched.

Real parts throughout: PostgreSQL, moto's S3 server (behind a loopback proxy that answers 5xx, stalls or cuts
connections on cue, or with authentication switched on), stand-in pg_dump binaries that die or report an old
version, a tmpfs that fills up. One backup taken at the start is the "earlier backup" every test checks.
"""

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupId
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.clients import ClientTools
from backup_pipeline.core.storage import open_storage
from tests.support.discord_stub import DiscordStub
from tests.support.faulty_proxy import FaultyProxy
from tests.support.hardening import (
    bucket_state,
    clean_environment,
    client_tools_folder,
    create_database,
    database_names,
    database_url,
    drop_databases,
    files_under,
    new_dagster_home,
    open_multipart_uploads,
    pg_dump_processes,
    tiny_tmpfs,
)
from tests.support.pipeline import failure_message, load_defs, run_backup, run_restore
from tests.support.processes import free_port, start_process, stop_process, wait_for_http
from tests.support.seed import SEED_COUNTS

PASSWORD = "Fault-Pw-5150"
BOT_TOKEN = "MTAx.fault-bot-token.5150"
_STARTED = datetime.now(UTC)
_seconds_back = itertools.count(1)


def backup_id(backup_type: str = "manual", age: timedelta = timedelta(0)) -> str:
    """A backup id no other run of this module uses (ids have one-second resolution): counted back from the
    module's start, so that time passing between two calls can never make them meet."""
    when = _STARTED - age - timedelta(seconds=next(_seconds_back))
    return str(BackupId.new(backup_type, when))


class Site:
    """One database with one verified backup in one bucket: what every fault must leave as it was."""

    def __init__(self, admin_url, moto_server, root, discord):
        self.admin_url = admin_url
        self.discord = discord
        self.moto = moto_server
        self.client = moto_server.client()
        self.dbname = create_database(admin_url, "bpfault")
        self.bucket = f"bp-faults-{os.urandom(4).hex()}"
        self.client.create_bucket(Bucket=self.bucket)
        self.root = root
        self.env = {
            "DATABASE_URL": database_url(admin_url, self.dbname),
            "BACKUP_S3_BUCKET": self.bucket,
            "BACKUP_S3_ENDPOINT_URL": moto_server.endpoint,
            "BACKUP_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "DAGSTER_HOME": str(new_dagster_home(root / "dagster_home")),
            "DISCORD_BOT_TOKEN": BOT_TOKEN,
            "DISCORD_BACKUP_CHANNEL_ID": "123456789012345678",
            "DISCORD_API_BASE_URL": discord.url,
            # Each failure its own alert here (grouping by cause is tests/test_incidents.py's).
            "BACKUP_ALERT_GROUP_SECONDS": "0",
            # A known UI, so every alert links its run (and so names the run id the tests look for).
            "DAGSTER_WEBSERVER_URL": "http://dagster.example.test:3000",
        }
        self.earlier: dict[str, str] = {}

    def take_earlier_backup(self):
        # Discord is down and then rate-limiting while this backup runs (see the first test).
        self.discord.set_responses([503] * 3 + [(429, 30.0)] * 3)
        self.earlier_run, self.earlier_id = run_backup(dg.DagsterInstance.get(), backup_id=backup_id())
        result = self.earlier_run
        assert result.success, failure_message(result)
        self.earlier = bucket_state(self.client, self.bucket)
        assert len(self.earlier) == 4  # dump, manifest, saved roles, verification marker

    def keys(self) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def assert_earlier_backup_untouched(self):
        state = bucket_state(self.client, self.bucket)
        assert {k: state.get(k) for k in self.earlier} == self.earlier
        dump_key = next(k for k in self.earlier if k.endswith(".dump"))
        manifest = Manifest.from_json(self.client.get_object(Bucket=self.bucket, Key=dump_key + ".json")["Body"].read())
        assert manifest.sha256 == self.earlier[dump_key]
        assert not open_multipart_uploads(self.client, self.bucket)

    def catalog(self) -> BackupCatalog:
        return BackupCatalog(open_storage(load_settings().storage), "db-backups", self.dbname)


@pytest.fixture(scope="module")
def site(pg_admin_url, moto_server, tmp_path_factory):
    with DiscordStub() as discord:
        site = Site(pg_admin_url, moto_server, tmp_path_factory.mktemp("faults"), discord)
        try:
            with clean_environment(site.env):
                site.take_earlier_backup()
                yield site
        finally:
            drop_databases(pg_admin_url, [site.dbname])


@pytest.fixture
def env(site, monkeypatch):
    """The site's environment, changeable for one test."""
    return monkeypatch


def _evaluate_run_sensor(name: str, result):
    """One evaluation of a Discord run-status sensor for a finished run, as the daemon does it."""
    event = result.get_run_failure_event() if not result.success else result.get_run_success_event()
    context = dg.build_run_status_sensor_context(
        sensor_name=name, dagster_event=event, dagster_instance=dg.DagsterInstance.get(), dagster_run=result.dagster_run
    )
    return load_defs().get_sensor_def(name)(context)


def assert_failure_alert(site, result, *expected: str) -> None:
    """The failure sensor posts exactly one message for the run, with its error, and no secret."""
    site.discord.clear()
    _evaluate_run_sensor("discord_on_run_failure", result)
    [message] = site.discord.messages
    assert result.run_id in message, message
    for fragment in expected:
        assert fragment in message, message
    assert PASSWORD not in message and BOT_TOKEN not in message and "testing" not in message


def test_discord_down_or_rate_limiting_leaves_backups_alone(site):
    """The earlier backup ran while Discord answered 503 and then 429 (retry after 30 s): it is stored and
    verified all the same, and the notice about it is given up within seconds, logged, never raised."""
    assert site.earlier_run.success
    assert len(site.earlier) == 4 and any(k.endswith(".verified.json") for k in site.earlier)
    started = time.monotonic()
    _evaluate_run_sensor("discord_on_backup_success", site.earlier_run)  # 503 x3: given up
    _evaluate_run_sensor("discord_on_backup_success", site.earlier_run)  # 429, retry after 30 s: not waited for
    assert time.monotonic() - started < 15
    assert site.discord.messages == []
    assert [r.status for r in site.discord.requests] == [503, 503, 503, 429]
    site.discord.clear()
    _evaluate_run_sensor("discord_on_backup_success", site.earlier_run)  # Discord is back
    [notice] = site.discord.messages
    assert site.earlier_id in notice
    site.discord.clear()
    site.assert_earlier_backup_untouched()


# ------------------------------------------------------------------------------------------------------ storage


@pytest.fixture(scope="module")
def big_database(pg_admin_url):
    """5 MiB of random bytes, 10 MiB as an uncompressed dump: a multipart upload of two parts (8 MiB parts)."""
    name = create_database(pg_admin_url, "bpfaultbig", seed_sql=None)
    try:
        with psycopg.connect(database_url(pg_admin_url, name), autocommit=True) as conn:
            conn.execute("CREATE TABLE blobs (id int PRIMARY KEY, data bytea)")
            conn.execute("ALTER TABLE blobs ALTER data SET STORAGE EXTERNAL")  # keep it incompressible on disk too
            with conn.cursor().copy("COPY blobs (id, data) FROM STDIN") as copy:
                for row in range(5 * 16):
                    copy.write_row((row, os.urandom(64 * 1024)))
        yield name
    finally:
        drop_databases(pg_admin_url, [name])


@pytest.fixture
def proxy(site):
    with FaultyProxy(site.moto.endpoint) as proxy:
        yield proxy


def test_multipart_upload_survives_5xx_a_cut_connection_and_a_stall_then_aborts_when_s3_keeps_failing(
    site, env, big_database, proxy, pg_admin_url
):
    env.setenv("DATABASE_URL", database_url(pg_admin_url, big_database))
    env.setenv("BACKUP_S3_ENDPOINT_URL", proxy.endpoint)
    env.setenv("BACKUP_S3_MAX_ATTEMPTS", "4")
    env.setenv("BACKUP_COMPRESSION", "none")  # random bytes do not compress: spare the CPU
    instance = dg.DagsterInstance.get()
    proxy.add("UploadPart", "status", status=500, times=1)
    proxy.add("UploadPart", "cut", times=1)
    proxy.add("UploadPart", "stall", stall_s=0.5, times=1)

    # Dump and upload only: the upload is what is under test (verification of a stored dump is tested below).
    first_id = backup_id()
    instance.add_dynamic_partitions("backups", [first_id])
    result = (
        load_defs()
        .resolve_job_def("backup_job")
        .execute_in_process(
            instance=instance,
            partition_key=first_id,
            raise_on_error=False,
            asset_selection=[dg.AssetKey("database_dump"), dg.AssetKey("offsite_backup")],
        )
    )

    assert result.success, failure_message(result)
    assert proxy.count("UploadPart", "status 500") == 1
    assert proxy.count("UploadPart", "cut") == 1 and proxy.count("UploadPart", "stalled") == 1
    assert proxy.count("UploadPart", "forwarded") >= 2  # two parts: it really was a multipart upload
    first_key = f"db-backups/{big_database}_{first_id}.dump"
    stored = site.client.get_object(Bucket=site.bucket, Key=first_key)["Body"].read()
    manifest = Manifest.from_json(site.client.get_object(Bucket=site.bucket, Key=first_key + ".json")["Body"].read())
    assert len(stored) > 8 * 1024 * 1024 and hashlib.sha256(stored).hexdigest() == manifest.sha256

    # Now S3 keeps failing every part: the run fails, the multipart upload is aborted, nothing is listed.
    proxy.clear()
    proxy.add("UploadPart", "status", status=503)
    env.setenv("BACKUP_S3_MAX_ATTEMPTS", "2")
    keys_before = site.keys()

    result, failed_id = run_backup(instance, backup_id=backup_id())

    message = failure_message(result)
    assert not result.success
    assert f"cannot upload db-backups/{big_database}_{failed_id}.dump to bucket '{site.bucket}'" in message
    assert proxy.endpoint in message and "SlowDown" in message
    assert proxy.count("UploadPart", "status 503") >= 2  # retried before giving up
    assert proxy.count("AbortMultipartUpload", "forwarded") == 1
    assert_failure_alert(site, result, f"cannot upload db-backups/{big_database}_{failed_id}.dump")
    assert open_multipart_uploads(site.client, site.bucket) == []
    assert site.keys() == keys_before  # no dump and no manifest of the failed backup
    names = [
        str(e.name) for e in BackupCatalog(open_storage(load_settings().storage), "db-backups", big_database).complete()
    ]
    assert names == [f"{big_database}_{first_id}"]
    assert (
        hashlib.sha256(site.client.get_object(Bucket=site.bucket, Key=first_key)["Body"].read()).hexdigest()
        == manifest.sha256
    )
    site.assert_earlier_backup_untouched()


@pytest.fixture(scope="module")
def moto_with_auth():
    """A second moto server that checks credentials (it knows none, so every key is refused, as S3 would)."""
    port = free_port()
    process = start_process(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/moto-api/", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


def _old_pg_dump(tmp_path):
    return client_tools_folder(
        tmp_path / "old-bin",
        'if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 12.22"; exit 0; fi\n'
        'touch "$(dirname "$0")/dump-was-attempted"\nexec "$REAL/pg_dump" "$@"',
    )


def _pg_dump_killed_mid_dump(tmp_path):
    # Passes the first 32 KB of a real dump through, then dies from SIGKILL, as an OOM kill would look.
    return client_tools_folder(
        tmp_path / "killed-bin",
        'if [ "$1" = "--version" ]; then exec "$REAL/pg_dump" --version; fi\n'
        '"$REAL/pg_dump" "$@" | head -c 32768\nkill -KILL $$',
    )


FAULTS = {
    "s3 unreachable": lambda site, env, tmp_path, auth: (
        env.setenv("BACKUP_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}"),
        env.setenv("BACKUP_S3_MAX_ATTEMPTS", "2"),
        ["the endpoint is unreachable", "Check BACKUP_S3_ENDPOINT_URL", f"bucket '{site.bucket}' at http://127.0.0.1:"],
    )[-1],
    "bucket missing": lambda site, env, tmp_path, auth: (
        env.setenv("BACKUP_S3_BUCKET", "bp-no-such-bucket"),
        [f"the bucket 'bp-no-such-bucket' does not exist at {site.moto.endpoint}", "create it"],
    )[-1],
    "bad credentials": lambda site, env, tmp_path, auth: (
        env.setenv("BACKUP_S3_ENDPOINT_URL", auth),
        env.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGKEY0000"),
        [f"bucket '{site.bucket}' at {auth}", "the credentials were refused", "Check AWS_ACCESS_KEY_ID"],
    )[-1],
    "database unreachable": lambda site, env, tmp_path, auth: (
        env.setenv("DATABASE_URL", f"postgresql://backup:{PASSWORD}@127.0.0.1:{free_port()}/{site.dbname}"),
        ["cannot connect to PostgreSQL at backup@127.0.0.1:", "Check DATABASE_URL"],
    )[-1],
    "pg_dump older than the server": lambda site, env, tmp_path, auth: (
        env.setenv("BACKUP_PG_BIN_DIR", str(_old_pg_dump(tmp_path))),
        ["pg_dump 12.22 is older than the server (PostgreSQL 15", "postgresql-client-15"],
    )[-1],
    "pg_dump killed mid-dump": lambda site, env, tmp_path, auth: (
        env.setenv("BACKUP_PG_BIN_DIR", str(_pg_dump_killed_mid_dump(tmp_path))),
        env.setenv(
            "DATABASE_URL", database_url(site.admin_url, site.dbname).replace("postgres@", f"postgres:{PASSWORD}@")
        ),
        ["pg_dump failed: pg_dump was killed by signal 9"],
    )[-1],
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_fails_the_backup_clearly_and_leaves_nothing_behind(fault, site, env, tmp_path, moto_with_auth):
    staging = tmp_path / "tmp"
    staging.mkdir()
    env.setattr(tempfile, "tempdir", str(staging))  # where a PGPASSFILE or anything staged would land
    expected = FAULTS[fault](site, env, tmp_path, moto_with_auth)
    keys_before = site.keys()

    result, failed_id = run_backup(dg.DagsterInstance.get(), backup_id=backup_id())

    message = failure_message(result)
    assert not result.success
    for fragment in expected:
        assert fragment in message, message
    assert PASSWORD not in message and "testing" not in message
    assert "Traceback" not in message
    assert site.keys() == keys_before  # no dump, no manifest: nothing that could be listed or restored
    assert files_under(staging) == []  # the temporary password file and any staging are gone
    assert not (tmp_path / "old-bin" / "dump-was-attempted").exists()  # the old pg_dump never dumped
    assert_failure_alert(site, result, f"{site.dbname}_{failed_id}", expected[0])
    site.assert_earlier_backup_untouched()


# ------------------------------------------------------------------------------------------ damaged backups


def databases_made_by(results) -> set[str]:
    """Scratch and target databases the runs' logs say they created (other tests share the server)."""
    made = set()
    for result in results:
        for event in result.all_events:
            message = event.message or ""
            made |= set(re.findall(r"(?:scratch database|into new database|beside) (\w+)", message))
        for step in result.dagster_run.run_config.get("ops", {}).values():
            made.add(step.get("config", {}).get("target_db", ""))
    return made - {""}


def _copy_backup(site, new_id: str, damage: str | None = None, with_manifest: bool = True) -> str:
    """A copy of the earlier backup under another id, optionally damaged; returns its name."""
    source = next(k for k in site.earlier if k.endswith(".dump"))
    name = f"{site.dbname}_{new_id}"
    key = f"db-backups/{name}.dump"
    body = site.client.get_object(Bucket=site.bucket, Key=source)["Body"].read()
    manifest = json.loads(site.client.get_object(Bucket=site.bucket, Key=source + ".json")["Body"].read())
    if damage == "corrupted":
        middle = len(body) // 2
        body = body[:middle] + bytes([body[middle] ^ 0x55]) + body[middle + 1 :]
    elif damage == "truncated":
        body = body[: len(body) // 2]
    site.client.put_object(Bucket=site.bucket, Key=key, Body=body)
    if with_manifest:
        manifest.update(name=name, backup_id=new_id, key=key)
        site.client.put_object(Bucket=site.bucket, Key=key + ".json", Body=json.dumps(manifest).encode())
    return name


DAMAGES = {
    "corrupted": (dict(damage="corrupted"), "is corrupted: its sha256 is"),
    "truncated": (dict(damage="truncated"), "is damaged: the stored dump is"),
    # A dump without its manifest whose writer is gone (no run holds its lock) is an upload a killed run left:
    # the run's sweep removes it before anything else, so there is nothing by that name to verify or restore.
    "missing manifest": (dict(with_manifest=False), "there is no backup named"),
}


def test_damaged_backups_are_refused_by_verification_and_restore(site, env, pg_admin_url):
    instance = dg.DagsterInstance.get()
    defs = load_defs()
    ids = {damage: backup_id() for damage in DAMAGES}
    names = {damage: _copy_backup(site, ids[damage], **DAMAGES[damage][0]) for damage in DAMAGES}
    instance.add_dynamic_partitions("backups", list(ids.values()))
    swept = f"db-backups/{names['missing manifest']}.dump"
    state_before, runs = bucket_state(site.client, site.bucket), []
    del state_before[swept]

    for damage, (_, expected) in DAMAGES.items():
        verify = defs.resolve_job_def("verify_job").execute_in_process(
            instance=instance, partition_key=ids[damage], raise_on_error=False
        )
        assert not verify.success
        assert expected in failure_message(verify) and names[damage] in failure_message(verify)
        target = f"restored_{damage.replace(' ', '_')}"
        restore = run_restore(instance, defs, backup_name=names[damage], target_db=target)
        assert not restore.success
        assert expected in failure_message(restore), failure_message(restore)
        assert_failure_alert(site, verify, expected)
        assert_failure_alert(site, restore, expected, target)
        runs += [verify, restore]

    # No verification marker was written, no database was left behind, nothing else in storage changed.
    assert bucket_state(site.client, site.bucket) == state_before and swept not in site.keys()
    assert not databases_made_by(runs) & database_names(pg_admin_url)
    listed = {str(e.name) for e in site.catalog().complete()}
    assert names["missing manifest"] not in listed
    site.client.delete_objects(
        Bucket=site.bucket, Delete={"Objects": [{"Key": k} for k in site.keys() if any(n in k for n in names.values())]}
    )
    site.assert_earlier_backup_untouched()


# ------------------------------------------------------------------------------------------------- full disks


def test_full_disks_fail_clearly_and_leave_no_partial_files(site, env, tmp_path, pg_admin_url):
    """Custom-format backups stream and stage nothing; a directory-format (parallel) dump and a parallel restore
    stage in TMPDIR, and a local backup folder can fill up too."""
    small = tmp_path / "small-disk"
    with tiny_tmpfs(small, size="64k"):
        env.setattr(tempfile, "tempdir", str(small))
        env.setenv("BACKUP_DUMP_FORMAT", "directory")
        env.setenv("BACKUP_DUMP_JOBS", "2")
        keys_before = site.keys()
        result, failed_id = run_backup(dg.DagsterInstance.get(), backup_id=backup_id())
        message = failure_message(result)
        assert not result.success
        assert "No space left on device" in message and str(small) in message, message
        assert files_under(small) == []  # the staged dump was removed
        assert site.keys() == keys_before
        assert_failure_alert(site, result, "No space left on device")
        env.delenv("BACKUP_DUMP_FORMAT")
        env.delenv("BACKUP_DUMP_JOBS")

        env.setattr(tempfile, "tempdir", str(small))
        restore = run_restore(
            dg.DagsterInstance.get(),
            backup_name=f"{site.dbname}_{site.earlier_id}",
            target_db="bp_restore_disk_full",
            jobs=2,
        )
        message = failure_message(restore)
        assert not restore.success
        assert f"cannot stage {site.dbname}_{site.earlier_id} for a parallel restore in {small}" in message
        assert "No space left on device" in message and "--jobs 1" in message
        assert_failure_alert(site, restore, "cannot stage", "bp_restore_disk_full")
        assert files_under(small) == []  # the staged part was removed
        assert "bp_restore_disk_full" not in database_names(pg_admin_url)  # the new database was dropped again
        env.setattr(tempfile, "tempdir", None)

        # A backup into a local folder on a disk that fills up.
        env.delenv("BACKUP_S3_BUCKET")
        env.setenv("BACKUP_LOCAL_DIR", str(small / "backups"))
        result, failed_id = run_backup(dg.DagsterInstance.get(), backup_id=backup_id())
        message = failure_message(result)
        assert not result.success
        assert f"could not write {small}/backups/db-backups/{site.dbname}_{failed_id}.dump" in message
        assert "No space left on device" in message
        assert files_under(small / "backups") in ([], ["db-backups"])  # no partial dump, no manifest
        assert_failure_alert(site, result, "could not write")
    site.assert_earlier_backup_untouched()


# -------------------------------------------------------------------------------------- one backup per name


def test_two_runs_writing_the_same_backup_name_never_both_dump(site, env, tmp_path):
    """Two runs for one backup id at once (a relaunch, two `backup-db backup` in the same second): one dumps."""
    slow = client_tools_folder(
        tmp_path / "slow-bin",
        'if [ "$1" = "--version" ]; then exec "$REAL/pg_dump" --version; fi\nsleep 1\nexec "$REAL/pg_dump" "$@"',
    )
    env.setenv("BACKUP_PG_BIN_DIR", str(slow))
    settings = load_settings()
    target = PostgresTarget.from_url(os.environ["DATABASE_URL"])
    same_id = BackupId.parse(backup_id())
    outcomes, most_dumps, done = [], [0], threading.Event()

    def watch():
        while not done.is_set():
            most_dumps[0] = max(most_dumps[0], len(pg_dump_processes(site.dbname)))
            time.sleep(0.02)

    def backup():
        catalog = BackupCatalog(open_storage(settings.storage), "db-backups", site.dbname)
        try:
            outcomes.append(take_backup(target, catalog, same_id, ClientTools.locate(), log=lambda _: None))
        except BackupError as error:
            outcomes.append(error)

    watcher = threading.Thread(target=watch)
    runs = [threading.Thread(target=backup) for _ in range(2)]
    watcher.start()
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    done.set()
    watcher.join()

    [stored] = [o for o in outcomes if not isinstance(o, BackupError)]
    [refused] = [str(o) for o in outcomes if isinstance(o, BackupError)]
    assert f"another run is writing {site.dbname}_{same_id} right now" in refused
    assert most_dumps[0] == 1
    key = stored.manifest.key
    body = site.client.get_object(Bucket=site.bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == stored.manifest.sha256 and stored.manifest.tables == SEED_COUNTS

    # Once it is stored, another run for the same id is refused without dumping: backups are never overwritten.
    catalog = BackupCatalog(open_storage(settings.storage), "db-backups", site.dbname)
    with pytest.raises(BackupError, match="already exists in bucket .*: a backup is never overwritten"):
        take_backup(target, catalog, same_id, ClientTools.locate(), log=lambda _: None)
    assert hashlib.sha256(site.client.get_object(Bucket=site.bucket, Key=key)["Body"].read()).digest() == (
        hashlib.sha256(body).digest()
    )
    site.client.delete_objects(Bucket=site.bucket, Delete={"Objects": [{"Key": key}, {"Key": key + ".json"}]})
    site.assert_earlier_backup_untouched()


# ---------------------------------------------------------------------------------------------------- clock skew


def test_clock_skew_never_costs_a_backup(site, env):
    """Backups stamped in the future (taken where the clock ran ahead) are never deleted; a clock far ahead where
    retention runs, which makes most backups look expired, makes it refuse instead of deleting them."""
    env.setenv("BACKUP_KEEP_LAST", "1")
    future = [_copy_backup(site, backup_id(age=-timedelta(days=d))) for d in (2, 400)]
    old = [_copy_backup(site, backup_id(age=timedelta(days=d))) for d in (40, 41, 42, 43)]
    state_before = bucket_state(site.client, site.bucket)
    prune = load_defs().resolve_job_def("prune_job")

    refused = prune.execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False)

    assert not refused.success
    assert "retention refused to run" in failure_message(refused)
    assert "would delete 4 of 7 backups, more than half" in failure_message(refused)
    assert_failure_alert(site, refused, "Retention refused to prune", "would delete 4 of 7 backups")
    assert bucket_state(site.client, site.bucket) == state_before

    allowed = prune.execute_in_process(
        instance=dg.DagsterInstance.get(),
        raise_on_error=False,
        run_config={"ops": {"backup_retention": {"config": {"allow_large_prune": True}}}},
    )
    assert allowed.success, failure_message(allowed)
    listed = {str(e.name) for e in site.catalog().complete()}
    assert set(future) <= listed and not set(old) & listed
    metadata = allowed.get_asset_materialization_events()[0].step_materialization_data.materialization.metadata
    assert metadata["decisions"].value.count("timestamp is in the future") == 2
    site.client.delete_objects(
        Bucket=site.bucket, Delete={"Objects": [{"Key": k} for k in site.keys() if any(n in k for n in future)]}
    )
    site.assert_earlier_backup_untouched()
