"""Running `backup-db` as users do (a real subprocess) against a seeded database, moto and a DAGSTER_HOME.

A CliWorld is made once per test module: one seeded source database, one bucket, one Dagster instance
folder, and the environment the command runs with. It drops every database it (or a restore) created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support.dagster_home import new_dagster_home
from tests.support.scratch import database_names, named_in, still_there
from tests.support.seed import SEED_SQL

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("backup-db")
DAGSTER_HOME_FILE = "dagster.yaml"
OWN_DATABASE_PREFIXES = ("bpcli_", "bp_restore_", "bp_replaced_", "template", "postgres")
# Every variable the command reads; none may leak in from the shell running the tests.
OUR_VARS = re.compile(r"^(DATABASE_URL|BACKUP_.*|AWS_.*|DO_SPACES_.*|DISCORD_.*|DAGSTER_.*|PG[A-Z]+)$")


def row_counts(url: str) -> dict[str, int]:
    from backup_pipeline.core.postgres.catalog import table_row_counts

    with psycopg.connect(url) as conn:
        return table_row_counts(conn)


def schema_dump(url: str) -> list[str]:
    """pg_dump --schema-only without comments, blank lines and the per-run \\restrict keys."""
    from backup_pipeline.core.postgres.catalog import server_version
    from backup_pipeline.core.postgres.clients import ClientTools

    # The client a backup of this server uses: pg_dump of one major compared with itself.
    with psycopg.connect(url) as conn:
        pg_dump = ClientTools.locate().for_server(*server_version(conn)).path("pg_dump")
    out = subprocess.run(
        [pg_dump, "--schema-only", "--no-owner", "--no-acl", f"--dbname={url}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        line
        for line in out.splitlines()
        if line.strip() and not line.startswith("--") and not line.startswith(("\\restrict", "\\unrestrict"))
    ]


@dataclass
class CliWorld:
    admin_url: str
    db_name: str
    bucket: str
    s3: object
    home: Path
    env: dict[str, str]
    work_dir: Path
    created_databases: list[str] = field(default_factory=list)

    @property
    def db_url(self) -> str:
        return self.url_of(self.db_name)

    def url_of(self, dbname: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + "/" + dbname

    def environment(self, env: dict[str, str | None] | None = None) -> dict[str, str]:
        """The world's environment; `env` adds to it (or, with None values, removes from it)."""
        full_env = dict(self.env)
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        return full_env

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        """`backup-db ARGS` in a subprocess; `env` adds to (or, with None values, removes from) the world's."""
        return subprocess.run(
            [str(CLI), *args],
            env=self.environment(env),
            cwd=self.work_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def call(self, *args: str, env: dict[str, str] | None = None, timeout: float | None = None):
        """`backup-db ARGS` in this process, with `run`'s environment and folder: see call_cli. (`timeout`, as
        run's, is not enforced here: pytest-timeout ends a test that hangs.)"""
        return call_cli(list(args), self.environment(env), self.work_dir)

    def call_json(self, *args: str, **kwargs):
        result = self.call(*args, "--json", **kwargs)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout), result

    def run_json(self, *args: str, **kwargs):
        result = self.run(*args, "--json", **kwargs)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout), result

    def bucket_keys(self) -> set[str]:
        keys = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys |= {item["Key"] for item in page.get("Contents", [])}
        return keys

    def database_names(self) -> set[str]:
        """Databases on the server that this world or a restore could have made or removed.

        The server is shared with other tests running at the same time, so their databases (and their
        verification scratch databases) are left out; restore's own scratch names are not.
        """
        return {name for name in database_names(self.admin_url) if name.startswith(OWN_DATABASE_PREFIXES)}

    def scratch_databases_left(self) -> set[str]:
        """Scratch databases this world's runs used (their logs name them) that are still on the server; other
        tests' scratch databases on the same server are never among them."""
        with self.instance() as instance:
            messages = [entry.user_message for run in instance.get_runs() for entry in instance.all_logs(run.run_id)]
        return still_there(self.admin_url, named_in("\n".join(messages)))

    def new_database_name(self, purpose: str) -> str:
        name = f"bpcli_{purpose}_{secrets.token_hex(3)}"
        self.created_databases.append(name)
        return name

    def create_database(self, purpose: str, seed_sql: str | None = None) -> str:
        name = self.new_database_name(purpose)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        if seed_sql:
            with psycopg.connect(self.url_of(name), autocommit=True) as conn:
                conn.execute(seed_sql)
        return name

    def instance(self):
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.home))

    def drop_databases(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in [self.db_name, *self.created_databases]:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def call_cli(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """`backup-db ARGV` through its entry point in this process, with exactly `env` as the environment and `cwd`
    as the current folder, its output and exit code captured as a subprocess's would be.

    For what the process boundary plays no part in (arguments, messages, exit codes, what a run does and
    records): it saves the Python start and Dagster import a `backup-db` process costs, and so does the run the
    command starts, which executes here too (run_here), to its end, before the command follows it. Verbs with
    `--no-wait` or `--timeout`, Ctrl-C and killed processes need real processes: use CliWorld.run for them.
    Signal handlers the command sets are put back afterwards.
    """
    from backup_pipeline.cli import runs
    from backup_pipeline.cli.main import main

    stdout, stderr = _CapturedStream(), _CapturedStream()
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    with pytest.MonkeyPatch.context() as patch:
        for key in set(os.environ) - set(env):
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        patch.chdir(cwd)
        patch.setattr(runs, "start_own_process", run_here)
        patch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again, as a new process would
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = main(argv)
        except SystemExit as stop:  # argparse's refusals
            code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
        finally:
            for number, handler in handlers.items():
                signal.signal(number, handler)
    return subprocess.CompletedProcess(["backup-db", *argv], code, stdout.text(), stderr.text())


def run_here(home: Path, spec) -> tuple[str, object]:
    """runs.start_own_process's run, executed in this process by the same code (cli/run_process.py) on the same
    instance, its output in the same log file; returns once the run has ended, as a finished process."""
    from backup_pipeline.cli import run_process
    from backup_pipeline.cli.follow import RunProcess
    from backup_pipeline.cli.runs import RUN_LOG_FOLDER

    run_id = str(uuid.uuid4())
    log_path = home / RUN_LOG_FOLDER / f"{run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("private_env", "partitions")}
    with pytest.MonkeyPatch.context() as patch, open(log_path, "w") as log:
        for key, value in spec.private_env.items():
            patch.setenv(key, value)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            code = run_process.main([run_id, json.dumps(public)])
    return run_id, RunProcess(_Ended(code), log_path)


@dataclass
class _Ended:
    """What follow() asks of a run's process, for a run that ran here and has ended."""

    returncode: int
    pid: int = field(default_factory=os.getpid)

    def poll(self) -> int:
        return self.returncode


class _CapturedStream(io.TextIOWrapper):
    """A text stream with a binary `buffer`, as sys.stdout has (`download` writes the archive's bytes there)."""

    def __init__(self):
        super().__init__(io.BytesIO(), encoding="utf-8", errors="replace", write_through=True)

    def text(self) -> str:
        self.flush()
        return self.buffer.getvalue().decode("utf-8", errors="replace")


def make_world(admin_url: str, moto_server, tmp_path: Path, seed_sql: str = SEED_SQL) -> CliWorld:
    db_name = f"bpcli_src_{secrets.token_hex(3)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
    with psycopg.connect(admin_url.rsplit("/", 1)[0] + "/" + db_name, autocommit=True) as conn:
        conn.execute(seed_sql)
    bucket = f"bp-cli-{secrets.token_hex(5)}"
    s3 = moto_server.client()
    s3.create_bucket(Bucket=bucket)
    home = new_dagster_home(tmp_path / "dagster_home")
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not OUR_VARS.match(k)}
    env.update(
        {
            "DATABASE_URL": admin_url.rsplit("/", 1)[0] + "/" + db_name,
            "BACKUP_S3_BUCKET": bucket,
            "BACKUP_S3_ENDPOINT_URL": moto_server.endpoint,
            "BACKUP_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "DAGSTER_HOME": str(home),
        }
    )
    return CliWorld(admin_url=admin_url, db_name=db_name, bucket=bucket, s3=s3, home=home, env=env, work_dir=work_dir)


def module_world(admin_url: str, moto_server, tmp_path_factory, name: str, **kwargs):
    """A module fixture's CliWorld (`yield from module_world(...)`), in a folder named `name`; the databases it
    made are dropped when the module is done."""
    world = make_world(admin_url, moto_server, tmp_path_factory.mktemp(name), **kwargs)
    yield world
    world.drop_databases()


def status_lines(stderr: str) -> list[str]:
    """The statuses a command printed, in order: ['queued', 'starting', 'running', 'completed']."""
    return re.findall(r"^\[\d+s\] Status: (\w+)", stderr, flags=re.MULTILINE)
