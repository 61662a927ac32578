"""`backup-db status` and `backup-db delete` against real backups in a local folder, a real PostgreSQL and a
real Dagster instance.

Most calls go through the command's own `main` in this process (what it prints and returns is what a user
sees); the runs that must fail or be under way are started as users start them, by `backup-db` subprocesses.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.main import main
from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.verify import verify_backup
from tests.support.cli import CLI, call_cli

QUIET = lambda _message: None  # noqa: E731

DATABASES_FILE = """\
databases:
  - key: fresh
    url_env: FRESH_DATABASE_URL
    name_prefix: fresh
  - key: stale
    url_env: STALE_DATABASE_URL
    name_prefix: stale
    freshness_hours: 1
  - key: failing
    url_env: FAILING_DATABASE_URL
    name_prefix: failing
"""


def verified_backup(database_key: str, backup_id: BackupId) -> BackupName:
    """A backup of the database stored and verified by the library itself (no run): quick, and its timestamp is
    the one given, as a backup taken that long ago would have."""
    ctx = CliContext.load(database_key)
    catalog = ctx.catalog()
    take_backup(ctx.source(), catalog, backup_id, log=QUIET)
    name = BackupName(prefix=catalog.name_prefix, id=backup_id)
    verify_backup(catalog, name, ctx.source(), log=QUIET)
    return name


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))


@pytest.fixture
def role_without_reads(pg_admin_url):
    """A login role that may connect but read no table: its pg_dump fails with 'permission denied'."""
    role = f"bpst_noread_{secrets.token_hex(3)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    yield role
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_status_exit_codes_for_fresh_stale_and_failing_databases(
    make_database, role_without_reads, dagster_home, tmp_path, clean_env, capsys
):
    config_file = tmp_path / "databases.yaml"
    config_file.write_text(DATABASES_FILE)
    failing_url = as_role(make_database(), role_without_reads)
    for name, value in {
        "BACKUP_CONFIG_FILE": str(config_file),
        "FRESH_DATABASE_URL": make_database(),
        "STALE_DATABASE_URL": make_database(),
        "FAILING_DATABASE_URL": failing_url,
        "BACKUP_LOCAL_DIR": str(tmp_path / "backups"),
        "DAGSTER_HOME": str(dagster_home),
    }.items():
        clean_env.setenv(name, value)
    now = datetime.now(UTC)
    fresh = verified_backup("fresh", BackupId.new("daily", now - timedelta(hours=2)))
    stale = verified_backup("stale", BackupId.new("daily", now - timedelta(hours=3)))

    code, out, err = run_main(capsys, "--database", "fresh", "status")
    assert code == 0, err
    assert out.startswith(f"fresh: FRESH: newest verified backup {fresh}")
    assert "2.0 h, within the 26 h window" in out
    assert err.startswith("backup-db status: backups in local folder")

    code, out, err = run_main(capsys, "status", "--database", "stale", "--json")
    assert code == 1, err
    answer = json.loads(out)
    assert answer["fresh"] is False and answer["runs_known"] is True
    [stale_status] = answer["databases"]
    assert (stale_status["key"], stale_status["fresh"], stale_status["freshness_hours"]) == ("stale", False, 1)
    assert stale_status["newest_verified"]["name"] == str(stale)
    assert 2.9 < stale_status["newest_verified"]["age_hours"] < 3.5

    # A backup that fails as its run: `backup-db backup` (its run executed here), whose role may read no table.
    failed = call_cli(["backup", "--database", "failing"], dict(os.environ), tmp_path)
    assert failed.returncode == 1, failed.stderr[-3000:]
    run_id = next(
        line.split()[1] for line in failed.stderr.splitlines() if line.startswith("Run ") and "for backup" in line
    )

    code, out, err = run_main(capsys, "status", "--json")
    assert code == 1, err
    answer = json.loads(out)
    by_key = {db["key"]: db for db in answer["databases"]}
    assert [db["key"] for db in answer["databases"]] == ["fresh", "stale", "failing"]
    assert [by_key[k]["fresh"] for k in ("fresh", "stale", "failing")] == [True, False, False]
    failure = by_key["failing"]["last_failure"]
    assert failure["run_id"] == run_id and failure["kind"] == "backup"
    assert failure["message"].startswith("pg_dump failed")  # the failing step's own message
    assert by_key["failing"]["failed_since_newest_verified"] is True
    assert by_key["failing"]["newest_verified"] is None
    assert by_key["fresh"]["last_failure"] is None and by_key["fresh"]["under_way"] == []

    code, out, _ = run_main(capsys, "status")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("fresh: FRESH") and lines[1].startswith("stale: STALE")
    assert any(line.startswith("failing: STALE: no verified backup") for line in lines)
    assert any(f"last failure (since the newest verified backup): backup run {run_id}" in line for line in lines)
    assert lines[-1] == "1 of 3 database(s) fresh"


def test_delete_refuses_then_removes_one_backup_and_its_partition(
    make_database, dagster_home, tmp_path, clean_env, capsys
):
    backups = tmp_path / "backups"
    for name, value in {
        "DATABASE_URL": make_database(),
        "BACKUP_LOCAL_DIR": str(backups),
        "DAGSTER_HOME": str(dagster_home),
    }.items():
        clean_env.setenv(name, value)
    now = datetime.now(UTC)
    older = verified_backup("default", BackupId.new("manual", now - timedelta(hours=5)))
    newest = verified_backup("default", BackupId.new("manual", now - timedelta(hours=1)))
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("backups", [str(older.id), str(newest.id)])
    folder = backups / "db-backups"

    def files_of(name) -> list[str]:
        return sorted(p.name for p in folder.iterdir() if p.name.startswith(f"{name}."))

    before = {str(older): files_of(older), str(newest): files_of(newest)}
    assert before[str(older)] == [
        f"{older}.dump",
        f"{older}.dump.json",
        f"{older}.dump.roles.json",
        f"{older}.dump.verified.json",
    ]

    code, _, err = run_main(capsys, "delete", str(older))
    assert code == 2 and "add --confirm DELETE" in err
    code, _, err = run_main(capsys, "delete", str(older), "--confirm", "delete")
    assert code == 2 and "'delete'" in err
    code, _, err = run_main(capsys, "delete", str(newest), "--confirm", "DELETE")
    assert code == 2 and "newest verified backup" in err and "--force" in err
    mistyped = str(older)[:-1] + ("1" if str(older)[-1] != "1" else "2")
    code, _, err = run_main(capsys, "delete", mistyped, "--confirm", "DELETE")
    assert code == 2 and f"did you mean {older}" in err
    code, _, err = run_main(capsys, "delete", "latest", "--confirm", "DELETE")
    assert code == 2 and "never `latest`" in err
    assert {str(older): files_of(older), str(newest): files_of(newest)} == before  # nothing went

    code, out, err = run_main(capsys, "delete", str(older), "--confirm", "DELETE", "--json")
    assert code == 0, err
    deleted = json.loads(out)
    assert sorted(key.rsplit("/", 1)[1] for key in deleted["deleted"]) == before[str(older)]
    assert deleted["partition"] == f"Dagster partition {older.id} removed from backups"
    assert deleted["was_newest_verified"] is False
    assert files_of(older) == [] and files_of(newest) == before[str(newest)]
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_dynamic_partitions("backups") == [str(newest.id)]

    code, out, err = run_main(capsys, "delete", str(newest), "--confirm", "DELETE", "--force")
    assert code == 0, err
    assert out.splitlines()[0] == f"Deleted {newest} from local folder {backups.resolve()}:"
    assert {line.strip() for line in out.splitlines()[1:5]} == {f"db-backups/{n}" for n in before[str(newest)]}
    assert files_of(newest) == []

    code, _, err = run_main(capsys, "delete", str(newest), "--confirm", "DELETE", "--force")
    assert code == 2 and f"there is no backup named {newest}" in err


def test_a_backup_in_progress_is_listed_as_verifying_and_cannot_be_deleted(
    make_database, dagster_home, tmp_path, clean_env, capsys
):
    # Big enough that its verification takes a few seconds: long enough to look at it while it runs.
    url = make_database(
        "CREATE TABLE events AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 300000) g;"
    )
    for name, value in {
        "DATABASE_URL": url,
        "BACKUP_LOCAL_DIR": str(tmp_path / "backups"),
        "DAGSTER_HOME": str(dagster_home),
        "BACKUP_VERIFY_ON": "source",
    }.items():
        clean_env.setenv(name, value)
    # The dump waits behind this lock until the refusal below has been seen: however fast the machine, the run
    # is under way then.
    holder = psycopg.connect(url)
    holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    started = subprocess.run(
        [str(CLI), "backup", "--no-wait", "--json"],
        env=dict(os.environ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert started.returncode == 0, started.stderr[-3000:]
    submitted = json.loads(started.stdout)
    name, run_id = submitted["name"], submitted["run_id"]
    assert f"Run {run_id} of backup_job for backup {name}" in started.stderr
    assert f"backup-db follow {run_id}" in started.stderr

    # While its run is under way the backup cannot be deleted, however far it has got.
    try:
        code, _, err = run_main(capsys, "delete", name, "--confirm", "DELETE", "--force")
    finally:
        holder.close()  # the dump goes on
    assert code == 2 and f"backup run {run_id}" in err and "nothing was deleted" in err

    seen = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        code, out, err = run_main(capsys, "list", "--json")
        assert code == 0, err
        listed = {entry["name"]: entry for entry in json.loads(out)}
        if name in listed:
            entry = listed[name]
            seen.append("yes" if entry["verified"] else ("verifying" if entry["verifying"] else "no"))
            if entry["verified"]:
                break
        time.sleep(0.2)
    # Once its manifest is written and until its verification record is, the backup reads `verifying`, never
    # `no` (on a loaded machine a listing may first see it after its verification ended: then only `yes`).
    assert seen and seen[-1] == "yes" and "no" not in seen, seen
    assert len(seen) == 1 or "verifying" in seen, seen

    followed = subprocess.run(
        [str(CLI), "follow", run_id], env=dict(os.environ), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert followed.returncode == 0, followed.stderr[-3000:]
    code, out, err = run_main(capsys, "delete", name, "--confirm", "DELETE", "--force")
    assert code == 0, err


def test_status_of_unreadable_storage_is_not_fresh(moto_server, tmp_path, clean_env, capsys):
    for name, value in {
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/app",
        "BACKUP_S3_BUCKET": f"bp-status-missing-{secrets.token_hex(4)}",
        "BACKUP_S3_ENDPOINT_URL": moto_server.endpoint,
        "BACKUP_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DAGSTER_HOME": str(tmp_path / "no_instance_here"),
    }.items():
        clean_env.setenv(name, value)
    code, out, err = run_main(capsys, "status", "--json")
    assert code == 1, err
    [db] = json.loads(out)["databases"]
    assert db["fresh"] is False and "does not exist" in db["problem"]
    assert not (tmp_path / "no_instance_here").exists()
