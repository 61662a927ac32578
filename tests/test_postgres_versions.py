"""PostgreSQL versions: the client tools chosen per server and per archive, a real PostgreSQL 18 backed up with
nothing configured, 18's features restored exactly, and a backup of the machine's older server restored into
18 as an upgrade rehearsal.

The PostgreSQL 18 is a throwaway server from the bundled binaries (tests/support/postgres_server.py), unless
the machine's own server is an 18 already.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import psycopg
import pytest

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import BackupError, VerificationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import server_version
from backup_pipeline.core.postgres.clients import ClientTools, bundled_client_dir
from backup_pipeline.core.restore import restore_into, restore_to_database
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.verify import verify_backup
from tests.support.cli import make_world, module_world, row_counts, schema_dump
from tests.support.hardening import client_tools_folder
from tests.support.postgres_server import server_major
from tests.support.scratch import claimed_in_this_process, still_there
from tests.support.seed import SEED_COUNTS

QUIET = lambda _line: None  # noqa: E731

# What PostgreSQL 17 and 18 added that a dump must carry over exactly: virtual generated columns, uuidv7()
# defaults, NOT NULL ... NOT VALID over rows that break it, CHECK ... NOT ENFORCED, temporal keys WITHOUT
# OVERLAPS, and pgvector (shipped with the bundled server) with an HNSW index.
PG18_FEATURES_SQL = """
CREATE EXTENSION vector;
CREATE EXTENSION btree_gist;
CREATE SCHEMA shop;
CREATE TABLE shop.items (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    price numeric(10, 2) NOT NULL,
    quantity int NOT NULL,
    total numeric GENERATED ALWAYS AS (price * quantity) VIRTUAL,
    total_stored numeric GENERATED ALWAYS AS (price * quantity) STORED,
    embedding vector(3),
    note text
);
INSERT INTO shop.items (price, quantity, embedding, note)
SELECT g * 1.5, g % 7, format('[%s,%s,%s]', g, g * 2 % 11, g % 5)::vector,
       CASE WHEN g % 4 = 0 THEN NULL ELSE 'note ' || g END
FROM generate_series(1, 500) g;
CREATE INDEX items_embedding ON shop.items USING hnsw (embedding vector_l2_ops);
ALTER TABLE shop.items ADD CONSTRAINT items_note_not_null NOT NULL note NOT VALID;
ALTER TABLE shop.items ADD CONSTRAINT items_price_positive CHECK (price > 0) NOT ENFORCED;
CREATE TABLE shop.room_bookings (
    room int,
    during tstzrange,
    guest text,
    PRIMARY KEY (room, during WITHOUT OVERLAPS)
);
INSERT INTO shop.room_bookings
SELECT g % 10, tstzrange('2026-01-01'::timestamptz + g * interval '1 day',
                         '2026-01-01'::timestamptz + (g + 1) * interval '1 day'), 'guest ' || g
FROM generate_series(1, 200) g;
"""
PG18_COUNTS = {"shop.items": 500, "shop.room_bookings": 200}
NEAREST_SQL = "SELECT id::text FROM shop.items ORDER BY embedding <-> '[3,4,1]' LIMIT 5"


def _digest(url: str, tables) -> dict[str, str]:
    """md5 of every table's rows, virtual columns included: equal digests mean equal contents."""
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(
                f"SELECT md5(coalesce(string_agg(t::text || '|' || coalesce(t.total::text, ''), ',' ORDER BY t::text), ''))"
                f" FROM {table} t"
                if table == "shop.items"
                else f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} t"
            ).fetchone()[0]
            for table in tables
        }


