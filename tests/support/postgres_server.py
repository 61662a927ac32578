"""The PostgreSQL server the tests use: $TEST_DATABASE_URL, else 127.0.0.1:5432, else a throwaway cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from .processes import free_port

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def can_connect(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _binary(name: str) -> str | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else shutil.which(name)


class ThrowawayCluster:
    """initdb + pg_ctl in a temporary folder on a free port, trust auth; stop() removes it."""

    def __init__(self):
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError(
                "no PostgreSQL server for the tests: set TEST_DATABASE_URL, run one on 127.0.0.1:5432 with trust auth "
                "for user postgres, or install the server binaries (apt install postgresql) so a throwaway cluster "
                "can be started"
            )
        self.pg_ctl = pg_ctl
        self.dir = tempfile.mkdtemp(prefix="backup-test-pg-")
        self.port = free_port()
        self._as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run([initdb, "-D", f"{self.dir}/data", "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        self._run(
            [
                pg_ctl,
                "-D",
                f"{self.dir}/data",
                "-l",
                f"{self.dir}/log",
                "-w",
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                "start",
            ]
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv):
        subprocess.run([*self._as_user, *argv], check=True, capture_output=True)

    def stop(self):
        subprocess.run(
            [*self._as_user, self.pg_ctl, "-D", f"{self.dir}/data", "-m", "fast", "-w", "stop"], capture_output=True
        )
        shutil.rmtree(self.dir, ignore_errors=True)


def admin_url() -> tuple[str, ThrowawayCluster | None]:
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        if not can_connect(configured):
            raise RuntimeError("TEST_DATABASE_URL is set but the server does not answer")
        return configured, None
    if can_connect(LOCAL_URL):
        return LOCAL_URL, None
    cluster = ThrowawayCluster()
    return cluster.url, cluster
