"""`backup-db` end to end, run as users run it: backup, list, info, verify, restore, prune, follow.

One backup (module-scoped) serves every test; each verb's run must be recorded in the Dagster instance.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import TIMESTAMP_FORMAT
from tests.support.cli import database_names, module_world, row_counts, schema_dump, status_lines
from tests.support.seed import SEED_COUNTS

SECRET_PASSWORD = "pw-Zq81-never-stored"


@pytest.fixture(scope="module")
def world(pg_admin_url, moto_server, tmp_path_factory):
    yield from module_world(pg_admin_url, moto_server, tmp_path_factory, "cli_verbs")


@pytest.fixture(scope="module")
def backup(world):
    """`backup-db backup --type pre-migration --json`, once: (its JSON, the finished process)."""
    result = world.run("backup", "--type", "pre-migration", "--json", timeout=180)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result


def _run(world, run_id: str) -> dg.DagsterRun:
    with world.instance() as instance:
        run = instance.get_run_by_id(run_id)
    assert run is not None, f"run {run_id} is not recorded in {world.home}"
    return run


def test_backup_is_stored_verified_and_recorded(world, backup):
    data, result = backup
    prefix = world.db_name
    assert data["name"].startswith(f"{prefix}_pre-migration_")
    assert data["key"] == f"db-backups/{data['name']}.dump"
    assert data["verified"] is True and data["type"] == "pre-migration"
    body = world.s3.get_object(Bucket=world.bucket, Key=data["key"])["Body"].read()
    assert data["size_bytes"] == len(body) and data["sha256"] == hashlib.sha256(body).hexdigest()
    assert {data["key"] + ".json", data["key"] + ".verified.json"} <= world.bucket_keys()
    # What the user watched: status changes with elapsed seconds, then progress of each step.
    assert status_lines(result.stderr)[-2:] == ["running", "completed"]
    assert f"stored {data['name']}" in result.stderr and f"verified {data['name']}" in result.stderr
    run = _run(world, data["run_id"])
    assert run.job_name == "backup_job" and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/partition"] == data["name"].removeprefix(f"{prefix}_")
    assert "backup/quiet" not in run.tags


def test_list_shows_complete_backups_without_importing_dagster(world, backup):
    data, _ = backup
    # An upload that never finished (no manifest) is not a backup.
    incomplete = f"db-backups/{world.db_name}_daily_20200101_000000.dump"
    world.s3.put_object(Bucket=world.bucket, Key=incomplete, Body=b"PGDMP partial")
    try:
        table = world.call("list")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == ["Filename", "Type", "Size", "Created", "Age", "Verified"]
        assert any(
            line.startswith(f"{data['name']}.dump") and line.split()[1] == "pre-migration" and line.endswith("yes")
            for line in lines
        )
        assert "daily_20200101" not in table.stdout
        assert lines[-1].startswith("Total: 1 backup,")

        listed, _ = world.call_json("list")
        assert [(b["name"], b["type"], b["size_bytes"], b["verified"]) for b in listed] == [
            (data["name"], "pre-migration", data["size_bytes"], True)
        ]
        assert datetime.fromisoformat(listed[0]["created_at"]).tzinfo is not None
        assert world.call_json("list", "--type", "daily")[0] == []
    finally:
        world.s3.delete_object(Bucket=world.bucket, Key=incomplete)

    # `list` and `info` answer from storage alone: Dagster is never imported.
    probe = (
        "import sys\n"
        "from backup_pipeline.cli.main import main\n"
        f"assert main(['list']) == 0 and main(['info', {data['name']!r}]) == 0\n"
        "heavy = sorted(m for m in sys.modules if m == 'dagster' or m.startswith(('dagster.', 'dagster_')))\n"
        "assert not heavy, heavy\n"
    )
    checked = subprocess.run(
        [sys.executable, "-c", probe], env=world.env, cwd=world.work_dir, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr


def test_info_shows_the_manifest(world, backup):
    data, _ = backup
    shown = world.call("info", f"{data['name']}.dump")
    assert shown.returncode == 0, shown.stderr
    assert f"Backup    {data['name']}" in shown.stdout and data["sha256"] in shown.stdout
    assert "Verified  yes" in shown.stdout
    for table, rows in SEED_COUNTS.items():
        assert any(line.split() == [table, f"{rows:,}"] for line in shown.stdout.splitlines())
    manifest, _ = world.call_json("info", data["name"])
    assert manifest["tables"] == SEED_COUNTS and manifest["verified"] is True
    assert manifest["size_bytes"] == data["size_bytes"] and manifest["database"] == world.db_name


def test_restore_into_new_database_matches_the_source(world, backup):
    data, _ = backup
    target = world.new_database_name("restored")
    # A password in --target-url reaches the run through its process environment, never its run config.
    url = world.admin_url.replace("postgres@", f"postgres:{SECRET_PASSWORD}@", 1)
    assert SECRET_PASSWORD in url
    result = world.call(
        "restore",
        data["name"],
        "--target-db",
        target,
        "--target-url",
        url,
        "--jobs",
        "2",
        "--confirm",
        "RESTORE",
        "--json",
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["tables"] == len(SEED_COUNTS) and outcome["rows"] == sum(SEED_COUNTS.values())

    assert row_counts(world.url_of(target)) == row_counts(world.db_url) == SEED_COUNTS
    assert schema_dump(world.url_of(target)) == schema_dump(world.db_url)

    run = _run(world, outcome["run_id"])
    assert run.job_name == "restore_job" and run.status == dg.DagsterRunStatus.SUCCESS
    config = run.run_config["ops"]["restore_backup"]["config"]
    # The server is named by a key only; its URL and password reached the run's own process in its environment.
    assert config["target_db"] == target and config["target"] == "command_line"
    assert not {"target_url", "target_password_env", "target_url_env"} & set(config)
    assert SECRET_PASSWORD not in json.dumps(run.run_config)
    for path in world.home.rglob("*"):  # event log, run storage, run output
        if path.is_file():
            assert SECRET_PASSWORD.encode() not in path.read_bytes(), f"password found in {path}"


def test_replace_keeps_the_old_database_when_the_restore_fails(world, backup):
    data, _ = backup
    target = world.create_database("replace", "CREATE TABLE keepme (id int); INSERT INTO keepme VALUES (1), (2), (3);")
    # A broken backup: half a dump, with a manifest that matches it (so the checksum passes, pg_restore fails).
    good_key = data["key"]
    half = world.s3.get_object(Bucket=world.bucket, Key=good_key)["Body"].read()[: data["size_bytes"] // 2]
    manifest = Manifest.from_json(world.s3.get_object(Bucket=world.bucket, Key=good_key + ".json")["Body"].read())
    broken_id = "manual_20200101_000000"
    broken = f"{world.db_name}_{broken_id}"
    manifest.name, manifest.backup_id, manifest.type = broken, broken_id, "manual"
    manifest.key = f"db-backups/{broken}.dump"
    manifest.size_bytes, manifest.sha256 = len(half), hashlib.sha256(half).hexdigest()
    world.s3.put_object(Bucket=world.bucket, Key=manifest.key, Body=half)
    world.s3.put_object(Bucket=world.bucket, Key=manifest.key + ".json", Body=manifest.to_json())
    try:
        failed = world.call(
            "restore", broken, "--target-db", target, "--replace", "--from-other-source", "--confirm", "RESTORE",
            timeout=180,
        )  # fmt: skip
        assert failed.returncode == 1, failed.stderr
        assert "pg_restore" in failed.stderr and "failed" in failed.stderr
        assert row_counts(world.url_of(target)) == {"public.keepme": 3}  # untouched
        # and the half-restored copy is gone (other tests' scratch databases may come and go meanwhile)
        assert not world.scratch_databases_left() and not replaced_copies(world, target)
    finally:
        world.s3.delete_objects(
            Bucket=world.bucket, Delete={"Objects": [{"Key": manifest.key}, {"Key": manifest.key + ".json"}]}
        )

    replaced = world.call(
        "restore", data["name"], "--target-db", target, "--replace", "--from-other-source", "--confirm", "RESTORE",
        timeout=180,
    )  # fmt: skip
    assert replaced.returncode == 0, replaced.stderr
    assert row_counts(world.url_of(target)) == SEED_COUNTS
    assert not world.scratch_databases_left() and not replaced_copies(world, target)
    assert target in world.database_names()


def replaced_copies(world, target: str) -> set[str]:
    """The copies of `target` a replace keeps while it swaps (`<target>_replaced_<time>`)."""
    return {name for name in database_names(world.admin_url) if name.startswith(f"{target[:30]}_replaced_")}


def test_verify_restores_the_backup_again(world, backup):
    data, _ = backup
    marker = data["key"] + ".verified.json"
    world.s3.delete_object(Bucket=world.bucket, Key=marker)
    assert world.call_json("list")[0][0]["verified"] is False
    result = world.call("verify", data["name"], timeout=180)
    assert result.returncode == 0, result.stderr
    assert f"Verified {data['name']}: 4 tables and {sum(SEED_COUNTS.values()):,} rows" in result.stdout
    assert marker in world.bucket_keys()
    with world.instance() as instance:
        [run] = instance.get_runs(dg.RunsFilter(job_name="verify_job"))
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/partition"] == data["name"].removeprefix(f"{world.db_name}_")


def test_prune_says_what_it_deletes_and_why(world, backup):
    data, _ = backup
    now = datetime.now(UTC)
    stamp = lambda kind, age: f"{kind}_{(now - age).strftime(TIMESTAMP_FORMAT)}"  # noqa: E731
    # A database of its own (by name prefix), its backups copies of the real one under other names.
    ids = {
        "newest": stamp("manual", timedelta(minutes=1)),
        "young": stamp("manual", timedelta(days=5)),
        "pre_migration": "pre-migration_20200102_000000",
        "old": "daily_20200101_000000",
    }
    for backup_id in ids.values():
        for suffix in (".dump", ".dump.json", ".dump.verified.json"):
            world.s3.copy_object(
                Bucket=world.bucket,
                Key=f"db-backups/pruneapp_{backup_id}{suffix}",
                CopySource={"Bucket": world.bucket, "Key": data["key"] + suffix[5:]},
            )
    stale_upload = "db-backups/pruneapp_daily_20200105_000000.dump"
    world.s3.put_object(Bucket=world.bucket, Key=stale_upload, Body=b"PGDMP partial")
    env = {"BACKUP_NAME_PREFIX": "pruneapp", "BACKUP_KEEP_LAST": "1"}
    keys = world.bucket_keys()

    dry = world.call("prune", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert f"would keep    pruneapp_{ids['newest']}: one of the newest 1 verified backups" in lines
    assert f"would keep    pruneapp_{ids['young']}: younger than 30 days" in lines
    assert f"would keep    pruneapp_{ids['pre_migration']}: pre-migration backups are kept" in lines
    assert f"would delete  pruneapp_{ids['old']}: older than 30 days" in lines
    assert any(line.startswith("would delete  pruneapp_daily_20200105_000000: incomplete upload") for line in lines)
    assert world.bucket_keys() == keys  # a dry run deletes nothing

    # Waiting can stop early (exit 3): the run carries on, and `follow` picks it up.
    timed_out = world.run("prune", "--json", "--timeout", "0.5", env=env)
    assert timed_out.returncode == 3, timed_out.stderr
    assert "keeps going" in timed_out.stderr and timed_out.stdout == ""
    run_id = timed_out.stderr.split("backup-db follow ", 1)[1].split("`", 1)[0]
    followed = world.call("follow", run_id, env=env)
    assert followed.returncode == 0, followed.stderr
    assert status_lines(followed.stderr)[-1] == "completed"
    # `follow` ends as `prune` would have: every decision, then the count.
    assert f"delete        pruneapp_{ids['old']}: older than 30 days" in followed.stdout
    assert "deleted 2 of 5 backups, kept 3" in followed.stdout

    gone = {f"db-backups/pruneapp_{ids['old']}{s}" for s in (".dump", ".dump.json", ".dump.verified.json")}
    assert world.bucket_keys() == keys - gone - {stale_upload}
    with world.instance() as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name="prune_job"))
        [materialization] = instance.fetch_materializations(dg.AssetKey("backup_retention"), limit=1).records
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    metadata = materialization.asset_materialization.metadata
    assert metadata["deleted"].value == 2 and metadata["dry_run"].value is False
