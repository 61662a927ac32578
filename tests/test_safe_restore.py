"""A restore takes the right backup, can be stopped up to its swap, works after the database is gone, writes only
to servers the deployment lists, and a damaged backup never reaches a pipe whole.

Run as users run it: `backup-db` in a subprocess against a seeded database, moto and a DAGSTER_HOME; restore_job
in process on the same instance for what run config alone reaches. A stand-in pg_restore (BACKUP_PG_BIN_DIR)
that waits before running the real one gives a cancel time to land while pg_restore runs.

What reaches a server (a stop during pg_restore, a canceled run, another source's backup, the disaster path) runs on
the machine's server and on the bundled PostgreSQL 18; the rest on the machine's server only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import server_version
from backup_pipeline.core.postgres.clients import ClientTools
from backup_pipeline.core.postgres.scratch import SCRATCH_DATABASE
from backup_pipeline.core.restore import RestoreStopped, restore_to_database
from backup_pipeline.core.storage import open_storage
from tests.support.cli import CLI, PROJECT_ROOT, CliWorld, module_world, row_counts
from tests.support.hardening import clean_environment, real_pg_bin
from tests.support.pipeline import failure_message, load_defs
from tests.support.seed import SEED_COUNTS

KEPT_SQL = "CREATE TABLE keepme (id int); INSERT INTO keepme VALUES (1), (2), (3);"
KEPT = {"public.keepme": 3}
# The stand-in pg_restore: a restore proper (not --version, not reading the table of contents with --list) says it
# started (its pid in `reached`), waits, then runs the real one. A restore that ignored a stop would still be
# waiting when the test gives up.
SLOW_PG_RESTORE = """#!/bin/sh
REAL={real}
HERE=$(dirname "$0")
case " $* " in *" --version "*|*" --list "*) exec "$REAL/pg_restore" "$@" ;; esac
echo $$ > "$HERE/reached"
sleep 90 </dev/null >/dev/null 2>&1  # not holding the archive pipe, as pg_restore itself would not once ended
exec "$REAL/pg_restore" "$@"
"""
STOP_WAIT_S = 60
WORK_DATABASE = re.compile(r"scratch database (bp_restore_\w+)")


@pytest.fixture(scope="module")
def world(pg_admin_url, moto_server, tmp_path_factory):
    yield from module_world(pg_admin_url, moto_server, tmp_path_factory, "safe_restore")


@pytest.fixture(scope="module")
def world18(pg18_admin_url, moto_server, tmp_path_factory):
    """The same on the bundled PostgreSQL 18 (the machine's own server when it is an 18)."""
    yield from module_world(pg18_admin_url, moto_server, tmp_path_factory, "safe_restore_18")


def _take_backup(world: CliWorld) -> dict:
    result = world.run("backup", "--type", "manual", "--json", timeout=180)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def backup(world):
    return _take_backup(world)


@pytest.fixture(scope="module")
def backup18(world18):
    return _take_backup(world18)


# The servers a case that reaches a server runs on: the fixtures of each one's world and backup.
SERVERS = {"machine": ("world", "backup"), "pg18": ("world18", "backup18")}


@pytest.fixture(params=list(SERVERS))
def server(request) -> str:
    return request.param


@pytest.fixture
def server_world(request, server) -> CliWorld:
    return request.getfixturevalue(SERVERS[server][0])


@pytest.fixture
def server_backup(request, server) -> dict:
    return request.getfixturevalue(SERVERS[server][1])


@pytest.fixture
def slow_tools(tmp_path) -> Callable[[CliWorld], Path]:
    """Makes a BACKUP_PG_BIN_DIR with the stand-in pg_restore around the client a backup of `world`'s server uses
    (the stand-in says it started in `reached`, in that folder)."""

    def make(world: CliWorld) -> Path:
        folder = tmp_path / "slow_bin"
        folder.mkdir()
        real = _client_bin(world)
        script = folder / "pg_restore"
        script.write_text(SLOW_PG_RESTORE.format(real=real))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        for tool in ("pg_dump", "psql", "pg_dumpall"):
            if (real / tool).exists():
                (folder / tool).symlink_to(real / tool)
        return folder

    return make


def _client_bin(world: CliWorld) -> Path:
    """The bin folder of the client the product picks for `world`'s server (of its major when there is one)."""
    with psycopg.connect(world.admin_url) as conn:
        return ClientTools.locate().for_server(*server_version(conn)).bin_dir


def _copy_backup(world, data: dict, new_name: str, **manifest_changes) -> None:
    """Another backup made from the real one's objects, its manifest changed as given."""
    body = world.s3.get_object(Bucket=world.bucket, Key=data["key"] + ".json")["Body"].read()
    manifest = Manifest.from_json(body)
    manifest.name, manifest.key = new_name, f"db-backups/{new_name}.dump"
    manifest.backup_id = "_".join(new_name.rsplit("_", 3)[1:])
    manifest.type = new_name.rsplit("_", 3)[1]
    for field, value in manifest_changes.items():
        setattr(manifest, field, value)
    world.s3.copy_object(Bucket=world.bucket, Key=manifest.key, CopySource={"Bucket": world.bucket, "Key": data["key"]})
    world.s3.put_object(Bucket=world.bucket, Key=manifest.key + ".json", Body=manifest.to_json())


def _delete_backup(world, name: str) -> None:
    keys = [f"db-backups/{name}{suffix}" for suffix in (".dump", ".dump.json", ".dump.verified.json")]
    world.s3.delete_objects(Bucket=world.bucket, Delete={"Objects": [{"Key": k} for k in keys]})


def _assert_work_database_gone(world, said: str) -> None:
    """The work database the restore named (the server is shared: other tests' scratch databases come and go)."""
    named = set(WORK_DATABASE.findall(said))
    assert named and all(SCRATCH_DATABASE.match(name) for name in named), said[-2000:]
    assert not named & world.database_names()


def _wait_for(path: Path, process: subprocess.Popen | None = None, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the command ended first: {process.communicate()}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------ choosing a backup


def test_latest_skips_a_backup_stamped_in_the_future_and_list_shows_it_as_such(world, backup):
    stamp = datetime.now(UTC) + timedelta(days=400, hours=1)  # a server whose clock was a year ahead took it
    future = f"{world.db_name}_manual_{stamp:%Y%m%d_%H%M%S}"
    _copy_backup(world, backup, future, created_at=stamp.isoformat())
    try:
        listed = world.call("list")
        assert listed.returncode == 0, listed.stderr
        [line] = [line for line in listed.stdout.splitlines() if future in line]
        assert "in the future (400 d ahead)" in line and " 0 s" not in line
        as_json, _ = world.call_json("list")
        assert {entry["name"]: entry["in_future"] for entry in as_json} == {future: True, backup["name"]: False}

        chosen, result = world.call_json("info", "latest")
        assert chosen["name"] == backup["name"]
        assert f"`latest` skips {future}" in result.stderr and "in the future" in result.stderr
        shown = world.call("info", future)
        assert "(in the future (400 d ahead))" in shown.stdout
    finally:
        _delete_backup(world, future)


def test_a_backup_of_another_database_or_server_is_refused_without_from_other_source(server_world, server_backup):
    world, backup = server_world, server_backup
    staging = f"{world.db_name}_manual_20200102_030405"
    _copy_backup(world, backup, staging, database="staging_app", source_host="staging-db", source_system_identifier="1")
    target = world.create_database("kept", KEPT_SQL)
    new_db = world.new_database_name("other")
    try:
        # Into a new database: the backup is not of the configured database.
        refused = world.call("restore", staging, "--target-db", new_db, "--confirm", "RESTORE")
        assert refused.returncode == 2, refused.stderr
        source = PostgresTarget.from_url(world.db_url)
        assert f"is a backup of database staging_app on staging-db:{source.port}" in refused.stderr
        assert f"not of the configured database {world.db_name} on {source.server}" in refused.stderr
        assert "--from-other-source" in refused.stderr
        # Over an existing database: neither another database's backup nor this one's over another name.
        for name in (staging, backup["name"]):
            over = world.call("restore", name, "--target-db", target, "--replace", "--confirm", "RESTORE")
            assert over.returncode == 2, over.stderr
            assert f"not of the database it would replace, {target} on {source.server}" in over.stderr
        assert row_counts(world.url_of(target)) == KEPT
        assert new_db not in world.database_names()

        allowed = world.call(
            "restore", staging, "--target-db", new_db, "--from-other-source", "--confirm", "RESTORE", timeout=180
        )
        assert allowed.returncode == 0, allowed.stderr
        assert "a backup of database staging_app" in allowed.stderr and "--from-other-source" in allowed.stderr
        assert row_counts(world.url_of(new_db)) == SEED_COUNTS
    finally:
        _delete_backup(world, staging)


def test_a_backup_of_another_server_with_the_same_database_name_is_refused_naming_both_servers(
    world, backup, pg18_admin_url
):
    """Staging (the machine's server) and production (the bundled 18) both have the database and write the same
    prefix: production's `restore --replace` of staging's backup is refused though the names match."""
    if pg18_admin_url == world.admin_url:
        pytest.skip("needs a second cluster: the machine's server is the PostgreSQL 18")
    production = PostgresTarget.from_url(pg18_admin_url)
    staging = PostgresTarget.from_url(world.admin_url)
    same_name = world.db_name
    production_url = pg18_admin_url.rsplit("/", 1)[0] + "/" + same_name
    with psycopg.connect(pg18_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(same_name)))
    try:
        with psycopg.connect(production_url, autocommit=True) as conn:
            conn.execute(KEPT_SQL)
        args = ["restore", backup["name"], "--target-db", same_name, "--replace", "--confirm", "RESTORE"]
        on_production = {"DATABASE_URL": production_url}

        refused = world.call(*args, env=on_production)
        assert refused.returncode == 2, refused.stderr
        assert (
            f"is a backup of database {same_name} on {staging.server}, not of the database it would replace, "
            f"{same_name} on {production.server}: nothing was changed" in refused.stderr
        ), refused.stderr
        assert "--from-other-source" in refused.stderr
        assert row_counts(production_url) == KEPT

        allowed = world.call(*args, "--from-other-source", env=on_production, timeout=180)
        assert allowed.returncode == 0, allowed.stderr
        assert f"a backup of database {same_name} on {staging.server}" in allowed.stderr
        assert row_counts(production_url) == SEED_COUNTS
        assert row_counts(world.db_url) == SEED_COUNTS  # staging's own database untouched
    finally:
        with psycopg.connect(pg18_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(same_name)))