def _constraints(url: str) -> dict[str, tuple[bool, bool]]:
    """(validated, enforced) of the constraints the features table declares."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT conname, convalidated, conenforced FROM pg_constraint "
            "WHERE connamespace = 'shop'::regnamespace AND conname LIKE 'items_%'"
        ).fetchall()
    return {name: (validated, enforced) for name, validated, enforced in rows}


def _server_text(url: str) -> str:
    with psycopg.connect(url) as conn:
        return server_version(conn)[1]


# --- which client, and why ------------------------------------------------------------------------------------


def test_each_server_gets_a_pg_dump_of_its_major_else_the_newest_newer_one(clean_env):
    tools = ClientTools.locate()
    majors = {c.major for c in tools.clients}
    assert 18 in majors, "the bundled PostgreSQL 18 client must always be found"
    for major in majors:
        assert tools.for_server(major, f"{major}.1").major == major
    # A server without a client of its major: the newest newer one (the bundled 18 dumps 9.2 and later).
    assert tools.for_server(12, "12.22").major == max(majors)
    # A 15 archive: a pg_restore of the target server's major when it can read it, else of the archive's.
    assert tools.for_archive("15.20", server_major=18).major == 18


def test_a_server_newer_than_every_client_fails_naming_both_versions_and_what_to_install(clean_env):
    with pytest.raises(BackupError) as refused:
        ClientTools.locate().for_server(19, "19.1")
    message = str(refused.value)
    assert "PostgreSQL 19.1" in message and "pg_dump 18." in message
    assert "postgresql-client-19" in message and "BACKUP_PG_BIN_DIR" in message and "Nothing was dumped" in message


def test_an_archive_newer_than_every_pg_restore_is_refused_naming_the_version_needed(clean_env):
    tools = ClientTools.locate()
    with pytest.raises(BackupError) as refused:
        tools.for_archive("19.0", backup="app_daily_20260113_060000")
    message = str(refused.value)
    assert "app_daily_20260113_060000 was written by pg_dump 19.0" in message
    assert "needs pg_restore 19 or newer" in message and "postgresql-client-19" in message
    if not any(c.supports_compression("zstd") for c in tools.clients):
        with pytest.raises(BackupError, match="compressed with zstd.*built with zstd.*BACKUP_PG_BIN_DIR"):
            tools.for_archive("18.6", "zstd:3")


def test_a_connection_that_insists_on_ssl_never_gets_a_client_built_without_it(clean_env):
    tools = ClientTools.locate()
    for major in sorted({c.major for c in tools.clients}):
        try:
            chosen = tools.for_server(major, f"{major}.1", needs_ssl=True)
        except BackupError as refused:
            # The bundled client is built without SSL: say so, and what to install, instead of pg_dump's
            # 'sslmode value "require" invalid when SSL support is not compiled in'.
            assert "built without SSL support" in str(refused) and "`backup-db install-client`" in str(refused)
            assert not any(c.supports_ssl() for c in tools.clients if c.major >= major)
        else:
            assert chosen.supports_ssl() and chosen.major >= major
    assert PostgresTarget.from_url("postgresql://u@db.example.com/app?sslmode=require").needs_ssl
    assert not PostgresTarget.from_url("postgresql://u@db.example.com/app").needs_ssl


def test_a_server_before_17_is_backed_up_and_verified_with_the_bundled_client_alone(
    clean_env, make_database, pg_admin_url, tmp_path
):
    """pg_restore 17+ sets transaction_timeout, which PostgreSQL 16 and older reject: with nothing but the
    bundled 18 (BACKUP_PG_BIN_DIR pins it), its SQL goes through psql, and the backup verifies and restores."""
    if server_major(pg_admin_url) >= 17:
        pytest.skip("the machine's server is PostgreSQL 17 or newer")
    clean_env.setenv("BACKUP_PG_BIN_DIR", str(bundled_client_dir()))
    url = make_database(prefix="bpv_old_server")
    catalog = BackupCatalog(LocalStorage(tmp_path / "backups"), "db-backups", PostgresTarget.from_url(url).dbname)
    backup_id = BackupId(created_at=datetime(2026, 1, 13, 6, 0, tzinfo=UTC), type="daily")
    manifest = take_backup(PostgresTarget.from_url(url), catalog, backup_id, log=QUIET).manifest
    assert manifest.pg_dump_version.startswith("18.") and manifest.server_version.startswith(f"{server_major(url)}.")
    name = BackupName(catalog.name_prefix, backup_id)
    lines = []
    outcome = verify_backup(catalog, name, PostgresTarget.from_url(pg_admin_url), log=lines.append)
    assert outcome.tables == SEED_COUNTS and outcome.pg_restore_version.startswith("18.")
    assert any("restoring its SQL through psql" in line for line in lines), lines
    target_db = f"{PostgresTarget.from_url(url).dbname}_copy"
    try:
        restored = restore_to_database(
            catalog, name, PostgresTarget.from_url(pg_admin_url), target_db, jobs=2, log=QUIET
        )
        assert restored.tables == SEED_COUNTS
        restored_url = pg_admin_url.rsplit("/", 1)[0] + "/" + target_db
        assert row_counts(restored_url) == SEED_COUNTS
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')
    # The first failing statement still stops the restore, with the server's own message.
    occupied = PostgresTarget.from_url(make_database(prefix="bpv_occupied"))
    with pytest.raises(VerificationError, match=r"pg_restore of .* failed: .*already exists"):
        restore_into(catalog, manifest, occupied, ClientTools.locate(), log=QUIET)


def test_restoring_an_18_backup_with_an_older_configured_pg_restore_creates_nothing(
    clean_env, make_pg18_database, pg_admin_url, tmp_path
):
    """The version check comes before any database is made: nothing appears on the target server."""
    url = make_pg18_database(PG18_FEATURES_SQL, prefix="bpv_old_restore")
    catalog = BackupCatalog(LocalStorage(tmp_path / "backups"), "db-backups", PostgresTarget.from_url(url).dbname)
    backup_id = BackupId(created_at=datetime(2026, 1, 13, 6, 0, tzinfo=UTC), type="daily")
    take_backup(PostgresTarget.from_url(url), catalog, backup_id, log=QUIET)
    old = client_tools_folder(
        tmp_path / "old-bin", 'if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 15.20"; exit 0; fi'
    )
    clean_env.setenv("BACKUP_PG_BIN_DIR", str(old))
    name = BackupName(catalog.name_prefix, backup_id)
    with claimed_in_this_process() as scratch:
        with pytest.raises(BackupError) as refused:
            restore_to_database(catalog, name, PostgresTarget.from_url(pg_admin_url), "bpv_never_made", log=QUIET)
        message = str(refused.value)
        assert re.search(r"written by pg_dump 18\.\d+, and pg_restore 15\.20 \(BACKUP_PG_BIN_DIR", message), message
        assert "PostgreSQL 18 or newer client" in message and "Nothing was restored" in message
        with pytest.raises(BackupError, match="pg_restore 15.20"):
            verify_backup(catalog, name, PostgresTarget.from_url(pg_admin_url), log=QUIET)
    assert not still_there(pg_admin_url, ["bpv_never_made", *scratch])


# --- a real PostgreSQL 18 ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world18(pg18_admin_url, moto_server, tmp_path_factory):
    """`backup-db` against a database on the PostgreSQL 18 server, with nothing about PostgreSQL configured."""
    world = make_world(pg18_admin_url, moto_server, tmp_path_factory.mktemp("pg18"))
    assert "BACKUP_PG_BIN_DIR" not in world.env
    yield world
    world.drop_databases()


def test_an_18_server_is_backed_up_and_verified_with_nothing_configured(world18):
    result = world18.run("backup", "--json", timeout=240)
    assert result.returncode == 0, result.stderr
    name = json.loads(result.stdout)["name"]
    key = f"db-backups/{name}.dump"
    manifest = Manifest.from_json(world18.s3.get_object(Bucket=world18.bucket, Key=f"{key}.json")["Body"].read())
    verified = json.loads(world18.s3.get_object(Bucket=world18.bucket, Key=f"{key}.verified.json")["Body"].read())
    assert manifest.server_version.startswith("18.") and manifest.pg_dump_version.startswith("18.")
    assert manifest.tables == SEED_COUNTS
    assert verified["pg_restore_version"].startswith("18.") and verified["server_version"].startswith("18.")
    assert verified["rows"] == sum(SEED_COUNTS.values())
    shown = world18.run("info", name)
    assert "(PostgreSQL 18." in shown.stdout and "pg_dump 18." in shown.stdout and "pg_restore 18." in shown.stdout


def test_postgresql_18_features_restore_exactly(clean_env, make_pg18_database, pg18_admin_url, tmp_path):
    source = make_pg18_database(PG18_FEATURES_SQL, prefix="bpv_features")
    catalog = BackupCatalog(LocalStorage(tmp_path / "backups"), "db-backups", PostgresTarget.from_url(source).dbname)
    backup_id = BackupId(created_at=datetime(2026, 1, 13, 6, 0, tzinfo=UTC), type="daily")
    manifest = take_backup(PostgresTarget.from_url(source), catalog, backup_id, log=QUIET).manifest
    assert manifest.pg_dump_version.startswith("18.") and manifest.tables == PG18_COUNTS
    name = BackupName(catalog.name_prefix, backup_id)
    verified = verify_backup(catalog, name, PostgresTarget.from_url(pg18_admin_url), log=QUIET)
    assert verified.pg_restore_version.startswith("18.")

    target_db = f"{PostgresTarget.from_url(source).dbname}_copy"
    server = PostgresTarget.from_url(pg18_admin_url)
    lines = []
    try:
        outcome = restore_to_database(catalog, name, server, target_db, log=lines.append)
        restored = server.with_database(target_db)
        restored_url = pg18_admin_url.rsplit("/", 1)[0] + "/" + target_db
        assert outcome.tables == PG18_COUNTS and not outcome.upgrade
        assert outcome.pg_restore_version.startswith("18.")
        assert any(f"with pg_restore {outcome.pg_restore_version}" in line for line in lines), lines

        assert schema_dump(restored_url) == schema_dump(source)
        assert _digest(restored_url, PG18_COUNTS) == _digest(source, PG18_COUNTS)
        # NOT VALID stays not validated (the rows without a note are still there), NOT ENFORCED stays so.
        assert _constraints(restored_url) == _constraints(source)
        assert _constraints(restored_url)["items_note_not_null"] == (False, True)
        assert _constraints(restored_url)["items_price_positive"][1] is False
        with restored.connect() as conn:
            assert conn.execute("SELECT count(*) FROM shop.items WHERE note IS NULL").fetchone()[0] == 125
            # Defaults and generated columns work in the restored database, not just the copied rows.
            version, total = conn.execute(
                "INSERT INTO shop.items (price, quantity, note) VALUES (2.50, 4, 'new') "
                "RETURNING uuid_extract_version(id), total"
            ).fetchone()
            assert (version, total) == (7, 10)
            with pytest.raises(psycopg.errors.NotNullViolation):
                conn.execute("INSERT INTO shop.items (price, quantity) VALUES (1, 1)")
            with pytest.raises(psycopg.errors.ExclusionViolation):
                conn.execute(
                    "INSERT INTO shop.room_bookings SELECT room, during, 'double booking' "
                    "FROM shop.room_bookings LIMIT 1"
                )
            restored_nearest = [r[0] for r in conn.execute(NEAREST_SQL).fetchall()]
            assert conn.execute(
                "SELECT indexdef LIKE '%USING hnsw%' FROM pg_indexes WHERE indexname = 'items_embedding'"
            ).fetchone()[0]
        with psycopg.connect(source) as conn:
            assert restored_nearest == [r[0] for r in conn.execute(NEAREST_SQL).fetchall()]
    finally:
        with psycopg.connect(pg18_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')


@pytest.fixture(scope="module")
def world(pg_admin_url, moto_server, tmp_path_factory):
    yield from module_world(pg_admin_url, moto_server, tmp_path_factory, "upgrade")


def test_a_backup_of_the_older_server_restores_into_18_as_an_upgrade(world, pg18_admin_url):
    source_major = server_major(world.admin_url)
    if source_major >= 18:
        pytest.skip("the machine's server is PostgreSQL 18 itself: there is no older server to upgrade from")
    backed_up = world.call("backup", "--json", timeout=240)
    assert backed_up.returncode == 0, backed_up.stderr
    name = json.loads(backed_up.stdout)["name"]
    target_db = f"bpcli_upgrade_{name[-6:]}"
    try:
        restored = world.call(
            "restore", name, "--target-url", pg18_admin_url, "--target-db", target_db, "--confirm", "RESTORE",
            timeout=240,
        )  # fmt: skip
        assert restored.returncode == 0, restored.stderr
        source_text, target_text = _server_text(world.admin_url), _server_text(pg18_admin_url)
        assert (
            f"This was an upgrade: the backup came from PostgreSQL {source_text} and now runs on "
            f"PostgreSQL {target_text} (restored with pg_restore 18." in restored.stdout
        ), restored.stdout
        target_url = pg18_admin_url.rsplit("/", 1)[0] + "/" + target_db
        assert server_major(target_url) == 18
        assert row_counts(target_url) == SEED_COUNTS
        as_json, _ = world.call_json(
            "restore", name, "--target-url", pg18_admin_url, "--target-db", target_db, "--replace",
            "--from-other-source", "--confirm", "RESTORE", timeout=240,
        )  # fmt: skip
        assert as_json["upgrade"] is True
        assert as_json["source_server_version"] == source_text and as_json["server_version"] == target_text
        assert as_json["pg_restore_version"].startswith("18.")
    finally:
        with psycopg.connect(pg18_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')


def test_the_bundled_client_is_the_one_the_wheel_ships(clean_env):
    bundled = bundled_client_dir()
    assert bundled is not None and (bundled / "pg_restore").exists()
    [client] = [c for c in ClientTools.locate().clients if c.origin == "bundled"]
    assert client.major == 18 and client.bin_dir == bundled
