"""A throwaway server (local verification, the demo) starts from a copy of a pristine cluster made once per
PostgreSQL build and user, and never from one that someone else could have written."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from backup_pipeline.core.postgres.clients import bundled_client_dir
from backup_pipeline.core.postgres.throwaway import ThrowawayServer, _unprivileged_user, template_folder


@pytest.fixture
def temporary_folder(monkeypatch) -> Path:
    """A temporary folder of this test's own, open to all as /tmp is (the server runs as another user when we are root)."""
    folder = Path(tempfile.mkdtemp(prefix="bp-template-test-"))
    folder.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _config(server: ThrowawayServer) -> str:
    return (server.data / "postgresql.conf").read_text()


def _answers(server: ThrowawayServer) -> bool:
    with psycopg.connect(server.url) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def test_the_second_server_copies_the_template_the_first_one_made(temporary_folder):
    with ThrowawayServer(label="test") as first:
        assert _answers(first)
    template = template_folder(bundled_client_dir(), _unprivileged_user())
    assert (template / "data" / "PG_VERSION").read_text().strip() == "18"
    # A line only the template has: the next server's cluster is a copy of it, not initdb's.
    with open(template / "data" / "postgresql.conf", "a") as conf:
        conf.write("# from the template\n")
    with ThrowawayServer(label="test") as second:
        assert _answers(second) and "# from the template" in _config(second)
    assert not list(temporary_folder.glob("backup-test-pg-*"))  # each server's own folder is gone


def test_a_template_others_may_write_is_never_copied(temporary_folder):
    planted = template_folder(bundled_client_dir(), _unprivileged_user())
    (planted / "data").mkdir(parents=True)
    (planted / "data" / "PG_VERSION").write_text("18\n")
    (planted / "data" / "postgresql.conf").write_text("# planted\n")
    (planted / "data").chmod(0o777)  # anyone could have put settings there that run commands at start
    with ThrowawayServer(label="test") as server:
        assert _answers(server) and "# planted" not in _config(server)  # initdb made its cluster
    assert (planted / "data" / "postgresql.conf").read_text() == "# planted\n"  # and nothing of it was touched


def test_a_template_damaged_since_it_was_made_gives_way_to_initdb(temporary_folder):
    with ThrowawayServer(label="test"):
        pass
    template = template_folder(bundled_client_dir(), _unprivileged_user())
    (template / "data" / "global" / "pg_control").unlink()  # as a cleaner of old files in /tmp would
    with ThrowawayServer(label="test") as server:
        assert _answers(server)
