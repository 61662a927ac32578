"""Restoring: a stored backup streamed through sha256 into pg_restore.

Shared by verification (into a scratch database) and by `restore_job`. A restore always goes into a scratch
database first, renamed to the user's name only once it matched its manifest: a new database appears under its
name only complete, and a database restored over is swapped with its new contents in one transaction, so a
failed or killed restore leaves the original as it was.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.directory_archive import unpack as unpack_archive
from backup_pipeline.core.disk_room import check_room_on_server
from backup_pipeline.core.encryption import check_can_decrypt, decrypting
from backup_pipeline.core.errors import BackupError, ConfigurationError, VerificationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupName
from backup_pipeline.core.owners import hold
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import server_identity, server_version, table_row_counts
from backup_pipeline.core.postgres.clients import TRANSACTION_TIMEOUT_SINCE, ClientTools, PgClient
from backup_pipeline.core.postgres.databases import (
    check_database_name,
    create_database,
    createdb_refusal,
    database_exists,
    disconnect_sessions,
    drop_database,
    rename_database,
    swap_databases,
)
from backup_pipeline.core.postgres.environment import client_tools_environment
from backup_pipeline.core.postgres.maintenance import admin_connection
from backup_pipeline.core.postgres.scratch import scratch_claims
from backup_pipeline.core.postgres.sessions import (
    cancel_backends,
    lock_waits,
    session_tag,
    sessions_named,
    tagged_sessions,
)
from backup_pipeline.core.privileges import (
    AppliedPrivileges,
    PrivilegeChoices,
    apply_database_properties,
    apply_script,
    check_roles,
    create_database_sql,
    create_saved_roles,
    privilege_script,
)
from backup_pipeline.core.replication import (
    KEEP_OLD,
    RECREATE_SLOTS,
    ReplicationState,
    check_replication,
    end_consumers,
    move_slots,
    removal_hint,
    replication_state,
)
from backup_pipeline.core.replication import check_choice as check_replication_choice
from backup_pipeline.core.storage.local import partial_path
from backup_pipeline.core.streams import (
    CHUNK_BYTES,
    HashingReader,
    StalledError,
    StallWatch,
    counted,
    human_bytes,
    run_watched,
)
from backup_pipeline.core.sweep import sweep_download_partials

Log = Callable[[str], None]
MAX_RESTORE_JOBS = 64
# What a restore must be told, word for word, before it creates or replaces a database.
RESTORE_CONFIRMATION = "RESTORE"
# What avoids CREATEDB, in the message of a role without it.
RESTORE_ELSEWHERE = ", or restore to a server where a role may (--target-url)"
RESTORE_STOPPED = "the restore was stopped"
# How often a waiting restore looks at what pg_restore's sessions do on the server.
WATCH_POLL_S = 0.5


@dataclass
class RestoreOutcome:
    manifest: Manifest
    database: str
    tables: dict[str, int]
    duration_s: float
    server_version: str = ""  # the target server's
    pg_restore_version: str = ""
    left_out: list[str] = field(default_factory=list)  # objects the target's role cannot create (TocFilter)
    # What was applied of the backup's owners, privileges and settings, what could not be, and what was left.
    privileges: AppliedPrivileges | None = None

    @property
    def upgrade(self) -> bool:
        """Whether the backup came from an older PostgreSQL major than the server it went into."""
        return bool(self.server_version) and _major(self.manifest.server_version) < _major(self.server_version)


def _major(version: str) -> int:
    return int(version.split(".")[0])


def restore_client(
    tools: ClientTools, manifest: Manifest, server: PostgresTarget | None = None, server_text: str | None = None
) -> PgClient:
    """The pg_restore for this backup (into `server`, of version `server_text`): at least as new as its
    pg_dump, able to decompress it and to restore into that server; chosen before anything is created, so a
    missing one changes nothing."""
    server_major = _major(server_text) if server_text else None
    needs_ssl = server.needs_ssl if server is not None else False
    return tools.for_archive(manifest.pg_dump_version, manifest.compression, manifest.name, server_major, needs_ssl)


def describe_versions(manifest: Manifest, client: PgClient, server_text: str) -> str:
    """One line on the versions at play, saying when the restore is an upgrade (or a downgrade)."""
    source, target = _major(manifest.server_version), _major(server_text)
    line = (
        f"backup of PostgreSQL {manifest.server_version} (pg_dump {manifest.pg_dump_version}) into PostgreSQL "
        f"{server_text} with pg_restore {client.describe()}"
    )
    if source < target:
        return f"{line}: an upgrade from PostgreSQL {source} to {target}"
    if source > target:
        return (
            f"{line}: a downgrade from PostgreSQL {source} to {target}, which fails if the backup uses anything "
            f"PostgreSQL {target} lacks"
        )
    return line


def checked_manifest(catalog: BackupCatalog, name: BackupName) -> Manifest:
    """The manifest of a complete backup whose stored size matches it; refuses anything else, clearly."""
    entry = catalog.find(name)
    manifest = catalog.manifest(name)
    check_can_decrypt(manifest.encryption, catalog.encryption, str(name))
    if entry.size_bytes != manifest.size_bytes:
        raise VerificationError(
            f"{name} is damaged: the stored dump is {entry.size_bytes} bytes but its manifest says "
            f"{manifest.size_bytes} (truncated or replaced); restore another backup"
        )
    return manifest


def restore_into(
    catalog: BackupCatalog,
    manifest: Manifest,
    target: PostgresTarget,
    tools: ClientTools | PgClient,
    log: Log = print,
    jobs: int = 1,
    schema_only: bool = False,
    schema_out: list[str] | None = None,
    stall_seconds: float | None = None,
) -> list[str]:
    """pg_restore the backup into the existing, empty database `target`; the checksum must match.

    Owners and privileges are left out (--no-owner --no-acl): a restore applies them afterwards, one statement
    at a time (core/privileges.py). `schema_only`: tables, indexes, constraints, functions and the rest, without
    rows (`backup-db diff`). `schema_out`: gets the archive's schema as SQL (owners and ACLs included, without
    what was left out), read from its table of contents.
    Returns what was left out of the archive's table of contents because the target's role cannot create it
    (see plan_restore), e.g. ["EVENT TRIGGER provider_ddl_audit"]; anything else that fails stops the restore.
    `stall_seconds`: the watchdog's limit (BACKUP_STALL_SECONDS), None for none: a download that sends no bytes,
    or a pg_restore that takes none while its sessions do no work (a lock wait among them), is stopped that long
    after, its statements cancelled on the server, and the restore fails naming what it waited for.
    """
    tools = tools if isinstance(tools, PgClient) else restore_client(tools, manifest)
    watchdog = RestoreWatchdog(target, stall_seconds) if stall_seconds else None
    with tempfile.TemporaryDirectory(prefix="backup-toc-") as folder:
        toc = TocFilter(TargetRole.of(target), tools, Path(folder))
        extra = ["--schema-only"] if schema_only else []
        _restore_into(
            catalog,
            manifest,
            watchdog.target if watchdog else target,
            tools,
            log,
            jobs,
            extra,
            toc,
            schema_out,
            watchdog,
        )
    return toc.left_out


# Table-of-contents entries (as `pg_restore --list` names them) that only a superuser can create. A restore as
# another role leaves them out, names them, and stops at the first error in anything else.
SUPERUSER_ONLY = ("EVENT TRIGGER",)
# Never restored anywhere: a subscription would connect to its publisher from the copy (a scratch database or
# a restore), and PostgreSQL refuses to drop a database that has one.
NEVER_RESTORED = ("SUBSCRIPTION TABLE", "SUBSCRIPTION")
_KNOWN_KINDS = (
    *NEVER_RESTORED,
    "PUBLICATION TABLES IN SCHEMA",
    "PUBLICATION TABLE",
    "PUBLICATION",
    "EVENT TRIGGER",
    "EXTENSION",
    "COMMENT",
    "SECURITY LABEL",
)
_TOC_ENTRY = re.compile(r"^\d+; \d+ \d+ (?P<rest>.*)$")


@dataclass(frozen=True)
class TargetRole:
    """What the role a restore connects as may create on its server."""

    name: str
    superuser: bool
    untrusted_extensions: frozenset[str]  # extensions only a superuser can create there

    @classmethod
    def of(cls, target: PostgresTarget) -> TargetRole:
        with target.connect() as conn:
            name, superuser = conn.execute(
                "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            untrusted = conn.execute(
                "SELECT DISTINCT name FROM pg_available_extension_versions WHERE superuser AND NOT trusted"
            ).fetchall()
        return cls(name, bool(superuser), frozenset(row[0] for row in untrusted))


def _entry_kind(line: str) -> tuple[str, list[str]] | None:
    """(kind, the fields after it: schema, name..., owner) of a `pg_restore --list` line of a kind we judge."""
    match = _TOC_ENTRY.match(line)
    if match is None:
        return None
    rest = match["rest"]
    for kind in _KNOWN_KINDS:
        if rest.startswith(kind + " "):
            return kind, rest[len(kind) + 1 :].split()
    return None


def filter_table_of_contents(toc: str, role: TargetRole) -> tuple[str, list[str]]:
    """The `--use-list` text without what `role` cannot create, and those objects named (e.g.
    `EVENT TRIGGER provider_ddl_audit`, `COMMENT ON EXTENSION plpython3u`).

    Left out: subscriptions always; for a role that is not a superuser also event triggers, extensions only a
    superuser may create (untrusted ones such as plpython3u, or pg_stat_statements), publications FOR ALL TABLES
    or FOR TABLES IN SCHEMA (the table of contents tells them by their lack of single-table members, so an
    empty publication is left out too), and comments on any of those.
    """
    entries = [(line, _entry_kind(line)) for line in toc.splitlines()]
    # PUBLICATION TABLE fields: schema, publication, table, owner.
    with_tables = {
        fields[1] for _, entry in entries if entry and entry[0] == "PUBLICATION TABLE" for fields in [entry[1]]
    }
    kept, left_out, left_out_objects = [], [], set()
    for line, entry in entries:
        if entry is None:
            kept.append(line)
            continue
        kind, fields = entry
        name = fields[1] if len(fields) > 1 else ""  # fields: schema ('-' for none), name, owner
        if kind in NEVER_RESTORED or (not role.superuser and _needs_superuser(kind, name, role, with_tables)):
            if kind != "PUBLICATION TABLES IN SCHEMA":  # a part of its publication, named once as that
                left_out.append(f"{kind} {name}")
                left_out_objects.add(f"{kind} {name}")
            continue
        if kind in ("COMMENT", "SECURITY LABEL"):
            on = " ".join(fields[1:])  # e.g. `EXTENSION plpython3u` or `EVENT TRIGGER audit <owner>`
            if any(on == obj or on.startswith(obj + " ") for obj in left_out_objects):
                left_out.append(f"{kind} ON {on.split(' ' + fields[-1])[0] if len(fields) > 3 else on}")
                continue
        kept.append(line)
    return "\n".join(kept) + "\n", left_out


def _needs_superuser(kind: str, name: str, role: TargetRole, with_tables: set[str]) -> bool:
    if kind in SUPERUSER_ONLY or kind == "PUBLICATION TABLES IN SCHEMA":
        return True
    if kind == "EXTENSION":
        return name in role.untrusted_extensions
    return kind == "PUBLICATION" and name not in with_tables


@dataclass
class TocFilter:
    """Per restore: reads the archive's table of contents and writes the `--use-list` file without what the
    target's role cannot create; `left_out` names those objects."""

    role: TargetRole
    client: object
    folder: Path
    left_out: list[str] = field(default_factory=list)

    def args_for(self, archive: str | None = None, stream=None) -> list[str]:
        """pg_restore's `--use-list` for the archive at `archive`, or read from the start of `stream` (a custom-
        format dump's table of contents is at its head); [] when nothing is left out, or when the table of
        contents cannot be read (the restore itself then says what is wrong with the archive)."""
        toc = _list_archive(self.client, archive, stream)
        if toc is None:
            return []
        kept, self.left_out = filter_table_of_contents(toc, self.role)
        if not self.left_out:
            return []
        path = self.folder / "restore.list"
        path.write_text(kept)
        return [f"--use-list={path}"]

    def report(self, log: Log) -> None:
        if self.left_out:
            log(
                f"left out of the restore {counted(len(self.left_out), 'object')} that role {self.role.name} "
                f"{'must never restore' if self.role.superuser else 'cannot create (not a superuser)'}: "
                f"{', '.join(self.left_out)}"
            )


