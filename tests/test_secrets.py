"""Secrets stay secret through a whole working day: backup, list, info, verify, restore, prune and a failing
backup, all through `backup-db`, with a distinctive database password, S3 secret key, Discord bot token and
encryption key. None of them may appear in any child process's command line (sampled while they run; nor in the
environment of pg_dump and pg_restore, which need none of them), in
what the commands print, in any file under DAGSTER_HOME (event log, run storage, compute logs, SQLite
databases included), in asset metadata, in manifests or object metadata, or in a Discord message.
"""

import hashlib
import json
import secrets
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from backup_pipeline.cli.main import main
from backup_pipeline.core.postgres.catalog import table_row_counts
from tests.support.discord_stub import DiscordStub
from tests.support.hardening import (
    ProcessSampler,
    client_tools_folder,
    create_database,
    database_url,
    drop_databases,
)
from tests.support.seed import SEED_COUNTS

CHANNEL_ID = "998877665544332211"


@pytest.fixture
def secret_values():
    tag = secrets.token_hex(6)
    return {
        "database password": f"dbPASSzebra{tag}",
        "S3 secret key": f"s3SECRETzebra{tag}",
        "Discord bot token": f"MTAx.botTOKENzebra.{tag}",
        "encryption key": hashlib.sha256(f"keyzebra{tag}".encode()).hexdigest(),
    }


@pytest.fixture
def role_url(pg_admin_url, secret_values):
    """A seeded database reached as a role with the distinctive password (trust auth accepts it; the code carries it)."""
    role = f"bp_secret_{secrets.token_hex(4)}"
    dbname = create_database(pg_admin_url, "bpsecret")
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(secret_values["database password"])
            )
        )
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role)))
    host = pg_admin_url.split("@", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql://{role}:{secret_values['database password']}@{host}/{dbname}", dbname
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            owned = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = %s",
                    (role,),
                )
            ]
        drop_databases(pg_admin_url, [dbname, *owned])
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def discord():
    with DiscordStub() as stub:
        yield stub


def _failing_pg_dump(folder: Path) -> Path:
    # Fails after repeating its own arguments in its error, as a confused pg_dump might: the argv ends up in
    # the run's failure, the command's output and the Discord alert, so it had better hold no password.
    return client_tools_folder(
        folder,
        'if [ "$1" = "--version" ]; then exec "$REAL/pg_dump" --version; fi\n'
        'echo "pg_dump: error: refusing to dump with arguments: $*" >&2\nexit 1',
    )


def test_no_secret_leaks_anywhere_during_a_days_work(
    role_url, secret_values, discord, moto_server, s3_bucket, dagster_home, clean_env, tmp_path, capfd, pg_admin_url
):
    url, dbname = role_url
    values = {
        "DATABASE_URL": url,
        "BACKUP_S3_BUCKET": s3_bucket,
        "BACKUP_S3_ENDPOINT_URL": moto_server.endpoint,
        "BACKUP_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID",
        "AWS_SECRET_ACCESS_KEY": secret_values["S3 secret key"],
        "BACKUP_ENCRYPTION_KEY": secret_values["encryption key"],
        "DISCORD_BOT_TOKEN": secret_values["Discord bot token"],
        "DISCORD_BACKUP_CHANNEL_ID": CHANNEL_ID,
        "DISCORD_API_BASE_URL": discord.url,
        "DAGSTER_HOME": str(dagster_home),
    }
    for name, value in values.items():
        clean_env.setenv(name, value)
    restored = f"bp_secret_restored_{secrets.token_hex(3)}"
    printed = []

    def backup_db(*argv) -> tuple[int, dict | None]:
        code = main(list(argv))
        out, err = capfd.readouterr()
        printed.append(out + err)
        return code, (json.loads(out) if "--json" in argv and code == 0 else None)

    with ProcessSampler() as sampler:
        code, backup = backup_db("backup", "--json")
        assert code == 0, printed[-1]
        name = backup["name"]
        assert backup_db("list")[0] == 0 and name in printed[-1]
        assert backup_db("info", name, "--json")[0] == 0 and "AES-256-GCM" in printed[-1]
        assert backup_db("verify", name)[0] == 0, printed[-1]
        assert backup_db("restore", name, "--target-db", restored, "--confirm", "RESTORE")[0] == 0, printed[-1]
        assert backup_db("prune")[0] == 0, printed[-1]
        clean_env.setenv("BACKUP_PG_BIN_DIR", str(_failing_pg_dump(tmp_path / "failing-bin")))
        code, _ = backup_db("backup")
        assert code == 1 and "refusing to dump with arguments" in printed[-1]

    # The flow really ran: its children were sampled, the restore matches, and Discord heard of both backups
    # from backup-db itself (no daemon runs here, so the command announces its runs).
    programs = sampler.programs()
    assert {"pg_dump", "pg_restore", "backup_pipeline.cli.run_process"} <= programs, programs
    assert set(sampler.environments) == {"pg_dump", "pg_restore"}
    with psycopg.connect(database_url(pg_admin_url, restored)) as conn:
        assert table_row_counts(conn) == SEED_COUNTS
    messages = discord.messages
    assert len(messages) == 2 and "Database backup complete" in messages[0] and "refusing to dump" in messages[1]

    client = moto_server.client()
    objects = client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    stored = {o["Key"]: client.get_object(Bucket=s3_bucket, Key=o["Key"])["Body"].read() for o in objects}
    stored_metadata = {k: client.head_object(Bucket=s3_bucket, Key=k)["Metadata"] for k in stored}
    assert any(k.endswith(".dump.json") for k in stored) and any(k.endswith(".verified.json") for k in stored)
    instance = dg.DagsterInstance.get()
    asset_metadata = [
        str(instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization.metadata)
        for key in ("database_dump", "offsite_backup", "restore_verification", "backup_retention")
    ]
    home_files = [p for p in Path(dagster_home).rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in home_files)  # the SQLite run and event log storage
    assert any("compute_logs" in str(p) or p.suffix in (".out", ".err", ".log") for p in home_files)
    assert [p for p in home_files if name.encode() in p.read_bytes()]  # the search does see what runs recorded

    for what, secret in secret_values.items():
        needle = secret.encode()
        assert not sampler.containing(secret), f"{what} in a command line"
        for program, environments in sampler.environments.items():
            assert not [e for e in environments if needle in e], f"{what} in the environment of {program}"
        assert not [p for p in printed if secret in p], f"{what} printed by backup-db"
        assert not [p for p in home_files if needle in p.read_bytes()], f"{what} in a file under DAGSTER_HOME"
        assert not [m for m in asset_metadata if secret in m], f"{what} in asset metadata"
        assert not [k for k, body in stored.items() if k.endswith(".json") and needle in body], f"{what} in a manifest"
        assert not [k for k, body in stored.items() if needle in body], f"{what} in a stored object"
        assert secret not in json.dumps(stored_metadata), f"{what} in object metadata"
        assert not [m for m in messages if secret in m], f"{what} in a Discord message"
        assert not [r for r in discord.requests if secret in json.dumps(r.body)], f"{what} in a Discord request body"
    # The bot token travels where Discord expects it, and only there.
    assert all(r.headers.get("Authorization") == f"Bot {secret_values['Discord bot token']}" for r in discord.requests)
