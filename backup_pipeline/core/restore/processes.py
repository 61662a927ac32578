"""pg_restore processes: started connected to the target or, for a server older than the client's sessions
allow, writing SQL into psql; registered while they run, so a stopped restore can end them; their errors read."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading

from backup_pipeline.core.errors import VerificationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import server_version
from backup_pipeline.core.postgres.clients import TRANSACTION_TIMEOUT_SINCE, PgClient
from backup_pipeline.core.streams import CHUNK_BYTES


def run_pg_restore(client, args: list[str], target: PostgresTarget, manifest: Manifest, watchdog=None) -> None:
    """pg_restore of an archive on disk (`args` name it) into `target`, waited for (by `watchdog`, if any)."""
    with target.child_env() as env, tempfile.TemporaryFile() as err:
        process = start_pg_restore(client, target, args, env, subprocess.DEVNULL, err)
        with running(target, process):
            code = watchdog.wait(process, manifest.name) if watchdog else process.wait()
        if code != 0:
            raise VerificationError(f"pg_restore of {manifest.name} failed: {error_text(err, code)}")


# The pg_restore processes at work, by the database they restore into: a stopped restore ends them.
_RUNNING: dict[str, set] = {}
_RUNNING_LOCK = threading.Lock()


@contextlib.contextmanager
def running(target: PostgresTarget, process):
    with _RUNNING_LOCK:
        _RUNNING.setdefault(target.dbname, set()).add(process)
    try:
        yield process
    except BaseException:
        process.terminate()  # interrupted (SIGINT, SIGTERM, the run's termination): pg_restore stops too
        raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.get(target.dbname, set()).discard(process)


def end_restores_into(dbname: str) -> None:
    """SIGTERM to every pg_restore (and psql) restoring into `dbname`: a stopped restore ends them."""
    with _RUNNING_LOCK:
        processes = list(_RUNNING.get(dbname, ()))
    for process in processes:
        process.terminate()


class ScriptClient:
    """A client whose pg_restore writes SQL for psql instead of connecting (see ScriptRestore)."""

    def __init__(self, client: PgClient):
        self.client = client
        self.version = client.version

    def path(self, tool: str) -> str:
        return self.client.path(tool)


def through_psql(client: PgClient, target: PostgresTarget) -> bool:
    """Whether this pg_restore must go through psql: 17 and newer into a server before 17."""
    if client.major < TRANSACTION_TIMEOUT_SINCE:
        return False
    with target.connect() as conn:
        return not client.restores_into(server_version(conn)[0])


def start_pg_restore(client, target: PostgresTarget, args: list[str], env, stdin, stderr):
    """pg_restore into `target`, connected itself, or as SQL through psql (a ScriptClient); `.stdin` takes
    the archive when `stdin` is PIPE, `.wait()` gives the exit code."""
    if isinstance(client, ScriptClient):
        return ScriptRestore(client.client, target, args, env, stdin, stderr)
    argv = [client.path("pg_restore"), *restore_args(target), *args]
    return subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr, env=env)


class ScriptRestore:
    """pg_restore writing the archive as SQL, without its `SET transaction_timeout`, into psql stopping at the
    first error (what --exit-on-error does for a direct restore)."""

    _SKIPPED = b"SET transaction_timeout = 0;\n"
    _HEADER_BYTES = 1024 * 1024  # the SET comes in the script's header, before any data

    def __init__(self, client: PgClient, target: PostgresTarget, args: list[str], env, stdin, stderr):
        self._psql = subprocess.Popen(
            [
                client.path("psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                f"--dbname={target.client_conninfo()}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
        self._restore = subprocess.Popen(
            [client.path("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error", "--file=-", *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
        self.stdin = self._restore.stdin
        self._relay = threading.Thread(target=self._copy, daemon=True)
        self._relay.start()

    def _copy(self) -> None:
        source, sink = self._restore.stdout, self._psql.stdin
        try:
            header = b""
            while len(header) < self._HEADER_BYTES and (chunk := source.read(CHUNK_BYTES)):
                header += chunk
            sink.write(header.replace(b"\n" + self._SKIPPED, b"\n"))
            while chunk := source.read(CHUNK_BYTES):
                sink.write(chunk)
        except BrokenPipeError:
            self._restore.kill()  # psql stopped at an error: its message is the one to show
        finally:
            with contextlib.suppress(BrokenPipeError):
                sink.close()
            source.close()

    def terminate(self) -> None:
        self._restore.terminate()
        self._psql.terminate()

    def wait(self, timeout: float | None = None) -> int:
        code = self._restore.wait(timeout)
        self._relay.join(timeout)
        psql_code = self._psql.wait(timeout)
        return psql_code or code

    def poll(self) -> int | None:
        if self._restore.poll() is None or self._psql.poll() is None:
            return None
        return self.wait()

    def kill(self) -> None:
        for process in (self._restore, self._psql):
            if process.poll() is None:
                process.kill()


def restore_args(target: PostgresTarget) -> list[str]:
    return ["--no-owner", "--no-acl", "--exit-on-error", f"--dbname={target.client_conninfo()}"]


def error_text(stderr_file, code: int) -> str:
    """PostgreSQL's ERROR line (with its DETAIL or HINT and the command it refused), not just pg_restore's last
    line, which is often only `Command was: ...`."""
    stderr_file.seek(0)
    lines = [ln.strip() for ln in stderr_file.read().decode(errors="replace").splitlines() if ln.strip()]
    first_error = next((i for i, line in enumerate(lines) if "ERROR:" in line), None)
    if first_error is None:
        first_error = next((i for i, line in enumerate(lines) if "error:" in line.lower()), None)
    if first_error is None:
        return lines[-1] if lines else f"exit code {code}"
    shown = [lines[first_error]]
    for line in lines[first_error + 1 : first_error + 4]:
        if not line.startswith(("DETAIL:", "HINT:", "Command was:", "LINE ")):
            break
        shown.append(line)
    return " ".join(shown)[:2000]