def _list_archive(client, archive: str | None, stream) -> str | None:
    argv = [client.path("pg_restore"), "--list", *([archive] if archive else [])]
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stream is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=client_tools_environment(),
        )
        feeder = None
        if stream is not None:
            feeder = threading.Thread(target=_feed_until_closed, args=(stream, process.stdin), daemon=True)
            feeder.start()
        toc = process.stdout.read().decode(errors="replace")
        code = process.wait()
        if feeder is not None:
            feeder.join()
    return toc if code == 0 else None


def _feed_until_closed(source, sink) -> None:
    """Copies `source` into `sink` until either ends (pg_restore --list stops reading after the table of contents)."""
    try:
        while chunk := source.read(CHUNK_BYTES):
            sink.write(chunk)
    except Exception:  # pg_restore stopped reading, or the object could not be read: the restore itself says which
        pass
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            sink.close()


def _restore_into(
    catalog,
    manifest,
    target,
    tools,
    log,
    jobs: int,
    extra: list[str],
    toc: TocFilter,
    schema_out=None,
    watchdog: RestoreWatchdog | None = None,
) -> None:
    if _through_psql(tools, target):
        log(
            f"pg_restore {tools.version} cannot talk to this server directly (it sets transaction_timeout, which "
            "servers before 17 reject): restoring its SQL through psql, in one stream"
        )
        tools = _ScriptClient(tools)
        jobs = 1
    if manifest.format == "directory":
        _restore_directory(
            catalog, manifest, target, tools, log, max(jobs, manifest.dump_jobs), extra, toc, schema_out, watchdog
        )
        return
    if jobs > 1:
        _restore_parallel(catalog, manifest, target, tools, log, jobs, extra, toc, schema_out, watchdog)
        return
    with catalog.storage.open_stream(manifest.key, manifest.size_bytes) as body:
        extra = [*extra, *toc.args_for(stream=decrypting(body, manifest.encryption, catalog.encryption, manifest.name))]
    toc.report(log)
    total = max(manifest.size_bytes, 1)
    with (
        catalog.storage.open_stream(manifest.key, manifest.size_bytes) as body,
        target.child_env() as env,
        tempfile.TemporaryFile() as err,
    ):
        watch = watchdog.stream_watch("pg_restore") if watchdog else None
        reader = HashingReader(
            body, on_progress=lambda n: log(f"restored {n * 100 // total}% ({human_bytes(n)})"), watch=watch
        )
        plain = decrypting(reader, manifest.encryption, catalog.encryption, manifest.name)
        process = _start_pg_restore(tools, target, extra, env, subprocess.PIPE, err)
        with _running(target, process):
            try:
                if watchdog is None:
                    _feed(plain, process.stdin)
                else:
                    watchdog.run(lambda: _feed(plain, process.stdin, lambda: watch.stalled), watch, process, body)
            finally:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.close()
                code = watchdog.wait(process, manifest.name) if watchdog else process.wait()
        _check_checksum(reader.sha256, manifest)
        if code != 0:
            raise VerificationError(f"pg_restore of {manifest.name} failed: {_error_text(err, code)}")
    if schema_out is not None:  # read again from the start of the object: the table of contents only
        schema_out.append(_streamed_schema_sql(catalog, manifest, tools, _list_args(extra)))


