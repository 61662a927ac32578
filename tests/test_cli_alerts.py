"""`backup-db` without a daemon still tells Discord: one notice for a backup, one alert for a failure."""

import time

import pytest

from tests.support.cli import make_world
from tests.support.discord_stub import discord_stub  # noqa: F401
from tests.support.hardening import client_tools_folder


@pytest.fixture
def world(pg_admin_url, moto_server, tmp_path, discord_stub):  # noqa: F811
    world = make_world(pg_admin_url, moto_server, tmp_path)
    world.env["DISCORD_WEBHOOK_URL"] = discord_stub.webhook_url
    yield world
    world.drop_databases()


def _failing_pg_dump(folder):
    """A pg_dump that reports the real version and then fails the way a dump fails mid-way."""
    return client_tools_folder(
        folder,
        'if [ "$1" = "--version" ]; then exec "$REAL/pg_dump" --version; fi\n'
        'echo "pg_dump: error: query failed: server closed the connection unexpectedly" >&2\nexit 1',
    )


def test_backup_without_daemon_posts_one_success_notice(world, discord_stub):  # noqa: F811
    result = world.call("backup", "--type", "manual", timeout=180)
    assert result.returncode == 0, result.stderr
    [message] = discord_stub.wait_for_messages(1, timeout=10)
    assert world.db_name in message and "manual" in message
    time.sleep(1)
    assert len(discord_stub.messages) == 1


def test_failed_backup_without_daemon_posts_one_failure_alert(world, discord_stub, tmp_path):  # noqa: F811
    bin_dir = _failing_pg_dump(tmp_path / "bin")
    result = world.call("backup", "--quiet", env={"BACKUP_PG_BIN_DIR": str(bin_dir)}, timeout=180)
    assert result.returncode == 1
    [message] = discord_stub.wait_for_messages(1, timeout=10)
    assert "server closed the connection unexpectedly" in message and "backup_job" in message
    time.sleep(1)
    assert len(discord_stub.messages) == 1
