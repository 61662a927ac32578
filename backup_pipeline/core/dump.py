"""Dumping: pg_dump inside an exported snapshot, streamed, with exact row counts.

Row counts are taken in the same snapshot as the dump, on the connection that exported it, while
pg_dump runs, so they describe exactly the rows the dump holds. The custom format streams from pg_dump's
stdout; the directory format (parallel pg_dump) is streamed as a tar while pg_dump writes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from backup_pipeline.core.directory_archive import DirectoryTarStream
from backup_pipeline.core.dump_options import NEWER_METHODS_SINCE, DumpOptions
from backup_pipeline.core.errors import BackupError, ConfigurationError
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import database_size, server_version, table_row_counts
from backup_pipeline.core.postgres.clients import ClientTools, PgClient
from backup_pipeline.core.postgres.sessions import (
    cancel_backends,
    exported_snapshot,
    lock_waits,
    session_tag,
    sessions_named,
    tagged_sessions,
)
from backup_pipeline.core.privileges import database_properties, named_roles, role_definitions
from backup_pipeline.core.streams import StalledError, human_bytes

Log = Callable[[str], None]
# A bigger pipe lets pg_dump keep writing while the reader hashes or hands a part to the uploader.
PIPE_BYTES = 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# How often a wait on the row counts looks at what the counting session waits for.
LOCK_POLL_S = 0.5


@dataclass
class RunningDump:
    """A pg_dump in progress: read `stdout`, then call `finish()` to learn whether it succeeded."""

    stdout: object
    server_version: str
    pg_dump_version: str
    database_size_bytes: int
    encoding: str | None
    _process: subprocess.Popen = field(repr=False)
    _stderr: object = field(repr=False)
    _counts: dict = field(default_factory=dict, repr=False)
    _counting: threading.Thread | None = field(default=None, repr=False)
    # Read in the dump's snapshot (core/privileges/recorded.py): what the archive cannot hold, and the roles it
    # names.
    database_properties: dict = field(default_factory=dict)
    roles: dict = field(default_factory=dict)
    role_definitions: bytes = b""
    # For the watchdog: the database, the name pg_dump's sessions carry, the row-counting connection.
    _target: PostgresTarget | None = field(default=None, repr=False)
    _tag: str = field(default="", repr=False)
    _counting_conn: object = field(default=None, repr=False)
    _stall_s: float | None = field(default=None, repr=False)

    def finish(self) -> dict[str, int]:
        """Waits for pg_dump and the row counts; raises with pg_dump's own message when it failed."""
        code = self._process.wait()
        self._wait_for_counts()
        if code != 0:
            lines = self._stderr.text().strip().splitlines()
            # The first error names the cause ("could not write ...: No space left on device"); later lines are
            # its consequences ("a worker process died unexpectedly") or details.
            errors = [line for line in lines if "error:" in line]
            reason = (errors or lines or [f"exit code {code}"])[0 if errors else -1]
            if code < 0:
                reason = f"pg_dump was killed by signal {-code}"
            if "No space left on device" in reason:
                reason += (
                    f" (a directory-format dump is staged in {tempfile.gettempdir()}: free space there, or set TMPDIR "
                    "to a folder on a bigger disk)"
                )
            raise BackupError(f"pg_dump failed: {reason}")
        if "error" in self._counts:
            raise BackupError(f"counting rows in the dump's snapshot failed: {self._counts['error']}")
        return self._counts["tables"]

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop_stalled(self) -> str | None:
        """Stops a dump that moves no bytes: names the locks its sessions (pg_dump's and the row counting's)
        wait for, cancels their statements on the server (a backend waiting for a lock would otherwise wait on
        after pg_dump is gone, and queue everyone behind it), and ends pg_dump. Returns what they waited for."""
        waits: list[str] = []
        if self._target is not None:
            try:
                with self._target.connect() as monitor:
                    pids = [*sessions_named(monitor, self._tag), self._counting_pid()]
                    waits = lock_waits(monitor, pids)
                    cancel_backends(monitor, pids)
            except Exception:  # the server cannot be asked: pg_dump is stopped all the same
                pass
        self.cancel_counting()
        self.kill()
        return "; ".join(dict.fromkeys(waits)) or None

    def cancel_counting(self) -> None:
        """Cancels the row counting's statement, if one still runs (a failed dump's counts are of no use)."""
        if self._counting is not None and self._counting.is_alive() and self._counting_conn is not None:
            with contextlib.suppress(Exception):
                self._counting_conn.cancel()

    def _counting_pid(self) -> int | None:
        try:
            return self._counting_conn.info.backend_pid if self._counting_conn is not None else None
        except Exception:
            return None

    def _wait_for_counts(self) -> None:
        """Waits for the row counts, watched: a count that waits for a lock for the stall limit (a migration
        holding ACCESS EXCLUSIVE on a table) is cancelled and the backup fails naming the lock and its holder.
        A long count that is not waiting on a lock is work, and is waited for."""
        if self._counting is None:
            return
        self._counting.join(LOCK_POLL_S)
        if not self._counting.is_alive() or self._target is None or self._stall_s is None:
            self._counting.join()
            return
        try:
            monitor = self._target.connect()
        except BackupError:
            self._counting.join()
            return
        with monitor:
            waiting_since = None
            while self._counting.is_alive():
                waits = lock_waits(monitor, [self._counting_pid()])
                now = time.monotonic()
                waiting_since = (waiting_since or now) if waits else None
                if waiting_since is not None and now - waiting_since >= self._stall_s:
                    cancel_backends(monitor, [self._counting_pid()])
                    self.cancel_counting()
                    self._counting.join(10)
                    raise StalledError(
                        f"counting rows in the dump's snapshot stalled for {self._stall_s:g} s "
                        f"(BACKUP_STALL_SECONDS): it waited for {waits[0]}, so the backup was stopped and nothing "
                        "was stored. End or wait for that session, or raise BACKUP_STALL_SECONDS if such waits "
                        "are normal here"
                    )
                self._counting.join(LOCK_POLL_S)


