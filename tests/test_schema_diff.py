"""`backup-db diff` compares the whole schema, every kind of object pg_dump dumps, on the machine's server and on
PostgreSQL 18: an enum value added, a new sequence, a new enum, a changed GRANT, a new policy, a changed column
default, a new comment, a changed owner, a new trigger and extension are each reported; an unchanged database
reports no differences and still says what was not compared. Nothing is created on the server.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from backup_pipeline.cli.diff import diff_text
from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.dump_options import DumpOptions
from backup_pipeline.core.encryption import parse_key
from backup_pipeline.core.errors import VerificationError
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.schema_diff import KINDS, diff_backup_schema
from backup_pipeline.core.storage.local import LocalStorage
from tests.support.scratch import claimed_in_this_process, still_there

QUIET = lambda _line: None  # noqa: E731
SCHEMA = """
CREATE TYPE order_status AS ENUM ('new', 'paid');
CREATE TABLE orders (
    id serial PRIMARY KEY, status order_status NOT NULL DEFAULT 'new', note text DEFAULT 'none', total numeric
);
INSERT INTO orders (total) SELECT g FROM generate_series(1, 20) g;
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON orders USING (true);
GRANT SELECT ON orders TO {app};
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
"""
# Each change a migration may make, and the line `diff` must print for it.
CHANGES = {
    "ALTER TYPE order_status ADD VALUE 'refunded'": ["  ~ public.order_status", "      + 'refunded'"],
    "CREATE SEQUENCE invoice_numbers": ["  + public.invoice_numbers  CREATE SEQUENCE public.invoice_numbers"],
    "CREATE TYPE priority AS ENUM ('low', 'high')": ["  + public.priority  CREATE TYPE public.priority AS ENUM"],
    "GRANT INSERT ON orders TO {app}": [
        "  ~ TABLE public.orders",
        "      + GRANT SELECT,INSERT ON TABLE public.orders TO {app};",
    ],
    "CREATE POLICY paid_only ON orders FOR SELECT USING (status = 'paid')": [
        "  + public.orders.paid_only  CREATE POLICY"
    ],
    "ALTER TABLE orders ALTER COLUMN note SET DEFAULT 'n/a'": [
        "  ~ public.orders.note  text DEFAULT 'none'::text -> text DEFAULT 'n/a'::text"
    ],
    "COMMENT ON COLUMN orders.total IS 'in cents'": ["  + COLUMN public.orders.total  COMMENT ON COLUMN"],
    "ALTER FUNCTION touch() OWNER TO {app}": ["  ~ function public.touch()  postgres -> {app}"],
    "ALTER TABLE orders ADD COLUMN paid_at timestamptz": ["  + public.orders.paid_at  timestamp with time zone"],
    "CREATE TRIGGER stamp BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch()": [
        "  + public.orders.stamp  CREATE TRIGGER stamp"
    ],
    "CREATE EXTENSION citext": ["  + citext  CREATE EXTENSION IF NOT EXISTS citext"],
}


@pytest.fixture(params=["machine", "pg18"])
def server_url(request):
    return request.getfixturevalue("pg_admin_url" if request.param == "machine" else "pg18_admin_url")


@pytest.fixture
def app_database(server_url):
    """A database with SCHEMA, and an app role of its own; both dropped afterwards."""
    app, dbname = f"bp_app_{secrets.token_hex(4)}", f"bpdiff_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(app)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    url = server_url.rsplit("/", 1)[0] + "/" + dbname
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA.format(app=app))
        yield url, app
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(app)))


def test_diff_reports_every_kind_of_schema_change_and_nothing_for_an_unchanged_database(
    app_database, clean_env, tmp_path
):
    url, app = app_database
    live = PostgresTarget.from_url(url)
    catalog = BackupCatalog(LocalStorage(tmp_path / "backups"), "db-backups", live.dbname)
    backup_id = BackupId(created_at=datetime(2026, 1, 13, 6, 0, tzinfo=UTC), type="pre-migration")
    take_backup(live, catalog, backup_id, log=QUIET)
    name = BackupName(catalog.name_prefix, backup_id)

    with claimed_in_this_process() as scratch:
        same = diff_backup_schema(catalog, name, live, log=QUIET)
    assert same.empty and same.as_dict()["identical"] is True
    text = diff_text(same, live)
    assert "No differences" in text
    assert "Not compared: table rows" in text and "privileges" in text.split("Compared:")[1]

    with psycopg.connect(url, autocommit=True) as conn:
        for change in CHANGES:
            conn.execute(change.format(app=app))
    with claimed_in_this_process() as claimed:
        changed = diff_backup_schema(catalog, name, live, log=QUIET)
    scratch += claimed
    text = diff_text(changed, live)
    assert "No differences" not in text
    missing = [line for lines in CHANGES.values() for line in lines if line.format(app=app) not in text]
    assert not missing, f"{missing}\n{text}"
    assert not still_there(url, scratch)  # nothing was left on the server

    as_json = changed.as_dict()
    assert as_json["identical"] is False
    for kind in KINDS:  # every kind keeps the same shape; the earlier five keep their keys
        assert set(as_json[kind]) == {"added", "removed", "changed"}
    assert [c["name"] for c in as_json["sequences"]["added"]] == ["public.invoice_numbers"]
    assert [c["name"] for c in as_json["policies"]["added"]] == ["public.orders.paid_only"]
    [enum] = as_json["types"]["changed"]
    assert enum["name"] == "public.order_status" and "'refunded'" in enum["live"] and "'refunded'" not in enum["backup"]
    assert as_json["not_compared"] and as_json["pg_dump_version"]
    # Only what changed is listed: the function whose owner changed is not "changed" itself, nor is the table.
    assert as_json["functions"]["changed"] == [] and as_json["tables"]["changed"] == []


def test_an_encrypted_directory_format_backup_is_read_whole_and_a_damaged_one_refused(
    make_database, clean_env, tmp_path
):
    url = make_database()
    live = PostgresTarget.from_url(url)
    key = parse_key(base64.b64encode(secrets.token_bytes(32)).decode(), "BACKUP_ENCRYPTION_KEY")
    catalog = BackupCatalog(LocalStorage(tmp_path / "backups"), "db-backups", live.dbname, encryption=key)
    backup_id = BackupId(created_at=datetime(2026, 1, 13, 6, 0, tzinfo=UTC), type="manual")
    options = DumpOptions(format="directory", jobs=2)
    manifest = take_backup(live, catalog, backup_id, options=options, log=QUIET).manifest
    name = BackupName(catalog.name_prefix, backup_id)
    assert diff_backup_schema(catalog, name, live, log=QUIET).empty

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE app.users ADD COLUMN nickname text")
    [added] = diff_backup_schema(catalog, name, live, log=QUIET).kinds["columns"].added
    assert added.name == "app.users.nickname"

    # The same bytes, one flipped: refused by its checksum, nothing compared.
    stored = tmp_path / "backups" / manifest.key
    body = bytearray(stored.read_bytes())
    body[len(body) // 2] ^= 0xFF
    stored.write_bytes(bytes(body))
    with pytest.raises(VerificationError, match="is corrupted|not a readable"):
        diff_backup_schema(catalog, name, live, log=QUIET)
