"""A real PgBouncer (Debian's `pgbouncer` package) on a free loopback port, in front of a test server.

Each database is served twice: `<db>_txn` in transaction mode (what DigitalOcean's pools, Supabase's port 6543
and Neon's -pooler hosts give) and `<db>_session` in session mode. It runs as this test's own process (as the
postgres user when run as root: PgBouncer refuses root) and is stopped by its pid.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import free_port, start_process, stop_process

ALIAS = {"transaction": "txn", "session": "session"}
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def installed() -> bool:
    return os.access(PGBOUNCER, os.X_OK)


class PgBouncer:
    def __init__(self, server_host: str, server_port: int, databases: list[str], pool_size: int = 2):
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="backup-pgbouncer-"))
        lines = []
        for name in databases:
            for mode in ("transaction", "session"):
                alias = f"{name}_{ALIAS[mode]}"
                lines.append(
                    f"{alias} = host={server_host} port={server_port} dbname={name} user=postgres pool_mode={mode} "
                    f"pool_size={pool_size if mode == 'transaction' else 10}"
                )
        (self.folder / "pgbouncer.ini").write_text(
            "[databases]\n"
            + "\n".join(lines)
            + f"""
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 50
ignore_startup_parameters = extra_float_digits
logfile = {self.folder}/pgbouncer.log
"""
        )
        self.process: subprocess.Popen | None = None

    def url(self, dbname: str, mode: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}_{ALIAS[mode]}"

    def start(self) -> PgBouncer:
        argv = [PGBOUNCER]
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            for child in self.folder.iterdir():
                shutil.chown(child, "postgres")
            argv += ["-u", "postgres"]
        self.process = start_process(
            [*argv, str(self.folder / "pgbouncer.ini")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.folder / "pgbouncer.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"pgbouncer exited with {self.process.returncode}: {log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("pgbouncer did not listen within 15 s")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)