@contextlib.contextmanager
def start_dump(
    target: PostgresTarget,
    tools: ClientTools,
    options: DumpOptions | None = None,
    log: Log = print,
    stall_seconds: float | None = None,
) -> Iterator[RunningDump]:
    """Starts pg_dump on `target` and yields it; the snapshot stays open until the block ends.

    `stall_seconds`: how long the row counts may wait for a lock before the dump is stopped (finish())."""
    options = options or DumpOptions()
    with exported_snapshot(target) as (snapshot, conn):
        major, server_text = server_version(conn)
        client = tools.for_server(major, server_text, target.needs_ssl)
        check_client_compresses(client, options)
        pg_dump_text = client.version
        size = database_size(conn)
        properties = database_properties(conn)
        roles = named_roles(conn, properties)
        definitions = role_definitions(conn, roles)
        log(
            f"dumping {target.describe()} (PostgreSQL {server_text}, {human_bytes(size)} on disk) with pg_dump "
            f"{client.describe()}"
        )
        # pg_dump's sessions carry a name of their own, so a watchdog can see what they wait for.
        tag = session_tag("pg_dump")
        argv = [
            client.path("pg_dump"),
            *options.pg_dump_args(client.major, pg_dump_text),
            f"--snapshot={snapshot}",
            f"--dbname={tagged_sessions(target, tag).client_conninfo()}",
        ]
        with target.child_env() as env, _staging(options) as folder:
            if folder is None:
                process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0)
                _widen_pipe(process.stdout)
                stdout = process.stdout
            else:
                argv.append(f"--file={folder}")
                process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                stdout = DirectoryTarStream(folder, process)
            stderr = StderrTail(process.stderr)
            dump = RunningDump(
                stdout=stdout,
                server_version=server_text,
                pg_dump_version=pg_dump_text,
                database_size_bytes=size,
                database_properties=properties,
                roles=roles,
                role_definitions=definitions,
                encoding=conn.info.parameter_status("server_encoding"),
                _process=process,
                _stderr=stderr,
                _target=target,
                _tag=tag,
                _counting_conn=conn,
                _stall_s=stall_seconds,
            )
            dump._counting = threading.Thread(target=_count_rows, args=(conn, dump._counts), daemon=True)
            dump._counting.start()
            try:
                yield dump
            finally:
                dump.kill()
                stdout.close()
                dump.cancel_counting()  # a dump that failed or was stopped: its counts are of no use
                dump._counting.join()


def check_client_compresses(client: PgClient, options: DumpOptions) -> None:
    """lz4 and zstd are build options of pg_dump: refuse before dumping when the chosen one lacks them."""
    method = options.compression.method
    if client.major >= NEWER_METHODS_SINCE and not client.supports_compression(method):
        raise ConfigurationError(
            f"BACKUP_COMPRESSION '{options.compression}' needs a pg_dump built with {method}, but pg_dump "
            f"{client.describe()} was built without it: use gzip:N (0 to 9) instead, or install a PostgreSQL client "
            f"built with {method} (the apt.postgresql.org and Debian packages are) and point BACKUP_PG_BIN_DIR at "
            "it. Nothing was dumped"
        )


class StderrTail:
    """The end of a child's stderr, read from a pipe in a thread: kept in memory, so the child's last words
    survive a full TMPDIR (a temporary file there would stay empty exactly when the disk is the problem)."""

    def __init__(self, pipe, limit: int = 64 * 1024):
        self._pipe, self._limit, self._data = pipe, limit, b""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._pipe:
            while chunk := self._pipe.read(8192):
                self._data = (self._data + chunk)[-self._limit :]

    def text(self) -> str:
        self._thread.join(timeout=5)
        return self._data.decode(errors="replace")


@contextlib.contextmanager
def _staging(options: DumpOptions) -> Iterator[Path | None]:
    """The folder a directory-format dump is written into (TMPDIR); None for the streamed custom format."""
    if options.format != "directory":
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="backup-dump-") as parent:
        yield Path(parent).resolve() / "archive"


def _widen_pipe(pipe) -> None:
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)


def _count_rows(conn, out: dict) -> None:
    try:
        out["tables"] = table_row_counts(conn)
    except Exception as error:  # reported by finish(), on the caller's thread
        out["error"] = str(error).splitlines()[0] if str(error) else type(error).__name__


def schema_sql(target: PostgresTarget, client: PgClient) -> bytes:
    """`pg_dump --schema-only --create` of `target`: every object, owners, privileges and the database's own
    settings, as SQL in the database's encoding (what `backup-db diff` compares a backup's schema with)."""
    argv = [client.path("pg_dump"), "--schema-only", "--create", f"--dbname={target.client_conninfo()}"]
    with target.child_env() as env, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        code = subprocess.run(argv, stdout=out, stderr=err, env=env, check=False).returncode
        err.seek(0)
        if code != 0:
            lines = [line for line in err.read().decode(errors="replace").splitlines() if line.strip()]
            errors = [line for line in lines if "error:" in line] or lines or [f"exit code {code}"]
            raise BackupError(f"pg_dump --schema-only of {target.describe()} failed: {errors[0]}")
        out.seek(0)
        return out.read()