def _list_args(extra: list[str]) -> list[str]:
    return [arg for arg in extra if arg.startswith("--use-list=")]


def _schema_sql(client, args: list[str], archive: str | None = None, stdin=None) -> subprocess.Popen:
    """pg_restore writing the archive's schema as SQL to its stdout (it reads only the table of contents)."""
    client = client.client if isinstance(client, _ScriptClient) else client
    argv = [client.path("pg_restore"), "--schema-only", "--file=-", *args, *([archive] if archive else [])]
    return subprocess.Popen(
        argv,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=client_tools_environment(),
    )


def _local_schema_sql(client, args: list[str], archive: str, manifest: Manifest) -> str:
    process = _schema_sql(client, args, archive)
    out, err = process.communicate()
    if process.returncode != 0:
        raise VerificationError(f"pg_restore could not list {manifest.name}'s schema: {err.decode().strip()[-300:]}")
    return out.decode(errors="replace")


def _streamed_schema_sql(catalog: BackupCatalog, manifest: Manifest, client, args: list[str]) -> str:
    """The schema of a custom-format archive as SQL, from the start of the stored object only: its table of
    contents comes before the data, and pg_restore stops reading once it has it."""
    process = _schema_sql(client, args, stdin=subprocess.PIPE)
    out: list[bytes] = []
    reading = threading.Thread(target=lambda: out.append(process.stdout.read()), daemon=True)
    reading.start()
    with catalog.storage.open_stream(manifest.key, manifest.size_bytes) as body:
        plain = decrypting(body, manifest.encryption, catalog.encryption, manifest.name)
        try:
            while chunk := plain.read(CHUNK_BYTES):
                process.stdin.write(chunk)
        except BrokenPipeError:
            pass  # pg_restore has the table of contents: the rows are not needed
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
    reading.join()
    err = process.stderr.read()
    if process.wait() != 0:
        raise VerificationError(f"pg_restore could not list {manifest.name}'s schema: {err.decode().strip()[-300:]}")
    return out[0].decode(errors="replace") if out else ""


def archive_schema_sql(catalog: BackupCatalog, manifest: Manifest, client: PgClient) -> bytes:
    """The backup's schema as `pg_restore --schema-only --create --file=-` prints it: every object, owners and
    privileges as the archive holds them, with the database's own settings; no server is involved. The stored
    bytes pass through sha256 (and decryption) on the way, and a damaged backup is refused."""
    args = [client.path("pg_restore"), "--schema-only", "--create", "--file=-"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        if manifest.format == "directory":
            with tempfile.TemporaryDirectory(prefix="backup-schema-") as staging:
                folder = _unpack_checked(catalog, manifest, staging)
                code = subprocess.run([*args, "--format=directory", folder], stdout=out, stderr=err, check=False)
                code = code.returncode
        else:
            with catalog.storage.open_stream(manifest.key, manifest.size_bytes) as body:
                reader = HashingReader(body)
                plain = decrypting(reader, manifest.encryption, catalog.encryption, manifest.name)
                process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=out, stderr=err)
                try:
                    _feed(plain, process.stdin)
                finally:
                    with contextlib.suppress(BrokenPipeError):
                        process.stdin.close()
                    code = process.wait()
            _check_checksum(reader.sha256, manifest)
        if code != 0:
            raise VerificationError(f"pg_restore --schema-only of {manifest.name} failed: {_error_text(err, code)}")
        out.seek(0)
        return out.read()


