"""Bad input to `backup-db`: a clear message, a non-zero exit, and nothing changed anywhere.

"Nothing changed" is checked on the database server (its databases), in the bucket (its keys) and in the
Dagster instance (no run recorded): every one of these is refused before a run starts.
"""

from __future__ import annotations

import hashlib

import pytest

from backup_pipeline.cli.main import main
from backup_pipeline.core.manifest import Manifest
from tests.support.cli import database_names, make_world

BACKUP_ID = "manual_20260101_120000"


@pytest.fixture(scope="module")
def world(pg_admin_url, moto_server, tmp_path_factory):
    world = make_world(pg_admin_url, moto_server, tmp_path_factory.mktemp("cli_bad_input"))
    # A stored backup to name (its contents are never restored here: every command below is refused first).
    body = b"PGDMP stand-in dump body"
    name = f"{world.db_name}_{BACKUP_ID}"
    key = f"db-backups/{name}.dump"
    manifest = Manifest(
        name=name,
        backup_id=BACKUP_ID,
        type="manual",
        database=world.db_name,
        created_at="2026-01-01T12:00:00+00:00",
        key=key,
        size_bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        server_version="15",
        pg_dump_version="15",
        tables={"app.users": 3000},
        duration_s=0.1,
        tool_version="test",
    )
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=body)
    world.s3.put_object(Bucket=world.bucket, Key=f"{key}.json", Body=manifest.to_json())
    world.backup_name = name
    yield world
    world.drop_databases()


def _snapshot(world, argv: list[str]):
    """What the command could have changed: the world's database and every database the arguments name (or its
    `_replaced_` copy), the bucket's keys, the runs recorded. The server's other databases belong to other
    tests and clients, which may be creating and dropping theirs meanwhile."""
    named = {world.db_name, *argv}
    replaced = tuple(f"{name[:30]}_replaced_" for name in named)
    databases = {name for name in database_names(world.admin_url) if name in named or name.startswith(replaced)}
    with world.instance() as instance:
        runs = len(instance.get_runs())
    return databases, world.bucket_keys(), runs


def _restore(world, *extra):
    return ["restore", world.backup_name, *extra]


UNREACHABLE = "postgresql://postgres@127.0.0.1:9/app"  # the discard port: nothing listens there

# (id, argv (a function of the world), extra environment, expected exit code, words the message must contain)
BAD_INPUTS = [
    (
        "unknown-backup",
        lambda w: ["info", f"{w.db_name}_manual_20200101_000000"],
        {},
        2,
        ["there is no backup named", "backup-db list"],
    ),
    ("name-with-slash", lambda w: ["info", f"../{w.backup_name}"], {}, 2, ["not a backup name", "'/'"]),
    (
        "name-with-dotdot",
        lambda w: ["restore", f"{w.backup_name}..", "--target-db", "fresh", "--confirm", "RESTORE"],
        {},
        2,
        ["not a backup name", "'..'"],
    ),
    (
        "target-with-quote",
        lambda w: _restore(w, "--target-db", 'new"db', "--confirm", "RESTORE"),
        {},
        2,
        ["no quotes, spaces or semicolons"],
    ),
    (
        "target-with-space-semicolon",
        lambda w: _restore(w, "--target-db", "x; DROP DATABASE postgres", "--confirm", "RESTORE"),
        {},
        2,
        ["no quotes, spaces or semicolons"],
    ),
    (
        "target-too-long",
        lambda w: _restore(w, "--target-db", "a" * 64, "--confirm", "RESTORE"),
        {},
        2,
        ["1 to 63 bytes"],
    ),
    (
        "confirm-wrong",
        lambda w: _restore(w, "--target-db", "fresh", "--confirm", "yes"),
        {},
        2,
        ["--confirm must be exactly RESTORE"],
    ),
    ("confirm-missing", lambda w: _restore(w, "--target-db", "fresh"), {}, 2, ["add --confirm RESTORE"]),
    (
        "target-exists",
        lambda w: _restore(w, "--target-db", w.db_name, "--confirm", "RESTORE"),
        {},
        2,
        ["already exists", "--replace"],
    ),
    (
        "replace-missing-target",
        lambda w: _restore(w, "--target-db", "bpcli_nowhere", "--replace", "--confirm", "RESTORE"),
        {},
        2,
        ["does not exist"],
    ),
    (
        "target-template0",
        lambda w: _restore(w, "--target-db", "template0", "--confirm", "RESTORE"),
        {},
        2,
        ["refusing to restore into 'template0'", "system database"],
    ),
    (
        "target-template1",
        lambda w: _restore(w, "--target-db", "template1", "--replace", "--confirm", "RESTORE"),
        {},
        2,
        ["refusing to restore into 'template1'"],
    ),
    (
        "target-postgres",
        lambda w: _restore(w, "--target-db", "postgres", "--replace", "--confirm", "RESTORE"),
        {},
        2,
        ["refusing to restore into 'postgres'"],
    ),
    (
        "jobs-zero",
        lambda w: _restore(w, "--target-db", "fresh", "--jobs", "0", "--confirm", "RESTORE"),
        {},
        2,
        ["jobs (--jobs) must be from 1 to 64"],
    ),
    ("unknown-type", lambda w: ["backup", "--type", "weekly"], {}, 2, ["invalid choice: 'weekly'", "pre-migration"]),
    ("database-url-missing", lambda w: ["backup"], {"DATABASE_URL": None}, 2, ["DATABASE_URL is not set"]),
    (
        "database-url-malformed",
        lambda w: ["backup"],
        {"DATABASE_URL": "mysql://root@db/app"},
        2,
        ["DATABASE_URL is not a PostgreSQL URL"],
    ),
    (
        "server-unreachable",
        lambda w: ["backup"],
        {"DATABASE_URL": UNREACHABLE, "BACKUP_NAME_PREFIX": None},
        1,
        ["cannot connect to PostgreSQL at postgres@127.0.0.1:9/app"],
    ),
    (
        "restore-server-unreachable",
        lambda w: _restore(w, "--target-db", "fresh", "--target-url", UNREACHABLE, "--confirm", "RESTORE"),
        {},
        1,
        ["cannot connect to PostgreSQL"],
    ),
    ("timeout-zero", lambda w: ["backup", "--timeout", "0"], {}, 2, ["must be more than 0 seconds"]),
    (
        "bucket-missing",
        lambda w: ["backup"],
        {"BACKUP_S3_BUCKET": "bp-cli-no-such-bucket"},
        1,
        ["bucket 'bp-cli-no-such-bucket' does not exist"],
    ),
]


@pytest.mark.parametrize(
    ("argv", "env", "code", "words"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
def test_bad_input_is_refused_and_changes_nothing(world, argv, env, code, words):
    args = argv(world)
    before = _snapshot(world, args)
    # Refusals happen before a run starts, in the command's own process: called in this one.
    result = world.call(*args, env=env)
    assert result.returncode == code, (result.stdout, result.stderr)
    for word in words:
        assert word in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert _snapshot(world, args) == before


def test_name_with_nul_is_refused(world, capsys, clean_env):
    # A NUL cannot travel in a real argv (execve refuses it), so this one calls the entry point directly.
    args = ["info", f"{world.backup_name}\x00.dump"]
    before = _snapshot(world, args)
    assert main(args) == 2
    assert "not a backup name" in capsys.readouterr().err
    assert _snapshot(world, args) == before
