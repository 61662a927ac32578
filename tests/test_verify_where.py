"""Where verification runs: by default on a throwaway local PostgreSQL 18 made for each verification, never on
the production server; on the source server or BACKUP_VERIFY_DATABASE_URL's only when asked.

Real parts: the machine's PostgreSQL as the source, the bundled PostgreSQL 18 binaries for the local server,
pg_dump/pg_restore, a real Dagster instance, and a tmpfs mounted as a small disk (root only).
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.disk_room import check_room, explain_server_failure
from backup_pipeline.core.errors import ConfigurationError, VerificationError
from backup_pipeline.core.local_verify import LocalServerPlan, sweep_local_servers
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.owners import pid_alive
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.verify import verify_backup
from tests.support.pipeline import failure_message, run_backup
from tests.support.seed import SEED_COUNTS

QUIET = lambda _: None  # noqa: E731


def _major(version: str) -> int:
    return int(version.split(".")[0])


def _source_major(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


@pytest.fixture
def source_role(pg_admin_url, seeded_db):
    yield from _role(pg_admin_url, seeded_db, "CREATEDB")


@pytest.fixture
def source_role_without_createdb(pg_admin_url, seeded_db):
    yield from _role(pg_admin_url, seeded_db, "NOCREATEDB")


def _role(pg_admin_url: str, seeded_db: str, createdb: str):
    """(role, seeded_db's URL as that role): the databases it owns are the ones this test's runs create on the
    source server; they and the role are dropped afterwards."""
    role = f"bp_where_{secrets.token_hex(4)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL(f"CREATE ROLE {{}} LOGIN {createdb}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role)))
    host = pg_admin_url.split("@", 1)[1].rsplit("/", 1)[0]
    try:
        yield role, f"postgresql://{role}@{host}/{seeded_db.rsplit('/', 1)[1]}"
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            for name in _owned_databases(pg_admin_url, role):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _owned_databases(admin_url: str, role: str) -> set[str]:
    with psycopg.connect(admin_url) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = %s", (role,)
        ).fetchall()
    return {row[0] for row in rows}


@contextlib.contextmanager
def _databases_seen(admin_url: str, role: str):
    """Every database `role` owned on the source server at any moment of the block (polled every 50 ms)."""
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(_owned_databases(admin_url, role))
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()
        seen.update(_owned_databases(admin_url, role))


def _verification(result) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key.path[-1] == "restore_verification":
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError("no restore_verification materialization")


def _log_lines(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [record.user_message for record in instance.all_logs(run_id)]


@pytest.fixture
def reachable_dir():
    """A folder the local server's user can reach (as root it runs as postgres, and pytest's tmp_path is 0700)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="bp-where-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _local_env(clean_env, local_env, url: str, folder: Path) -> None:
    clean_env.setenv("DATABASE_URL", url)
    clean_env.setenv("BACKUP_VERIFY_LOCAL_DIR", str(folder))


def test_by_default_a_backup_is_verified_on_a_local_server_and_no_database_is_made_on_the_source(
    local_env, clean_env, source_role, pg_admin_url, reachable_dir
):
    role, url = source_role
    folder = reachable_dir / "verify-here"
    _local_env(clean_env, local_env, url, folder)
    instance = dg.DagsterInstance.get()

    with _databases_seen(pg_admin_url, role) as seen:
        result, _backup_id = run_backup(instance, "manual")

    assert result.success, failure_message(result)
    assert seen == set(), "verification created a database on the source server"
    verified = _verification(result)
    assert verified["rows"] == sum(SEED_COUNTS.values())
    # The scratch database lived on a PostgreSQL 18 of our own, whatever the source runs.
    assert _major(verified["server_version"]) == 18
    assert verified["verified_on"] == "local"
    lines = _log_lines(instance, result.run_id)
    started = [line for line in lines if "verifying on a local PostgreSQL server" in line]
    assert started and str(folder) in started[0]
    assert list(folder.iterdir()) == []  # its folder was removed once the verification ended