def _unpack_checked(catalog: BackupCatalog, manifest: Manifest, staging: str, log: Log | None = None) -> str:
    """A directory-format backup unpacked into `staging`, its sha256 checked; returns the archive folder."""
    folder = os.path.join(staging, "archive")
    with catalog.storage.open_stream(manifest.key, manifest.size_bytes) as body:
        on_progress = (lambda n: log(f"downloaded {human_bytes(n)}")) if log else None
        reader = HashingReader(body, on_progress=on_progress)
        plain = decrypting(reader, manifest.encryption, catalog.encryption, manifest.name)
        try:
            unpack_archive(plain, folder)
        except (tarfile.TarError, ValueError) as error:
            while reader.read(CHUNK_BYTES):  # a damaged object: say so by its checksum when it differs
                pass
            _check_checksum(reader.sha256, manifest)
            raise VerificationError(f"{manifest.name} is not a readable directory-format archive: {error}") from None
        except OSError as error:
            raise BackupError(
                f"cannot unpack {manifest.name} for restoring in {staging}: {error.strerror}. Free space there "
                "or point TMPDIR at a larger disk"
            ) from None
    _check_checksum(reader.sha256, manifest)
    return folder


def _restore_parallel(
    catalog,
    manifest,
    target,
    tools,
    log,
    jobs: int,
    extra: list[str],
    toc: TocFilter,
    schema_out=None,
    watchdog: RestoreWatchdog | None = None,
) -> None:
    # pg_restore -j needs a seekable file: download (checking the hash on the way), then restore.
    # Unbuffered, so a full disk surfaces in _stage and closing the file never retries a failed write.
    with tempfile.NamedTemporaryFile(prefix="backup-restore-", suffix=".dump", buffering=0) as staged:
        with catalog.storage.open_stream(manifest.key, manifest.size_bytes) as body:
            watch = watchdog.stream_watch("staging") if watchdog else None
            reader = HashingReader(body, on_progress=lambda n: log(f"downloaded {human_bytes(n)}"), watch=watch)
            plain = decrypting(reader, manifest.encryption, catalog.encryption, manifest.name)
            if watchdog is None:
                _stage(plain, staged, manifest.name)
            else:
                watchdog.run(lambda: _stage(plain, staged, manifest.name), watch, None, body)
        _check_checksum(reader.sha256, manifest)
        extra = [*extra, *toc.args_for(staged.name)]
        toc.report(log)
        _run_pg_restore(tools, [*extra, f"--jobs={jobs}", staged.name], target, manifest, watchdog)
        if schema_out is not None:
            schema_out.append(_local_schema_sql(tools, _list_args(extra), staged.name, manifest))


def _restore_directory(
    catalog,
    manifest,
    target,
    tools,
    log,
    jobs: int,
    extra: list[str],
    toc: TocFilter,
    schema_out=None,
    watchdog: RestoreWatchdog | None = None,
) -> None:
    # A directory-format backup is a tar of pg_dump's folder: unpack it (checking the hash on the way), then
    # pg_restore the folder with `jobs` in parallel.
    with tempfile.TemporaryDirectory(prefix="backup-restore-") as staging:
        folder = _unpack_checked(catalog, manifest, staging, log)
        extra = [*extra, *toc.args_for(folder)]
        toc.report(log)
        args = [*extra, "--format=directory", *([f"--jobs={jobs}"] if jobs > 1 else []), folder]
        _run_pg_restore(tools, args, target, manifest, watchdog)
        if schema_out is not None:
            schema_out.append(_local_schema_sql(tools, _list_args(extra), folder, manifest))


def _run_pg_restore(
    client, args: list[str], target: PostgresTarget, manifest: Manifest, watchdog: RestoreWatchdog | None = None
) -> None:
    with target.child_env() as env, tempfile.TemporaryFile() as err:
        process = _start_pg_restore(client, target, args, env, subprocess.DEVNULL, err)
        with _running(target, process):
            code = watchdog.wait(process, manifest.name) if watchdog else process.wait()
        if code != 0:
            raise VerificationError(f"pg_restore of {manifest.name} failed: {_error_text(err, code)}")


# The pg_restore processes at work, by the database they restore into: a stopped restore ends them.
_RUNNING: dict[str, set] = {}
_RUNNING_LOCK = threading.Lock()


@contextlib.contextmanager
def _running(target: PostgresTarget, process):
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


def _end_restores_into(dbname: str) -> None:
    """SIGTERM to every pg_restore (and psql) restoring into `dbname`: a stopped restore ends them."""
    with _RUNNING_LOCK:
        processes = list(_RUNNING.get(dbname, ()))
    for process in processes:
        process.terminate()


class _ScriptClient:
    """A client whose pg_restore writes SQL for psql instead of connecting (see _ScriptRestore)."""

    def __init__(self, client: PgClient):
        self.client = client
        self.version = client.version

    def path(self, tool: str) -> str:
        return self.client.path(tool)


def _through_psql(client: PgClient, target: PostgresTarget) -> bool:
    """Whether this pg_restore must go through psql: 17 and newer into a server before 17."""
    if client.major < TRANSACTION_TIMEOUT_SINCE:
        return False
    with target.connect() as conn:
        return not client.restores_into(server_version(conn)[0])


def _start_pg_restore(client, target: PostgresTarget, args: list[str], env, stdin, stderr):
    """pg_restore into `target`, connected itself, or as SQL through psql (a _ScriptClient); `.stdin` takes
    the archive when `stdin` is PIPE, `.wait()` gives the exit code."""
    if isinstance(client, _ScriptClient):
        return _ScriptRestore(client.client, target, args, env, stdin, stderr)
    argv = [client.path("pg_restore"), *_restore_args(target), *args]
    return subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr, env=env)


class _ScriptRestore:
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
                f"--dbname={target.conninfo_without_password()}",
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


def _stage(source, out, name: str) -> None:
    while chunk := source.read(CHUNK_BYTES):
        view = memoryview(chunk)
        while view:
            try:
                written = out.write(view)
            except OSError as error:
                raise BackupError(
                    f"cannot stage {name} for a parallel restore in {os.path.dirname(out.name)}: {error.strerror}. "
                    "Free space there, point TMPDIR at a larger disk, or restore with --jobs 1 (it streams and "
                    "stages nothing)"
                ) from None
            view = view[written:]


