"""Connection poolers, with a real PgBouncer in front of the machine's server: a DATABASE_URL that reaches it in
transaction mode is refused before anything is dumped or created, by the library and by `backup-db backup`,
naming the direct connection to use; the same PgBouncer in session mode backs up, verifies and restores.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.restore import restore_to_database
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.verify import verify_backup
from tests.support import pgbouncer
from tests.support.cli import call_cli, row_counts
from tests.support.seed import SEED_COUNTS

QUIET = lambda _line: None  # noqa: E731
pytestmark = pytest.mark.skipif(
    not pgbouncer.installed(), reason="PgBouncer is not installed (apt-get install pgbouncer; .ci/run does)"
)


@pytest.fixture
def bouncer(seeded_db):
    source = PostgresTarget.from_url(seeded_db)
    server = pgbouncer.PgBouncer(source.host, source.port, [source.dbname]).start()
    try:
        yield server, source.dbname
    finally:
        server.stop()


def _catalog(tmp_path, dbname: str) -> BackupCatalog:
    return BackupCatalog(LocalStorage(tmp_path / "backups"), "db-backups", dbname)


def test_a_transaction_mode_pooler_is_refused_before_anything_is_dumped(bouncer, clean_env, tmp_path):
    server, dbname = bouncer
    pooled = PostgresTarget.from_url(server.url(dbname, "transaction"))
    catalog = _catalog(tmp_path, dbname)
    backup_id = BackupId(created_at=datetime(2026, 1, 13, 6, 0, tzinfo=UTC), type="daily")
    with pytest.raises(ConfigurationError) as refused:
        take_backup(pooled, catalog, backup_id, log=QUIET)
    message = str(refused.value)
    assert "DATABASE_URL reaches a connection pooler in transaction mode" in message
    assert "Use the database's direct connection instead" in message and "Nothing was done" in message
    assert not list((tmp_path / "backups").rglob("*.dump*"))

    # The command line refuses before a run is recorded, with the same words.
    env = {
        **os.environ,
        "DATABASE_URL": server.url(dbname, "transaction"),
        "BACKUP_LOCAL_DIR": str(tmp_path / "cli-backups"),
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    (tmp_path / "home").mkdir()
    result = call_cli(["backup", "--type", "manual"], env, tmp_path)
    assert result.returncode == 2, result.stderr  # bad configuration: nothing was started
    assert "connection pooler in transaction mode" in result.stderr, result.stderr
    assert " of backup_job" not in result.stderr  # no run was launched


def test_the_hint_names_the_managed_services_direct_connection():
    hints = {
        "postgresql://u@ep-cool-1234-pooler.eu-central-1.aws.neon.tech/app": "ep-cool-1234.eu-central-1.aws.neon.tech",
        "postgresql://u@aws-0-eu.pooler.supabase.com:6543/postgres": "db.<project>.supabase.co port 5432",
        "postgresql://doadmin@db-1-do-user-1.b.db.ondigitalocean.com:25061/pool": "port, 25060",
    }
    from backup_pipeline.core.postgres.poolers import direct_connection_hint

    for url, expected in hints.items():
        target = PostgresTarget.from_url(url)
        assert expected in direct_connection_hint(target.host, target.port), url


def test_a_session_mode_pooler_backs_up_verifies_and_restores(bouncer, clean_env, tmp_path, pg_admin_url):
    server, dbname = bouncer
    pooled = PostgresTarget.from_url(server.url(dbname, "session"))
    catalog = _catalog(tmp_path, f"{dbname}_session")
    backup_id = BackupId(created_at=datetime(2026, 1, 13, 6, 0, tzinfo=UTC), type="daily")
    assert take_backup(pooled, catalog, backup_id, log=QUIET).manifest.tables == SEED_COUNTS
    name = BackupName(catalog.name_prefix, backup_id)
    assert verify_backup(catalog, name, PostgresTarget.from_url(pg_admin_url), log=QUIET).tables == SEED_COUNTS
    copy = f"{dbname}_via_pool"
    import psycopg

    try:
        restore_to_database(catalog, name, PostgresTarget.from_url(pg_admin_url), copy, log=QUIET)
        assert row_counts(pg_admin_url.rsplit("/", 1)[0] + "/" + copy) == SEED_COUNTS
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