def test_a_source_role_without_createdb_verifies_by_default(
    local_env, clean_env, source_role_without_createdb, reachable_dir
):
    _role_name, url = source_role_without_createdb
    _local_env(clean_env, local_env, url, reachable_dir)
    instance = dg.DagsterInstance.get()

    result, backup_id = run_backup(instance, "manual")

    assert result.success, failure_message(result)
    assert _verification(result)["rows"] == sum(SEED_COUNTS.values())
    # On the source server the same role could not have verified it.
    clean_env.setenv("BACKUP_VERIFY_ON", "source")
    from tests.support.pipeline import load_defs

    again = (
        load_defs()
        .resolve_job_def("verify_job")
        .execute_in_process(instance=instance, partition_key=backup_id, raise_on_error=False)
    )
    assert not again.success
    failures = [e.step_failure_data.error.to_string() for e in again.all_events if e.is_step_failure]
    assert any("may not create databases" in text and "CREATEDB" in text for text in failures)


def test_verify_on_source_keeps_verifying_in_a_scratch_database_on_the_source_server(
    local_env, clean_env, source_role, pg_admin_url, tmp_path
):
    role, url = source_role
    _local_env(clean_env, local_env, url, tmp_path / "verify-here")
    clean_env.setenv("BACKUP_VERIFY_ON", "source")
    instance = dg.DagsterInstance.get()

    with _databases_seen(pg_admin_url, role) as seen:
        result, _backup_id = run_backup(instance, "manual")

    assert result.success, failure_message(result)
    assert len(seen) == 1 and next(iter(seen)).startswith("bp_verify_")  # made there, by this run
    assert _owned_databases(pg_admin_url, role) == set()  # and dropped
    assert _verification(result)["server_version"].split(".")[0] == str(_source_major(url))
    assert _verification(result)["verified_on"] == PostgresTarget.from_url(url).server
    assert not (tmp_path / "verify-here").exists()  # no local server was made


@pytest.fixture
def catalog(tmp_path) -> BackupCatalog:
    return BackupCatalog(LocalStorage(tmp_path / "backups"), "db-backups", "app")


def _backup(catalog: BackupCatalog, url: str, backup_format: str = "custom") -> BackupName:
    from backup_pipeline.core.dump_options import DumpOptions

    backup_id = BackupId.new("manual")
    take_backup(PostgresTarget.from_url(url), catalog, backup_id, log=QUIET, options=DumpOptions(format=backup_format))
    return BackupName(prefix="app", id=backup_id)


def _leftover_servers(folder: Path) -> list[str]:
    return [p.name for p in folder.glob("backup-verify-pg-*")] if folder.exists() else []


def test_an_archive_needing_an_extension_the_local_server_lacks_is_refused_naming_it_and_the_choices(
    catalog, seeded_db, reachable_dir
):
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto'").fetchone()
        if not available:
            pytest.skip("the machine's server has no pgcrypto to put in the backup")
        conn.execute("CREATE EXTENSION pgcrypto")
        conn.execute("CREATE TABLE app.secrets AS SELECT encode(digest('x', 'sha256'), 'hex') AS h")
    name = _backup(catalog, seeded_db)
    lines: list[str] = []

    with pytest.raises(VerificationError) as raised:
        verify_backup(catalog, name, LocalServerPlan(parent=reachable_dir), log=lines.append)

    message = str(raised.value)
    assert "extension pgcrypto" in message and "does not have" in message
    for choice in ("BACKUP_VERIFY_ON=source", "BACKUP_VERIFY_DATABASE_URL", "BACKUP_PG_BIN_DIR"):
        assert choice in message
    assert not any("restoring the backup" in line for line in lines)  # refused before pg_restore ran
    assert _leftover_servers(reachable_dir) == []
    assert catalog.storage.head(name.verified_key("db-backups")) is None
    # The choice it names works: verified on the database's own server, which has pgcrypto.
    outcome = verify_backup(catalog, name, PostgresTarget.from_url(seeded_db), log=QUIET)
    assert outcome.tables["app.secrets"] == 1


def test_a_directory_format_archive_needing_a_missing_extension_fails_naming_it(catalog, seeded_db, reachable_dir):
    # Its table of contents comes last in the stored tar, so the restore's own failure is explained instead.
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto'").fetchone():
            pytest.skip("the machine's server has no pgcrypto to put in the backup")
        conn.execute("CREATE EXTENSION pgcrypto")
    name = _backup(catalog, seeded_db, "directory")

    with pytest.raises(VerificationError, match=r"extension pgcrypto.*BACKUP_VERIFY_ON=source"):
        verify_backup(catalog, name, LocalServerPlan(parent=reachable_dir), log=QUIET)
    assert _leftover_servers(reachable_dir) == []