def download_to(catalog: BackupCatalog, manifest: Manifest, destination: str, log: Log = print, sink=None) -> int:
    """Writes the backup as pg_restore reads it: a dump file (custom format) or a folder (directory format).

    Streamed, never held in memory: the stored bytes pass through sha256 (and decryption) into a partial file
    beside `destination`, renamed only once the checksum matched, so a damaged backup leaves nothing behind.
    `sink`: a binary stream to write a custom-format dump to instead (stdout). Returns the bytes written.
    """
    with catalog.storage.open_stream(manifest.key, manifest.size_bytes) as body:
        total = human_bytes(manifest.size_bytes)
        reader = HashingReader(body, on_progress=lambda n: log(f"downloaded {human_bytes(n)} of {total}"))
        plain = decrypting(reader, manifest.encryption, catalog.encryption, manifest.name)
        if sink is not None:
            return _copy_checked(plain, sink, reader, manifest)
        final = os.path.abspath(destination)
        for left in sweep_download_partials(final):
            log(f"removed {left}, a partial download a killed process left behind")
        partial = str(partial_path(Path(final)))
        try:
            if manifest.format == "directory":
                try:
                    unpack_archive(plain, partial)
                except (tarfile.TarError, ValueError) as error:
                    while reader.read(CHUNK_BYTES):
                        pass
                    _check_checksum(reader.sha256, manifest)
                    raise VerificationError(
                        f"{manifest.name} is not a readable directory-format archive: {error}"
                    ) from None
                written = sum(f.stat().st_size for f in Path(partial).rglob("*") if f.is_file())
            else:
                with open(partial, "wb") as out:
                    hold(out.fileno())  # a sweep leaves it alone while this process writes it
                    written = _copy(plain, out, manifest.name, os.path.dirname(final))
            _check_checksum(reader.sha256, manifest)
            if manifest.format == "directory" and os.path.isdir(final):
                shutil.rmtree(final)  # --force: the folder is replaced only once the new one is complete
            os.replace(partial, final)
        finally:
            if os.path.isdir(partial):
                shutil.rmtree(partial, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial)
    return written


# What a stream (stdout) gets only once the sha256 matched: a damaged backup never reaches a pipe whole, so a
# pg_restore reading it meets the end of its input early and fails instead of restoring damaged data.
HELD_BACK_BYTES = 64 * 1024


def _copy_checked(source, out, reader: HashingReader, manifest: Manifest) -> int:
    """Copies all but the last HELD_BACK_BYTES, checks the checksum, and only then writes the rest."""
    held = bytearray()
    written = 0
    while chunk := source.read(CHUNK_BYTES):
        held += chunk
        if len(held) > HELD_BACK_BYTES:
            ready = len(held) - HELD_BACK_BYTES
            written += _write(out, held[:ready], manifest.name)
            del held[:ready]
    try:
        _check_checksum(reader.sha256, manifest)
    except VerificationError as error:
        raise VerificationError(
            f"{error}. Its last {human_bytes(len(held))} were held back, so whatever read the output got an "
            "incomplete archive (a pg_restore reading it fails)"
        ) from None
    return written + _write(out, held, manifest.name)


def _write(out, data, name: str) -> int:
    try:
        out.write(data)
    except OSError as error:
        raise BackupError(f"cannot write {name} to the output: {error.strerror}") from None
    return len(data)


def _copy(source, out, name: str, where: str) -> int:
    written = 0
    while chunk := source.read(CHUNK_BYTES):
        try:
            out.write(chunk)
        except OSError as error:
            raise BackupError(f"cannot write {name} to {where}: {error.strerror}") from None
        written += len(chunk)
    return written


def _restore_args(target: PostgresTarget) -> list[str]:
    return ["--no-owner", "--no-acl", "--exit-on-error", f"--dbname={target.conninfo_without_password()}"]


def _feed(reader, sink, stopped=lambda: False) -> None:
    """Copies the object into pg_restore; if pg_restore stops early, reads on so the hash is complete (unless
    a watchdog `stopped` the restore: then there is nothing to complete)."""
    sink_open = True
    while not (not sink_open and stopped()) and (chunk := reader.read(CHUNK_BYTES)):
        if sink_open:
            try:
                sink.write(chunk)
            except BrokenPipeError:
                sink_open = False


class RestoreWatchdog:
    """The stall watchdog of one restore (BACKUP_STALL_SECONDS), shared by its streamed and staged forms.

    pg_restore's sessions carry a name of their own (`target`), so the server can be asked what they do. A
    restore makes progress while bytes move or while one of its sessions works (an index build takes no bytes);
    it has stalled when the download sends nothing for the limit, or when pg_restore takes nothing and its
    sessions do no work (waiting for a lock is no work) for the limit. Then its statements are cancelled on the
    server, pg_restore is stopped, the download is ended, and the error names what it waited for.
    """

    def __init__(self, target: PostgresTarget, limit_s: float):
        self.tag = session_tag("pg_restore")
        self.target = tagged_sessions(target, self.tag)  # for pg_restore (and psql)
        self._monitor_target = target  # the watchdog's own sessions are not among those it watches
        self.limit_s = limit_s

    def stream_watch(self, sink: str) -> StallWatch:
        return StallWatch(self.limit_s, source="download", sink=sink, outcome=RESTORE_STOPPED)

    def run(self, work, watch: StallWatch, process, body) -> None:
        """`work` (bytes from `body` into `process` or a staging file), stopped on a stall."""
        run_watched(
            work,
            watch,
            stop=lambda: self._stop(process, body, watch.error()),
            poll_s=WATCH_POLL_S,
            still_working=lambda side: side == "pg_restore" and self._sessions_working(),
            # A stalled download may hang in its socket until the client's read timeout: not waited for.
            settle_s=2 * WATCH_POLL_S,
        )

    def wait(self, process, name: str) -> int:
        """pg_restore's exit code, waited for while its sessions are watched: one waiting for a lock for the
        limit is cancelled, pg_restore stopped, and StalledError raised naming the lock and its holder."""
        waiting_since = None
        monitor = None
        try:
            while process.poll() is None:
                try:
                    monitor = monitor or self._monitor_target.connect()
                    waits = lock_waits(monitor, sessions_named(monitor, self.tag))
                except Exception:  # the server cannot be asked now: pg_restore is waited for all the same
                    waits = []
                now = time.monotonic()
                waiting_since = (waiting_since or now) if waits else None
                if waiting_since is not None and now - waiting_since >= self.limit_s:
                    self._stop(process, None, None, monitor)
                    raise StalledError(
                        f"pg_restore of {name} stalled for {self.limit_s:g} s (BACKUP_STALL_SECONDS): it waited for "
                        f"{waits[0]}, so {RESTORE_STOPPED}. End or wait for that session, or raise "
                        "BACKUP_STALL_SECONDS if such waits are normal here"
                    )
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(WATCH_POLL_S)
            return process.wait()
        finally:
            if monitor is not None:
                monitor.close()

    def _sessions_working(self) -> bool:
        """Whether one of pg_restore's sessions runs a statement that is not waiting for a lock; True when the
        server cannot be asked (no restore is stopped on a guess)."""
        try:
            with self._monitor_target.connect() as monitor:
                rows = monitor.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND state = 'active' "
                    "AND wait_event_type IS DISTINCT FROM 'Lock'",
                    (self.tag,),
                ).fetchall()
        except Exception:
            return True
        return bool(rows)

    def _stop(self, process, body, error, monitor=None) -> str | None:
        """Cancels pg_restore's statements on the server, stops it, ends the download; what it waited for."""
        waits: list[str] = []
        try:
            own = monitor is None
            monitor = monitor or self._monitor_target.connect()
            try:
                pids = sessions_named(monitor, self.tag)
                waits = lock_waits(monitor, pids)
                cancel_backends(monitor, pids)
            finally:
                if own:
                    monitor.close()
        except Exception:  # the server cannot be asked: pg_restore is stopped all the same
            pass
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()
        if body is not None and error is not None and hasattr(body, "abort"):
            body.abort(error)
        return "; ".join(dict.fromkeys(waits)) or None


