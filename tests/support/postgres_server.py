"""The PostgreSQL servers the tests use.

The machine's server: $TEST_DATABASE_URL, else 127.0.0.1:5432, else a throwaway cluster of the installed
server binaries, else (a machine without PostgreSQL) a throwaway server from the bundled PostgreSQL 18.
BACKUP_TEST_NO_LOCAL_SERVER=1 makes this machine look like one without PostgreSQL to the tests: neither
127.0.0.1:5432 nor the installed server binaries are used (tests/test_fresh_machine.py).
A PostgreSQL 18: the machine's server when it is one, else a throwaway server from the bundled binaries.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import psycopg

from backup_pipeline.core.postgres.clients import SYSTEM_CLIENT_GLOBS
from backup_pipeline.core.postgres.throwaway import ThrowawayServer

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
NO_LOCAL_SERVER_ENV = "BACKUP_TEST_NO_LOCAL_SERVER"
BUNDLED_MAJOR = 18


def can_connect(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def server_major(url: str) -> int:
    with psycopg.connect(url, connect_timeout=10) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def installed_server_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (one with initdb), if any."""
    found = [Path(p) for pattern in SYSTEM_CLIENT_GLOBS for p in glob.glob(pattern) if Path(p, "initdb").exists()]
    return max(found, key=lambda p: int("".join(filter(str.isdigit, p.parent.name)) or 0)) if found else None


def admin_url() -> tuple[str, ThrowawayServer | None]:
    """(superuser URL of the machine's server's `postgres` database, the throwaway server to stop or None)."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        if not can_connect(configured):
            raise RuntimeError("TEST_DATABASE_URL is set but the server does not answer")
        return configured, None
    fresh = os.environ.get(NO_LOCAL_SERVER_ENV) == "1"
    if not fresh and can_connect(LOCAL_URL):
        return LOCAL_URL, None
    # Installed server binaries, else the bundled PostgreSQL 18 (a machine with no PostgreSQL at all).
    server = ThrowawayServer(None if fresh else installed_server_bin(), label="test").start()
    return server.url, server


def pg18_url(machine_url: str) -> tuple[str, ThrowawayServer | None]:
    """A PostgreSQL 18 server: the machine's own when it is one, else a throwaway from the bundled binaries."""
    if server_major(machine_url) == BUNDLED_MAJOR:
        return machine_url, None
    server = ThrowawayServer(label="test18").start()
    return server.url, server