def test_run_config_refuses_another_source_and_restores_to_a_listed_target_by_key(world, backup):
    staging = f"{world.db_name}_manual_20200102_030406"
    _copy_backup(world, backup, staging, database="staging_app", source_system_identifier="1")
    new_db = world.new_database_name("runcfg")
    # The deployment lists a server (here the same one, under another key) and where its URL comes from.
    env = {
        **world.env,
        "BACKUP_RESTORE_TARGETS": "scratch_server=SCRATCH_SERVER_URL",
        "SCRATCH_SERVER_URL": world.admin_url,
    }
    try:
        with clean_environment(env):
            job = load_defs().resolve_job_def("restore_job")
            instance = dg.DagsterInstance.get()
            config = {"backup_name": staging, "target_db": new_db, "target": "scratch_server", "confirm": "RESTORE"}

            def run(**extra):
                run_config = {"ops": {"restore_backup": {"config": {**config, **extra}}}}
                return job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)

            refused = run()
            assert not refused.success
            assert "is a backup of database staging_app" in failure_message(refused)
            assert "from_other_source: true" in failure_message(refused)
            assert new_db not in world.database_names()
            allowed = run(from_other_source=True)
            assert allowed.success, failure_message(allowed)
        assert row_counts(world.url_of(new_db)) == SEED_COUNTS
    finally:
        _delete_backup(world, staging)


