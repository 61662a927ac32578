"""Backups that cannot run fail before doing harm, with a message that names the problem and no password."""

import dagster as dg
import psycopg
import pytest

from tests.support.hardening import client_tools_folder
from tests.support.pipeline import failure_message, run_backup

PASSWORD = "Pw-for-failure-tests-93"


@pytest.fixture
def password_url(seeded_db, pg_admin_url):
    """The seeded database reached through a role with a password (trust auth accepts it; the code still carries it)."""
    role = "bp_fail_role"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    host_and_db = seeded_db.split("@", 1)[1]
    yield f"postgresql://{role}:{PASSWORD}@{host_and_db}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE IF EXISTS {role}")


def _old_pg_dump(folder):
    """A pg_dump that claims to be 9.6 and leaves a mark if anyone makes it dump."""
    return client_tools_folder(
        folder,
        'if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 9.6.24"; exit 0; fi\n'
        f'touch "{folder}/dump-was-attempted"\nexec "$REAL/pg_dump" "$@"',
    )


def _no_backup_objects(storage_dir):
    return not list(storage_dir.rglob("*.dump"))


def test_pg_dump_older_than_server_fails_before_dumping(local_env, clean_env, password_url, tmp_path):
    bin_dir = _old_pg_dump(tmp_path / "old-bin")
    clean_env.setenv("BACKUP_PG_BIN_DIR", str(bin_dir))
    clean_env.setenv("DATABASE_URL", password_url)

    result, _ = run_backup(dg.DagsterInstance.get(), "manual")

    message = failure_message(result)
    assert not result.success
    assert "pg_dump 9.6 is older than the server (PostgreSQL 15" in message
    assert "postgresql-client-15" in message
    assert PASSWORD not in message
    assert not (bin_dir / "dump-was-attempted").exists()
    assert _no_backup_objects(tmp_path / "backups")


def test_unreachable_database_fails_clearly(local_env, clean_env, tmp_path):
    clean_env.setenv("DATABASE_URL", f"postgresql://someone:{PASSWORD}@127.0.0.1:1/app")
    result, _ = run_backup(dg.DagsterInstance.get(), "manual")
    message = failure_message(result)
    assert not result.success
    assert "cannot connect to PostgreSQL at someone@127.0.0.1:1/app" in message
    assert "Check DATABASE_URL" in message
    assert PASSWORD not in message
    assert _no_backup_objects(tmp_path / "backups")


def test_missing_bucket_fails_clearly(s3_env, clean_env, password_url, moto_server):
    clean_env.setenv("BACKUP_S3_BUCKET", "no-such-bucket-here")
    clean_env.setenv("DATABASE_URL", password_url)
    result, _ = run_backup(dg.DagsterInstance.get(), "manual")
    message = failure_message(result)
    assert not result.success
    assert f"the bucket 'no-such-bucket-here' does not exist at {moto_server.endpoint}" in message
    assert PASSWORD not in message
    assert "testing" not in message  # the S3 secret