def _check_checksum(actual: str, manifest: Manifest) -> None:
    if actual != manifest.sha256:
        raise VerificationError(
            f"{manifest.name} is corrupted: its sha256 is {actual} but the manifest recorded {manifest.sha256}; "
            "restore another backup"
        )


def _error_text(stderr_file, code: int) -> str:
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


def compare_row_counts(expected: dict[str, int], actual: dict[str, int], name: str) -> None:
    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        if want != got:
            problems.append(
                f"{table}: manifest {want if want is not None else 'absent'}, "
                f"restored {got if got is not None else 'absent'}"
            )
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise VerificationError(f"{name} restored to different contents than were dumped: {shown}")


def check_restore_jobs(jobs: int) -> int:
    if not 1 <= jobs <= MAX_RESTORE_JOBS:
        raise ConfigurationError(
            f"jobs (--jobs) must be from 1 to {MAX_RESTORE_JOBS}, got {jobs}: each job is one connection to the server"
        )
    return jobs


def note_lost_database(server: PostgresTarget, target_db: str, exists: bool, log: Log) -> None:
    """Says so when the database being restored is the very one the URL names and it is gone (a DROP DATABASE)."""
    if not exists and target_db == server.dbname:
        log(f"database {target_db} does not exist on {server.server} (dropped?): it is restored as a new database")


def check_restore_target(admin, server: PostgresTarget, target_db: str, replace: bool) -> bool:
    """Whether `target_db` exists; refuses a new restore over an existing database, or --replace of a missing one."""
    exists = database_exists(admin, target_db)
    if exists and not replace:
        raise ConfigurationError(
            f"database '{target_db}' already exists on {server.describe()}: choose a new name, or pass "
            "--replace to restore over it"
        )
    if replace and not exists:
        raise ConfigurationError(
            f"--replace was given but database '{target_db}' does not exist on {server.describe()}"
        )
    return exists


def restore_to_database(
    catalog: BackupCatalog,
    name: BackupName,
    server: PostgresTarget,
    target_db: str,
    replace: bool = False,
    jobs: int = 1,
    tools: ClientTools | None = None,
    log: Log = print,
    privileges: PrivilegeChoices | None = None,
    replication: str | None = None,
    stall_seconds: float | None = None,
    source: PostgresTarget | None = None,
    from_other_source: bool = False,
    should_stop: StopCheck | None = None,
) -> RestoreOutcome:
    """Restores `name` into `target_db` on `server`'s server and checks its row counts.

    Without `replace` the database must not exist. With it, the backup is restored beside the existing
    database and the names are swapped only once the restore matched its manifest. The original database's
    encoding and locale, owners, privileges and settings are applied unless `privileges` says otherwise;
    `replication` says what becomes of the replaced database's logical replication state (core/replication.py).

    The backup must be of the database it goes over (with `replace`) or of `source`, the configured database
    (a new one), unless `from_other_source`. `should_stop` is asked while pg_restore runs and once more right
    before the swap: when it gives a reason, the work database is dropped (ending pg_restore) and RestoreStopped
    raised, the target untouched. SIGINT and SIGTERM stop it the same way up to the swap; from the swap on, the
    restore finishes and says so.
    """
    tools = tools or ClientTools.locate()
    privileges = privileges or PrivilegeChoices()
    replication = check_replication_choice(replication)
    check_database_name(target_db)
    check_restore_jobs(jobs)
    started = time.monotonic()
    manifest = checked_manifest(catalog, name)
    restore_client(tools, manifest)  # refuses before connecting when no pg_restore can read it
    applied = AppliedPrivileges()
    with scratch_claims(server, outside=target_db) as claim:
        admin = admin_connection(server, outside=target_db, log=log)
        try:
            exists = check_restore_target(admin, server, target_db, replace)
            note_lost_database(server, target_db, exists, log)
            check_backup_source(admin, manifest, server, target_db, exists, source, from_other_source, log)
            state = _replication_before(admin, server, target_db, replication) if exists else ReplicationState()
            check_backup_roles(admin, catalog, manifest, privileges, server, log, applied)
            _stop_if_asked(should_stop, target_db)
            server_major, server_text = server_version(admin)
            client = restore_client(tools, manifest, server, server_text)
            log(f"restoring the {describe_versions(manifest, client, server_text)}")
            # --replace keeps the old contents until the swap: two copies at once.
            check_room_on_server(admin, server.server, server.host, manifest, log, copies=2 if exists else 1)
            work_db = claim("restore")
            created = _create_like_original(admin, work_db, manifest, server_major)
            watch = _StopWatch(server, target_db, work_db, should_stop)
            try:
                log(
                    f"restoring {name} into {'a new database beside ' if exists else 'new database '}{target_db} "
                    f"(scratch database {created} until it is complete)"
                )
                wants_schema = manifest.carries_privileges and not (privileges.no_owner and privileges.no_acl)
                schema: list[str] | None = [] if wants_schema else None
                with watch:
                    left_out = restore_into(
                        catalog,
                        manifest,
                        server.with_database(work_db),
                        client,
                        log,
                        jobs,
                        schema_out=schema,
                        stall_seconds=stall_seconds,
                    )
                    with server.with_database(work_db).connect() as conn:
                        counts = table_row_counts(conn)
                        compare_row_counts(manifest.tables, counts, str(name))
                        if manifest.carries_privileges:
                            apply_script(conn, privilege_script("".join(schema or [])), privileges, applied)
                    if manifest.carries_privileges:
                        # Last, before the swap: a REVOKE CONNECT or a read-only default would have locked pg_restore
                        # out.
                        apply_database_properties(
                            admin, work_db, manifest.database_properties, privileges, applied, target_db
                        )
                        _report_privileges(applied, privileges, log)
                    watch.pass_point_of_no_return()
                with _signals_held(log):
                    if exists:
                        _swap(admin, server, target_db, work_db, claim("replaced"), log, state, replication, applied)
                    else:
                        _rename_new(admin, server, work_db, target_db)
            except BaseException as error:
                drop_database(admin, work_db)  # a target restored over keeps its old contents
                stopped = watch.reason or (None if isinstance(error, Exception) else "interrupted")
                if stopped:
                    message = (
                        f"the restore of {name} stopped before the swap ({stopped}): its work database {work_db} "
                        f"was dropped and {target_db} {'is as it was' if exists else 'was never created'}"
                    )
                    log(message)
                    if watch.reason:
                        raise RestoreStopped(message) from None
                raise
        finally:
            admin.close()
    duration = time.monotonic() - started
    log(
        f"restored {name} into {target_db}: {counted(len(counts), 'table')}, "
        f"{counted(sum(counts.values()), 'row')}, {duration:.1f} s"
    )
    return RestoreOutcome(
        manifest=manifest,
        database=target_db,
        tables=counts,
        duration_s=round(duration, 3),
        server_version=server_text,
        pg_restore_version=client.version,
        left_out=left_out,
        privileges=applied,
    )