# ------------------------------------------------------------------------------------------ the disaster path


def test_restore_after_drop_database_of_the_database_url_database(server_world):
    world = server_world
    lost = world.create_database("lost", KEPT_SQL)
    env = {"DATABASE_URL": world.url_of(lost), "BACKUP_S3_PREFIX": "lost-backups"}
    taken = world.call("backup", "--type", "manual", "--json", env=env, timeout=180)
    assert taken.returncode == 0, taken.stderr
    with psycopg.connect(world.admin_url, autocommit=True) as conn:  # the accident
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(lost)))

    verified = world.call("verify", "latest", env=env, timeout=180)
    assert verified.returncode == 0, verified.stderr
    restored = world.call("restore", "latest", "--target-db", lost, "--confirm", "RESTORE", env=env, timeout=180)
    assert restored.returncode == 0, restored.stderr
    assert f"database {lost} does not exist" in restored.stderr
    assert "working from the server's maintenance database postgres instead" in restored.stderr
    assert row_counts(world.url_of(lost)) == KEPT


# ------------------------------------------------------------------------------------------ stopping a restore


@pytest.mark.parametrize(
    ("server", "sig", "replace"),
    [("machine", signal.SIGINT, True), ("pg18", signal.SIGINT, True), ("machine", signal.SIGTERM, False)],
    ids=["machine-int", "pg18-int", "machine-term"],
)
def test_ctrl_c_or_sigterm_during_pg_restore_stops_the_restore_and_leaves_the_target(
    server_world, server_backup, slow_tools, sig, replace
):
    world, backup, slow = server_world, server_backup, slow_tools(server_world)
    target = world.create_database("stopme", KEPT_SQL) if replace else world.new_database_name("stopnew")
    args = ["restore", backup["name"], "--target-db", target, "--confirm", "RESTORE"]
    if replace:
        args += ["--replace", "--from-other-source"]
    command = subprocess.Popen(
        [str(CLI), *args],
        env={**world.env, "BACKUP_PG_BIN_DIR": str(slow)},
        cwd=world.work_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(slow / "reached", command)
        command.send_signal(sig)
        out, err = command.communicate(timeout=STOP_WAIT_S)
    finally:
        if command.poll() is None:
            command.kill()
    assert "Ctrl-C (or SIGTERM) stops the restore: before the swap" in err  # said before it starts
    assert "Stopping run:" in err
    assert command.returncode == 130, err
    assert "the restore stopped before the swap" in err
    if replace:
        assert row_counts(world.url_of(target)) == KEPT
    else:
        assert target not in world.database_names()
    _assert_work_database_gone(world, err)
    run_id = err.split("Run ", 1)[1].split()[0]
    with world.instance() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED


def test_a_replace_run_canceled_from_the_instance_never_swaps(server_world, server_backup, slow_tools):
    world, backup, slow = server_world, server_backup, slow_tools(server_world)
    target = world.create_database("cancel", KEPT_SQL)
    started = world.run(
        "restore", backup["name"], "--target-db", target, "--replace", "--from-other-source", "--no-wait",
        "--confirm", "RESTORE", env={"BACKUP_PG_BIN_DIR": str(slow)},
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split("started as run ", 1)[1].split(";")[0]
    _wait_for(slow / "reached")
    with world.instance() as instance:
        # What the UI's Terminate does (dagster-graphql's terminate mutation calls the run coordinator).
        instance.run_coordinator.cancel_run(run_id)
        deadline = time.monotonic() + STOP_WAIT_S
        while not instance.get_run_by_id(run_id).is_finished:
            assert time.monotonic() < deadline, "the canceled run kept going"
            time.sleep(0.5)
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
        logs = " ".join(e.user_message for e in instance.all_logs(run_id))
    assert "stopped before the swap" in logs and f"{target} is as it was" in logs
    assert row_counts(world.url_of(target)) == KEPT
    _assert_work_database_gone(world, logs)


def test_a_stop_asked_right_before_the_swap_is_heeded(world, backup, monkeypatch):
    """The check made right before the swap, in the same step: the poll during pg_restore is turned off here."""
    import backup_pipeline.core.restore.stopping as stopping

    monkeypatch.setattr(stopping, "STOP_POLL_S", 3600)
    target = world.create_database("lastcheck", KEPT_SQL)
    server = PostgresTarget.from_url(world.db_url)
    asked: list[int] = []
    lines: list[str] = []

    def should_stop():  # asked before anything is created, then (no poll here) right before the swap
        asked.append(1)
        return "canceled" if len(asked) > 1 else None

    with (
        clean_environment(world.env),
        pytest.raises(RestoreStopped, match=r"stopped before the swap \(canceled\).* is as it was"),
    ):
        catalog = BackupCatalog(open_storage(load_settings().storage), "db-backups", world.db_name)
        restore_to_database(
            catalog,
            BackupName.parse(backup["name"], world.db_name),
            server,
            target,
            replace=True,
            log=lines.append,
            from_other_source=True,
            should_stop=should_stop,
        )
    assert len(asked) == 2
    assert row_counts(world.url_of(target)) == KEPT
    _assert_work_database_gone(world, "\n".join(lines))


def test_unknown_restore_target_names_the_choices():
    settings = load_settings({"DATABASE_URL": "postgresql://u@h/app", "BACKUP_RESTORE_TARGETS": "dr=DR_URL"})
    assert settings.restore_target_env("dr") == "DR_URL" and settings.restore_target_env("default") == "DATABASE_URL"
    with pytest.raises(ConfigurationError, match="no restore target 'prod2' is configured: use one of default, dr"):
        settings.restore_target_env("prod2")


# ------------------------------------------------------------------------------------------ download to a pipe


def test_download_to_a_pipe_holds_back_the_tail_of_a_damaged_backup(world, backup, tmp_path):
    # Bytes intact, checksum wrong: damage pg_restore cannot see itself, so only the held-back tail stops it.
    damaged = f"{world.db_name}_manual_20200102_030407"
    _copy_backup(world, backup, damaged, sha256="0" * 64)
    pg_restore = str(real_pg_bin() / "pg_restore")
    stored = world.s3.get_object(Bucket=world.bucket, Key=backup["key"])["Body"].read()
    try:
        for name, whole in ((backup["name"], True), (damaged, False)):
            into = world.create_database("piped")
            download = subprocess.Popen(
                [str(CLI), "download", name, "-o", "-"],
                env=world.env,
                cwd=world.work_dir,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            restore = subprocess.run(
                [pg_restore, "--exit-on-error", "--no-owner", f"--dbname={world.url_of(into)}"],
                stdin=download.stdout,
                capture_output=True,
                text=True,
                timeout=120,
            )
            download.stdout.close()
            download_err = download.stderr.read().decode()
            assert download.wait(timeout=60) == (0 if whole else 1), download_err
            if whole:
                assert restore.returncode == 0, restore.stderr
                assert row_counts(world.url_of(into)) == SEED_COUNTS
            else:
                assert "is corrupted" in download_err and "were held back" in download_err
                assert restore.returncode != 0, "pg_restore took a damaged backup for a whole one"

        captured = subprocess.run(
            [str(CLI), "download", damaged, "-o", "-"], env=world.env, cwd=world.work_dir, capture_output=True
        )
        assert captured.returncode == 1
        assert len(captured.stdout) < len(stored) and stored.startswith(captured.stdout)
    finally:
        _delete_backup(world, damaged)


def test_no_secret_or_variable_name_can_reach_restore_job_config():
    from backup_pipeline.defs.jobs import RestoreConfig

    fields = set(RestoreConfig.model_fields)
    assert {"target", "from_other_source"} <= fields
    assert not [field for field in fields if any(word in field for word in ("url", "env", "password", "secret"))]
    assert os.environ.get("BACKUP_RESTORE_TARGET_URL") is None


def test_restore_targets_come_from_the_databases_file_and_its_mistakes_are_reported_by_line(tmp_path):
    good = tmp_path / "backups.yaml"
    good.write_text(
        "databases:\n  - key: app\n    url_env: APP_URL\nrestore_targets:\n  staging:\n    url_env: STAGING_URL\n"
    )
    settings = load_settings({"BACKUP_CONFIG_FILE": str(good)})
    assert settings.restore_targets_by_key() == {"app": "APP_URL", "staging": "STAGING_URL"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "databases:\n  - key: app\n    url_env: APP_URL\nrestore_targets:\n  staging:\n    url: postgresql://x\n"
    )
    with pytest.raises(ConfigurationError) as refused:
        load_settings({"BACKUP_CONFIG_FILE": str(bad)})
    assert "line 6: unknown field 'url' in restore target 'staging' (its only field: url_env)" in str(refused.value)
    assert "restore target 'staging' has no url_env" in str(refused.value)
    assert "postgresql://x" not in str(refused.value)


@pytest.mark.slow
def test_terminate_in_the_ui_stops_a_queued_replace_run_before_its_swap(world, backup, slow_tools):
    """The run the daemon starts (a run worker of `dagster dev`), terminated as the UI's Terminate button does."""
    from dagster_graphql import DagsterGraphQLClient

    from tests.support.processes import free_port, start_process, stop_process

    slow = slow_tools(world)
    target = world.create_database("terminate", KEPT_SQL)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**world.env, "BACKUP_PG_BIN_DIR": str(slow)}
    log = open(world.home / "dagster_dev_terminate.log", "wb")
    dev = start_process(
        [str(Path(CLI).with_name("dagster")), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1",
         "-p", str(port)],
        env=env, cwd=PROJECT_ROOT, stdout=log, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not _daemon_up(url):
            assert time.monotonic() < deadline, "dagster dev's daemon was not healthy within 180 s"
            assert dev.poll() is None, (world.home / "dagster_dev_terminate.log").read_text()[-2000:]
            time.sleep(1)
        started = world.run(
            "restore", backup["name"], "--target-db", target, "--replace", "--from-other-source", "--no-wait",
            "--confirm", "RESTORE", env={"DAGSTER_WEBSERVER_URL": url, "BACKUP_PG_BIN_DIR": str(slow)},
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert "queued through the webserver" in started.stderr, started.stderr
        run_id = started.stdout.split("started as run ", 1)[1].split(";")[0]
        _wait_for(slow / "reached")
        DagsterGraphQLClient("127.0.0.1", port_number=port).terminate_run(run_id)
        with world.instance() as instance:
            deadline = time.monotonic() + STOP_WAIT_S
            while not instance.get_run_by_id(run_id).is_finished:
                assert time.monotonic() < deadline, "the terminated run kept going"
                time.sleep(0.5)
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
            logs = " ".join(e.user_message for e in instance.all_logs(run_id))
    finally:
        stop_process(dev)
        log.close()
    assert "stopped before the swap" in logs and f"{target} is as it was" in logs
    assert row_counts(world.url_of(target)) == KEPT
    _assert_work_database_gone(world, logs)


def _daemon_up(url: str) -> bool:
    import requests

    query = '{ instance { daemonHealth { daemonStatus(daemonType: "QUEUED_RUN_COORDINATOR") { healthy } } } }'
    try:
        answer = requests.post(f"{url}/graphql", json={"query": query}, timeout=5).json()
        return bool(answer["data"]["instance"]["daemonHealth"]["daemonStatus"]["healthy"])
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return False
