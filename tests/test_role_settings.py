"""The settings DBAs put on a role never fail this tool's own sessions: a backup (its row counting), a
verification and a restore (new and --replace, whose last steps run on a connection that idled while pg_restore
worked) all succeed as a role with tiny timeouts; and a role that may not create databases is told the grant
it lacks and the setting that avoids it, never a bare InsufficientPrivilege.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.restore import restore_to_database
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.verify import verify_backup
from tests.support.cli import row_counts
from tests.support.postgres_server import server_major

QUIET = lambda _line: None  # noqa: E731
# Enough rows that counting them and restoring them take longer than the role's timeouts below.
# (500,000 narrow rows: about 25 ms to count and 0.3 s to restore here, a 1 MB dump.)
ROWS = 500_000
SEED = f"""
CREATE TABLE big (id int PRIMARY KEY);
INSERT INTO big SELECT generate_series(1, {ROWS});
CREATE TABLE small (id int);
INSERT INTO small VALUES (1), (2);
"""
ROLE_TIMEOUTS = {
    "statement_timeout": "5ms",
    "lock_timeout": "5ms",
    "idle_in_transaction_session_timeout": "100ms",
    "idle_session_timeout": "100ms",
}


def _url(admin_url: str, dbname: str, user: str | None = None) -> str:
    base = admin_url.rsplit("/", 1)[0] + "/" + dbname
    return base.replace("postgres@", f"{user}@", 1) if user else base


@pytest.fixture(params=["machine", "pg18"])
def admin_url(request):
    """The machine's server, then the bundled PostgreSQL 18."""
    return request.getfixturevalue("pg_admin_url" if request.param == "machine" else "pg18_admin_url")


@pytest.fixture
def role_database(admin_url):
    """A login role (CREATEDB or not) owning a seeded database; both dropped afterwards, with what it created."""
    made: list[tuple[str, str]] = []

    def make(createdb: bool, timeouts: dict[str, str]) -> tuple[str, str]:
        role, dbname = f"bp_role_{secrets.token_hex(4)}", f"bprole_{secrets.token_hex(4)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN {}").format(
                    sql.Identifier(role), sql.SQL("CREATEDB" if createdb else "NOCREATEDB")
                )
            )
            made.append((role, dbname))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(role)))
        with psycopg.connect(_url(admin_url, dbname, role), autocommit=True) as conn:
            conn.execute(SEED)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for setting, value in timeouts.items():
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        sql.Identifier(role), sql.Identifier(setting), sql.Literal(value)
                    )
                )
        return role, dbname

    yield make
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for role, dbname in made:
            owned = conn.execute(
                "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = %s)", (role,)
            ).fetchall()
            for (name,) in {(dbname,), *owned}:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _backup(url: str, tmp_path) -> tuple[BackupCatalog, BackupName, dict]:
    target = PostgresTarget.from_url(url)
    catalog = BackupCatalog(LocalStorage(tmp_path / "backups"), "db-backups", target.dbname)
    backup_id = BackupId(created_at=datetime(2026, 1, 13, 6, 0, tzinfo=UTC), type="daily")
    manifest = take_backup(target, catalog, backup_id, log=QUIET).manifest
    return catalog, BackupName(catalog.name_prefix, backup_id), manifest.tables


def test_a_roles_idle_session_timeout_cannot_end_a_session_before_its_settings_run(role_database, admin_url):
    """A role whose idle sessions end after a millisecond: the tool's session is switched off from its login, not
    by a statement that a loaded machine may send too late (the server would already have closed the session)."""
    role, dbname = role_database(createdb=False, timeouts={"idle_session_timeout": "1ms"})
    target = PostgresTarget.from_url(_url(admin_url, dbname, role))
    for _ in range(5):
        with target.connect() as conn:
            time.sleep(0.05)  # idle far longer than the role allows
            assert conn.execute("SHOW idle_session_timeout").fetchone()[0] == "0"


def test_a_roles_timeouts_never_fail_backup_verification_or_restore(role_database, admin_url, clean_env, tmp_path):
    timeouts = dict(ROLE_TIMEOUTS)
    if server_major(admin_url) >= 17:
        timeouts["transaction_timeout"] = "100ms"
    role, dbname = role_database(createdb=True, timeouts=timeouts)
    url = _url(admin_url, dbname, role)
    # The role's settings are in force for its sessions: a plain session of it cannot even count the rows.
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute("SELECT count(*) FROM big").fetchone()
    # The tool's own sessions switch them off (and read text as UTF8).
    with PostgresTarget.from_url(url).connect() as conn:
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in timeouts}
        assert shown == dict.fromkeys(timeouts, "0")
        assert conn.execute("SHOW client_encoding").fetchone()[0] == "UTF8"

    catalog, name, tables = _backup(url, tmp_path)
    assert tables == {"public.big": ROWS, "public.small": 2}

    server = PostgresTarget.from_url(_url(admin_url, "postgres", role))
    assert verify_backup(catalog, name, server, log=QUIET).tables == tables

    copy = f"{dbname}_copy"
    assert restore_to_database(catalog, name, server, copy, log=QUIET).tables == tables
    with psycopg.connect(_url(admin_url, copy), autocommit=True) as conn:
        conn.execute("DELETE FROM small")
    # --replace: its swap runs on the connection that idled through pg_restore.
    replaced = restore_to_database(catalog, name, server, copy, replace=True, log=QUIET, from_other_source=True)
    assert replaced.tables == tables
    assert row_counts(_url(admin_url, copy)) == tables


def test_a_role_without_createdb_is_told_the_grant_and_the_setting_that_avoid_it(
    role_database, admin_url, clean_env, tmp_path
):
    role, dbname = role_database(createdb=False, timeouts={})
    catalog, name, tables = _backup(_url(admin_url, dbname, role), tmp_path)
    server = PostgresTarget.from_url(_url(admin_url, "postgres", role))

    with pytest.raises(BackupError) as verifying:
        verify_backup(catalog, name, server, log=QUIET)
    message = str(verifying.value)
    assert f'ALTER ROLE "{role}" CREATEDB' in message and "BACKUP_VERIFY_DATABASE_URL" in message
    assert "InsufficientPrivilege" not in message and "permission denied" not in message

    with pytest.raises(BackupError) as restoring:
        restore_to_database(catalog, name, server, f"{dbname}_copy", log=QUIET)
    assert f'ALTER ROLE "{role}" CREATEDB' in str(restoring.value) and "--target-url" in str(restoring.value)
    with psycopg.connect(admin_url) as conn:
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", (f"{dbname}%",)).fetchone()[0]
    assert left == 1  # only the source: nothing was created