NO_PRIVILEGES_NOTE = (
    "this backup carries no owners or privileges (it was taken with --no-owner --no-acl, before backups kept "
    "them): every restored object belongs to the restoring role, with no GRANTs or REVOKEs, and the database has "
    "the server's default encoding and settings"
)


def check_backup_roles(
    admin,
    catalog: BackupCatalog,
    manifest: Manifest,
    privileges: PrivilegeChoices,
    server: PostgresTarget,
    log: Log,
    applied: AppliedPrivileges | None = None,
    create: bool = True,
) -> None:
    """Before anything is created: the roles the backup names exist (or are mapped, created or left out).
    `create`: create the missing roles now when --create-roles says so (not when only checking)."""
    if not manifest.carries_privileges:
        log(NO_PRIVILEGES_NOTE)
        if applied is not None:
            applied.notes.append(NO_PRIVILEGES_NOTE)
        return
    roles = manifest.roles or {}
    saved = manifest.roles_key is not None and catalog.storage.head(manifest.roles_key) is not None
    check_roles(admin, roles, privileges, saved, f"server {server.server}")
    if not create:
        return
    if privileges.create_roles and saved:
        wanted = [role for role in roles if role not in privileges.role_map]
        problems = create_saved_roles(admin, catalog.storage.read_bytes(manifest.roles_key), wanted, log)
        if applied is not None:
            applied.not_applied.extend(problems)
    superuser = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    if not superuser and not privileges.no_owner:
        owners = [privileges.role(r) for r, uses in roles.items() if {"owner", "database owner"} & set(uses)]
        cannot = [
            role
            for role in sorted(set(owners))
            if not admin.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (role,)).fetchone()[0]
        ]
        if cannot:
            log(
                f"the restoring role is not a superuser nor a member of {', '.join(cannot)}: objects those roles own "
                "stay owned by the restoring role, and the restore lists each statement it could not apply"
            )


def _report_privileges(applied: AppliedPrivileges, privileges: PrivilegeChoices, log: Log) -> None:
    skipped = [flag for flag, on in (("--no-owner", privileges.no_owner), ("--no-acl", privileges.no_acl)) if on]
    if skipped:
        applied.notes.append(
            f"left out as asked ({' '.join(skipped)}): the backup's "
            + ("owners and privileges" if len(skipped) == 2 else ("owners" if privileges.no_owner else "privileges"))
        )
    if privileges.role_map:
        applied.notes.append(
            "roles mapped: " + ", ".join(f"{old} -> {new}" for old, new in sorted(privileges.role_map.items()))
        )
    log(f"applied {counted(applied.applied, 'ownership, privilege and setting statement')}")
    if applied.not_applied:
        log(
            f"could not apply {counted(len(applied.not_applied), 'statement')} (the restoring role may not): "
            + "; ".join(applied.not_applied)
        )


def _create_like_original(admin, work_db: str, manifest: Manifest, server_major: int) -> str:
    """The scratch database, from template0 with the original's encoding and locale (a backup that recorded only
    its encoding gets that); returns how it was created, for the log."""
    import psycopg

    if not manifest.database_properties:
        return create_database(admin, work_db, manifest.encoding, instead=RESTORE_ELSEWHERE)
    try:
        admin.execute(create_database_sql(work_db, manifest.database_properties, server_major))
        return work_db
    except psycopg.errors.InsufficientPrivilege:
        raise createdb_refusal(admin, RESTORE_ELSEWHERE) from None
    except psycopg.Error as error:
        props = manifest.database_properties or {}
        raise ConfigurationError(
            f"cannot create a database with the original's encoding {props.get('encoding')} and locale "
            f"{props.get('collate')}/{props.get('ctype')} on this server ({str(error).strip().splitlines()[0]}). "
            "Nothing was created: install that locale on the server (and restart it), or restore onto a server "
            "that has it"
        ) from None


def _replication_before(admin, server: PostgresTarget, target_db: str, choice: str | None) -> ReplicationState:
    with server.with_database(target_db).connect() as conn:
        state = replication_state(admin, conn, target_db)
    check_replication(state, target_db, choice)
    return state


# ------------------------------------------------------------------------------------ stopping a restore

# Asked while a restore runs: why it must stop (the run was canceled, ...), or None to go on.
StopCheck = Callable[[], "str | None"]
STOP_POLL_S = 0.5


class RestoreStopped(BackupError):
    """A restore stopped before its swap because it was asked to: its work database is gone, its target as it was."""


