"""The scratch database verification and restore work in, and the one reader of stored backups.

A scratch database is gone when its block ends, however it ends (a failure, KeyboardInterrupt); a stored
backup read whole is refused when its sha256 differs from the manifest's, and a damaged directory-format
archive is named as corrupted rather than as a tar problem.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile

import psycopg
import pytest

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import VerificationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.scratch_database import scratch_database, scratch_server
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.stored_backup import open_backup, open_backup_head, unpack_backup

NAME = "app_manual_20260113_150000"


def _manifest(data: bytes, sha256: str | None = None, **changes) -> Manifest:
    fields = dict(
        name=NAME,
        backup_id="manual_20260113_150000",
        type="manual",
        database="app",
        created_at="2026-01-13T15:00:00+00:00",
        key=f"db-backups/{NAME}.dump",
        size_bytes=len(data),
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        server_version="15.4",
        pg_dump_version="18.1",
        tables={},
        duration_s=1.0,
        tool_version="0.1.0",
    )
    return Manifest(**{**fields, **changes})


def _stored(tmp_path, data: bytes) -> BackupCatalog:
    storage = LocalStorage(tmp_path / "store")
    storage.put_bytes(f"db-backups/{NAME}.dump", data)
    return BackupCatalog(storage, "db-backups", "app")


def _exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def _encoding(target: PostgresTarget) -> str:
    with target.connect() as conn:
        return conn.execute(
            "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]


@pytest.mark.parametrize("ending", [None, RuntimeError("pg_restore failed"), KeyboardInterrupt()])
def test_a_scratch_database_is_dropped_however_its_block_ends(make_database, pg_admin_url, ending):
    server = PostgresTarget.from_url(make_database(seed_sql=None))
    seen: list[str] = []
    with pytest.raises(type(ending)) if ending else contextlib.nullcontext():
        with scratch_server(server) as scratch, scratch_database(scratch, "verify", _manifest(b"x")) as work:
            seen.append(work.name)
            with work.target.connect() as conn:  # it exists and takes sessions while the block runs
                assert conn.execute("SELECT current_database()").fetchone()[0] == work.name
            if ending:
                raise ending
    assert seen and seen[0].startswith("bp_verify_")
    assert not _exists(pg_admin_url, seen[0])


def test_a_scratch_database_has_the_encoding_the_backup_asks_for(make_database, pg_admin_url):
    server = PostgresTarget.from_url(make_database(seed_sql=None))
    with scratch_server(server) as scratch:
        with scratch_database(scratch, "verify", _manifest(b"x", encoding="SQL_ASCII")) as work:
            assert _encoding(work.target) == "SQL_ASCII"
            assert "encoding SQL_ASCII" in work.created
        assert not _exists(pg_admin_url, work.name)


def test_a_scratch_database_is_made_from_the_maintenance_database_when_the_urls_is_gone(pg_admin_url):
    gone = PostgresTarget.from_url(pg_admin_url.rsplit("/", 1)[0] + "/bptest_never_created_db")
    said: list[str] = []
    with scratch_server(gone, log=said.append) as scratch, scratch_database(scratch, "verify", _manifest(b"x")) as work:
        assert _exists(pg_admin_url, work.name)
    assert not _exists(pg_admin_url, work.name)
    assert "working from the server's maintenance database" in " ".join(said)


def test_a_stored_backup_read_whole_is_checked_against_its_manifest(tmp_path):
    data = b"PGDMP" + bytes(range(256)) * 4096
    catalog = _stored(tmp_path, data)
    progress: list[int] = []
    with open_backup(catalog, _manifest(data), on_progress=progress.append) as backup:
        assert backup.read() == data
    with pytest.raises(VerificationError, match=f"{NAME} is corrupted: its sha256 is .* but the manifest recorded"):
        with open_backup(catalog, _manifest(data, sha256="0" * 64)) as backup:
            backup.read(10)  # what is not read is read at the end, so the checksum covers the whole object
    with open_backup_head(catalog, _manifest(data, sha256="0" * 64)) as head:  # a head is never checked
        assert head.read(5) == b"PGDMP"


def test_a_damaged_directory_archive_is_called_corrupted_and_an_intact_unreadable_one_unreadable(tmp_path):
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        member = tarfile.TarInfo("toc.dat")
        member.size = 3
        archive.addfile(member, io.BytesIO(b"abc"))
    good = tar.getvalue()
    damaged = good[:100] + b"\xff" * 400 + good[500:]
    catalog = _stored(tmp_path, damaged)
    with pytest.raises(VerificationError, match="is corrupted: its sha256"):
        with open_backup(catalog, _manifest(good, format="directory")) as backup:
            unpack_backup(backup, tmp_path / "out1")
    with pytest.raises(VerificationError, match="is not a readable directory-format archive"):
        with open_backup(catalog, _manifest(damaged, format="directory")) as backup:
            unpack_backup(backup, tmp_path / "out2")
