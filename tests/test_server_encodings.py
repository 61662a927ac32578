"""Every server encoding backs up, verifies and restores: SQL_ASCII (bytes with no declared encoding, which psycopg
hands back as bytes unless told how to read them), LATIN1 and EUC_JP, each with non-ASCII table names and rows.

The restored database keeps the source's encoding, so the stored bytes come back byte for byte.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.restore import restore_to_database
from backup_pipeline.core.schema_diff import diff_backup_schema
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.verify import verify_backup
from tests.support.encodings import SAMPLES, fill_encoded, stored_bytes

QUIET = lambda _line: None  # noqa: E731


def _url(admin_url: str, dbname: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + dbname


@pytest.fixture(params=["machine", "pg18"])
def admin_url(request):
    """The machine's server, then the bundled PostgreSQL 18."""
    return request.getfixturevalue("pg_admin_url" if request.param == "machine" else "pg18_admin_url")


@pytest.fixture
def encoded_database(admin_url):
    """Creates a database in an encoding (C locale), fills it with SAMPLES; drops what it made afterwards."""
    made: list[str] = []

    def make(encoding: str) -> tuple[str, str]:
        name = f"bpenc_{encoding.lower()}_{secrets.token_hex(3)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} ENCODING {} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'").format(
                    sql.Identifier(name), sql.Literal(encoding)
                )
            )
        made.append(name)
        fill_encoded(_url(admin_url, name), encoding)
        return _url(admin_url, name), name

    yield make
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize("encoding", list(SAMPLES))
def test_a_database_in_each_encoding_backs_up_verifies_and_restores_byte_for_byte(
    clean_env, encoded_database, admin_url, tmp_path, encoding
):
    url, dbname = encoded_database(encoding)
    before = stored_bytes(url)
    assert before[0] == encoding
    catalog = BackupCatalog(LocalStorage(tmp_path / "backups"), "db-backups", dbname)
    backup_id = BackupId(created_at=datetime(2026, 1, 13, 6, 0, tzinfo=UTC), type="daily")

    manifest = take_backup(PostgresTarget.from_url(url), catalog, backup_id, log=QUIET).manifest
    rows = len(SAMPLES[encoding][1]) + (encoding == "SQL_ASCII")
    assert sorted(manifest.tables.values()) == sorted([40, rows])
    assert all(isinstance(name, str) and not name.startswith("b'") for name in manifest.tables)
    assert manifest.encoding == encoding

    name = BackupName(catalog.name_prefix, backup_id)
    server = PostgresTarget.from_url(admin_url)
    lines: list[str] = []
    verified = verify_backup(catalog, name, server, log=lines.append)
    assert verified.tables == manifest.tables
    assert any(f"encoding {encoding}" in line for line in lines), lines

    copy = f"{dbname}_copy"
    try:
        restored = restore_to_database(catalog, name, server, copy, log=QUIET)
        assert restored.tables == manifest.tables
        assert stored_bytes(_url(admin_url, copy)) == before
        # diff reads both sides in their declared encoding: the copy's schema is the backup's.
        assert diff_backup_schema(catalog, name, PostgresTarget.from_url(_url(admin_url, copy)), log=QUIET).empty
        word = "表" if encoding == "EUC_JP" else "größer"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET client_encoding = 'UTF8'")
            conn.execute(f"COMMENT ON TABLE plain IS '{word}'")
        [comment] = diff_backup_schema(catalog, name, PostgresTarget.from_url(url), log=QUIET).kinds["comments"].added
        # A SQL_ASCII database's bytes (here UTF-8's) are shown one character per byte: nothing is lost.
        shown = word.encode().decode("latin-1") if encoding == "SQL_ASCII" else word
        assert comment.name == "TABLE public.plain" and f"'{shown}'" in comment.live
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(copy)))