@contextlib.contextmanager
def _small_disk(folder: Path, size: str):
    """A tmpfs of `size` mounted at `folder` (root only: the test is skipped elsewhere)."""
    folder.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_verification_that_would_not_fit_on_the_local_disk_is_refused_before_anything_starts(
    catalog, seeded_db, tmp_path
):
    name = _backup(catalog, seeded_db)
    with _small_disk(tmp_path / "small", "8m") as small:
        with pytest.raises(VerificationError) as raised:
            verify_backup(catalog, name, LocalServerPlan(parent=small), log=QUIET)
        message = str(raised.value)
        assert f"not enough disk to verify {name} on a local server in {small}" in message
        assert "Nothing was started" in message and "BACKUP_VERIFY_LOCAL_DIR" in message
        assert list(small.iterdir()) == []  # no server folder was even made
    assert catalog.storage.head(name.verified_key("db-backups")) is None


def test_an_old_manifest_without_the_database_size_is_sized_from_the_dump_and_says_so(catalog, seeded_db, tmp_path):
    name = _backup(catalog, seeded_db)
    key = name.manifest_key("db-backups")
    manifest = Manifest.from_json(catalog.storage.read_bytes(key))
    manifest.database_size_bytes = 0  # as manifests written before it was recorded
    manifest.size_bytes = 3 * 1024**2  # claims a 3 MiB dump (the check runs before the size is compared)
    with _small_disk(tmp_path / "small", "150m") as small:
        with pytest.raises(VerificationError, match=r"4 times the 3\.0 MB dump is assumed"):
            check_room(small, manifest)


def test_a_local_server_left_by_a_killed_verification_is_stopped_and_removed_by_the_sweep(reachable_dir):
    parent = reachable_dir
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from backup_pipeline.core.postgres.throwaway import ThrowawayServer\n"
        "server = ThrowawayServer(label='verify', parent=Path(sys.argv[1])).start()\n"
        "print(server.folder, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code, str(parent)], stdout=subprocess.PIPE, text=True)
    folder = Path(owner.stdout.readline().strip())
    postmaster = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    assert sweep_local_servers(parent) == []  # its owner lives: left alone
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert pid_alive(postmaster), "the kill should have left the server running"

    assert sweep_local_servers(parent) == [folder.name]

    assert not folder.exists()
    # Stopped: gone, or a zombie its new parent has not reaped yet (os.kill would still find that one).
    assert not pid_alive(postmaster)


def test_disk_full_and_crash_lines_are_explained_with_what_to_do():
    disk = 'pg_restore: error: COPY failed for table "orders": ERROR:  could not extend file "base/16384/16390": No space left on device'
    crash = "pg_restore: error: could not execute query: server closed the connection unexpectedly"
    assert "ran out of disk" in explain_server_failure(disk, "the server db:5432", "Free disk there.")
    assert "stopped or crashed" in explain_server_failure(crash, "the server db:5432", "Free disk there.")
    assert explain_server_failure('ERROR:  relation "x" already exists', "the server", "") is None


@pytest.mark.parametrize(
    "env, where",
    [
        ({}, "local"),
        ({"BACKUP_VERIFY_DATABASE_URL": "postgresql://u@h/db"}, "url"),
        ({"BACKUP_VERIFY_ON": "source"}, "source"),
        ({"BACKUP_VERIFY_ON": " URL ", "BACKUP_VERIFY_DATABASE_URL": "postgresql://u@h/db"}, "url"),
    ],
)
def test_where_verification_runs_follows_the_settings(env, where):
    settings = load_settings({"DATABASE_URL": "postgresql://u@h/app", **env})
    assert settings.database().verify_where == where


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"BACKUP_VERIFY_ON": "elsewhere"}, "BACKUP_VERIFY_ON must be local"),
        ({"BACKUP_VERIFY_ON": "url"}, "BACKUP_VERIFY_DATABASE_URL is not set"),
        (
            {"BACKUP_VERIFY_ON": "local", "BACKUP_VERIFY_DATABASE_URL": "postgresql://u@h/db"},
            "BACKUP_VERIFY_DATABASE_URL is set too",
        ),
    ],
)
def test_contradictory_or_unknown_verification_settings_are_refused(env, expected):
    with pytest.raises(ConfigurationError, match=expected):
        load_settings({"DATABASE_URL": "postgresql://u@h/app", **env})