def _stop_if_asked(should_stop: StopCheck | None, target_db: str) -> None:
    reason = should_stop() if should_stop else None
    if reason:
        raise RestoreStopped(f"the restore stopped before it began ({reason}): {target_db} was not touched")


class _StopWatch:
    """Asks `should_stop` every STOP_POLL_S while the backup goes into the work database. On a stop it ends
    pg_restore (SIGTERM) and drops the work database WITH (FORCE), so a download or pg_restore still to come fails
    at once and the restore unwinds; `pass_point_of_no_return` asks once more, right before the swap, and from then on a stop is ignored
    (a swap begun is finished)."""

    def __init__(self, server: PostgresTarget, target_db: str, work_db: str, should_stop: StopCheck | None):
        self.server, self.target_db, self.work_db, self.should_stop = server, target_db, work_db, should_stop
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._committed = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="restore-stop-watch", daemon=True)

    def __enter__(self) -> _StopWatch:
        if self.should_stop is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _ask(self) -> str | None:
        try:
            return self.should_stop() if self.should_stop else None
        except Exception:  # a status that cannot be read now is asked again at the next poll and before the swap
            return None

    def _watch(self) -> None:
        while not self._done.wait(STOP_POLL_S):
            reason = self._ask()
            if not reason:
                continue
            with self._lock:
                if self._committed:
                    return
                self.reason = reason
            _end_restores_into(self.work_db)
            with contextlib.suppress(BackupError), admin_connection(self.server, outside=self.target_db) as conn:
                drop_database(conn, self.work_db)
            return

    def pass_point_of_no_return(self) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = self._ask()
            if self.reason:
                raise RestoreStopped(f"stopped right before the swap ({self.reason})")
            self._committed = True


@contextlib.contextmanager
def _signals_held(log: Log):
    """SIGINT and SIGTERM wait while a swap runs (it is one transaction, then the old database's drop): a swap
    begun is finished, and the log says the stop came too late."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            log("a stop arrived once the swap had begun: the restore finished it (a swap is never left half done)")


# ------------------------------------------------------------------------------- whose backup this is


def check_backup_source(
    admin,
    manifest: Manifest,
    server: PostgresTarget,
    target_db: str,
    replacing: bool,
    source: PostgresTarget | None,
    from_other_source: bool,
    log: Log,
) -> None:
    """Refuses a backup of another server or database than the one it is for: the database it replaces, or
    (a new database) `source`, the configured database whose backups these are. `from_other_source` lets it
    through, saying so. A backup that records no server (taken by an older version) is checked by name only."""
    if replacing:
        expected = (server_identity(admin), server.server, target_db)
        what = f"the database it would replace, {target_db} on {server.server}"
    elif source is not None:
        expected = (
            _identity_of(source, admin if source.server == server.server else None),
            source.server,
            source.dbname,
        )
        what = f"the configured database {source.dbname} on {source.server}"
    else:
        return
    system_id, host_port, database = expected
    same_server = None
    if manifest.source_system_identifier and system_id:
        same_server = manifest.source_system_identifier == system_id
    elif manifest.source_server:
        same_server = manifest.source_server == host_port
    if manifest.database == database and same_server is not False:
        if same_server is None:
            log(f"{manifest.name} does not record the server it was taken on: only its database name was checked")
        return
    taken = f"database {manifest.database}" + (f" on {manifest.source_server}" if manifest.source_server else "")
    if same_server is False and manifest.source_server == host_port:
        taken += " (another server at that address: its system identifier differs)"
    if from_other_source:
        log(f"restoring {manifest.name}, a backup of {taken}, though it is not of {what}: --from-other-source")
        return
    raise ConfigurationError(
        f"{manifest.name} is a backup of {taken}, not of {what}: nothing was changed. Choose a backup of that "
        "database (`backup-db list` shows where each was taken), or pass --from-other-source "
        "(from_other_source: true in run config) to restore it anyway"
    )


def _identity_of(source: PostgresTarget, admin) -> str | None:
    """The system identifier of `source`'s server, through `admin` when it is on that server; None when unreachable."""
    if admin is not None:
        return server_identity(admin)
    try:
        with admin_connection(source) as conn:
            return server_identity(conn)
    except BackupError:
        return None


def _rename_new(admin, server: PostgresTarget, work_db: str, target_db: str) -> None:
    from psycopg import errors

    try:
        rename_database(admin, work_db, target_db)
    except errors.DuplicateDatabase:
        raise ConfigurationError(
            f"database '{target_db}' was created on {server.describe()} while the backup was being restored: "
            "nothing of it was changed; choose a new name, or pass --replace to restore over it"
        ) from None


def kept_name(target_db: str) -> str:
    """The name an old database is kept under: not a scratch name, so no sweep ever drops it."""
    from datetime import UTC, datetime

    return f"{target_db[:30]}_replaced_{datetime.now(UTC):%Y%m%d_%H%M%S}"


def _swap(
    admin,
    server: PostgresTarget,
    target_db: str,
    work_db: str,
    old: str,
    log: Log,
    state: ReplicationState,
    replication: str | None,
    applied: AppliedPrivileges,
) -> None:
    """Swaps the restored database in. Nothing after the swap raises: the target is restored by then, and what
    could not be tidied up is reported with how to do it."""
    if replication == KEEP_OLD:
        old = kept_name(target_db)
    if replication is not None and state.slots:
        end_consumers(admin, target_db)  # their sessions would block the rename
    disconnect_sessions(admin, target_db)
    swap_databases(admin, target_db, work_db, old)
    log(f"replaced the contents of {target_db}")
    if replication == KEEP_OLD:
        applied.notes.append(
            f"kept the old database as {old}"
            + (f", with its {state.describe()}" if not state.empty else "")
            + f"; {removal_hint(old, state)} when it is no longer needed"
        )
        log(applied.notes[-1])
        return
    if replication == RECREATE_SLOTS:
        for note in move_slots(admin, server.with_database(target_db), state):
            applied.notes.append(note)
            log(note)
    try:
        drop_database(admin, old)
    except Exception as error:
        kept = old
        with contextlib.suppress(Exception):
            rename_database(admin, old, kept_name(target_db))
            kept = kept_name(target_db)
        note = (
            f"{target_db} is restored, but the old database could not be dropped ({str(error).splitlines()[0]}): it "
            f"is left as {kept}; {removal_hint(kept, state)}"
        )
        applied.notes.append(note)
        log(note)