def _claim_database_size(catalog: BackupCatalog, name: BackupName, size: int) -> None:
    """Rewrites the manifest's recorded database size (the checksum covers the dump, not this field)."""
    key = name.manifest_key("db-backups")
    manifest = Manifest.from_json(catalog.storage.read_bytes(key))
    manifest.database_size_bytes = size
    catalog.storage.put_bytes(key, manifest.to_json())


def test_a_restore_or_verification_that_cannot_fit_on_a_server_of_this_machine_is_refused_before_it_starts(
    catalog, seeded_db, pg_admin_url
):
    from backup_pipeline.core.restore import restore_to_database

    name = _backup(catalog, seeded_db)
    _claim_database_size(catalog, name, 1024**5)  # a petabyte: more than any disk here
    target = f"bp_where_never_{secrets.token_hex(3)}"
    server = PostgresTarget.from_url(pg_admin_url)
    before = _database_names(pg_admin_url)

    with pytest.raises(Exception, match=r"not enough disk on 127\.0\.0\.1:5432 to restore .*Nothing was created"):
        restore_to_database(catalog, name, server, target, log=QUIET)
    with pytest.raises(Exception, match=r"not enough disk on 127\.0\.0\.1:5432"):
        verify_backup(catalog, name, server, log=QUIET)

    made = {d for d in _database_names(pg_admin_url) - before if d == target or d.startswith("bp_")}
    assert not any(d == target for d in made)
    assert catalog.storage.head(name.verified_key("db-backups")) is None


def _database_names(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def test_a_restore_into_a_server_whose_disk_cannot_be_seen_says_how_much_room_it_needs(catalog, seeded_db, source_role):
    from backup_pipeline.core.restore import restore_to_database

    role, url = source_role
    name = _backup(catalog, seeded_db)
    lines: list[str] = []
    target = f"bp_where_room_{secrets.token_hex(3)}"

    restore_to_database(catalog, name, PostgresTarget.from_url(url), target, log=lines.append)

    [said] = [line for line in lines if line.startswith("this restore needs about")]
    assert "the database measured" in said and "its free disk cannot be seen from here" in said
    assert "make sure its disk has that much room" in said


def test_a_server_whose_disk_fills_during_a_verification_is_reported_as_such(catalog, make_database, reachable_dir):
    # A manifest that understates the database (as an estimate can) lets the restore start; the server's disk,
    # a 56 MB tmpfs holding a throwaway PostgreSQL 18 (about 40 MB of it empty), fills under 24 MB of
    # incompressible rows.
    from backup_pipeline.core.postgres.throwaway import ThrowawayServer

    url = make_database(seed_sql=None)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE blobs (id int, body bytea)")
        conn.execute("ALTER TABLE blobs ALTER COLUMN body SET STORAGE EXTERNAL")  # stored as is, uncompressed
        conn.execute(
            "INSERT INTO blobs SELECT i, (SELECT string_agg(decode(md5(random()::text || i || j), 'hex'), '') "
            "FROM generate_series(1, 16384) j) FROM generate_series(1, 96) i"
        )
    name = _backup(catalog, url)
    _claim_database_size(catalog, name, 1)
    with _small_disk(reachable_dir / "small", "56m") as small:
        server = ThrowawayServer(label="full", parent=small).start()
        try:
            with pytest.raises(VerificationError) as raised:
                verify_backup(catalog, name, PostgresTarget.from_url(server.url), log=QUIET)
        finally:
            server.stop()
    message = str(raised.value)
    assert "ran out of disk" in message or "stopped or crashed" in message, message
    assert "Free disk on" in message and "BACKUP_VERIFY_ON=local" in message
    assert catalog.storage.head(name.verified_key("db-backups")) is None
