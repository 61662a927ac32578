"""Whether a restored database fits where it goes, said before anything starts; and what a failed restore means
when the server's disk filled or the server went down.

A verification on a local server knows its disk (shutil.disk_usage of the server's folder) and is refused when
it would not fit. A restore or verification on a server sees the disk only when that server runs on this
machine and tells where its data directory is; otherwise it says how much room it needs, and what the
server's databases take now.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from backup_pipeline.core.errors import BackupError, VerificationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.streams import human_bytes

Log = Callable[[str], None]
LOCAL_DIR_ENV = "BACKUP_VERIFY_LOCAL_DIR"
MAX_WAL_MB = 64
# Room the server needs besides the restored database: an empty PostgreSQL 18 cluster is about 40 MB, and the
# WAL may grow to about twice max_wal_size between checkpoints.
CLUSTER_BYTES = 48 * 1024**2
WAL_BYTES = 2 * MAX_WAL_MB * 1024**2
# The restored database is at most about the source's size (a restore leaves no bloat); some margin for
# indexes built at once. A manifest written before the database size was recorded has only the dump's size:
# the benchmark's realistic data takes about 3 times its gzip dump on disk, so 4 times is the guess.
SIZE_MARGIN = 1.1
DUMP_SIZE_MULTIPLE = 4
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def expected_restored_bytes(manifest: Manifest) -> tuple[int, str]:
    """How much disk the restored database is expected to take, and how that was worked out."""
    if manifest.database_size_bytes > 0:
        return (
            int(manifest.database_size_bytes * SIZE_MARGIN),
            f"the database measured {human_bytes(manifest.database_size_bytes)} when it was dumped",
        )
    return (
        manifest.size_bytes * DUMP_SIZE_MULTIPLE,
        f"the manifest does not record the database's size, so {DUMP_SIZE_MULTIPLE} times the "
        f"{human_bytes(manifest.size_bytes)} dump is assumed",
    )


def check_room(folder: Path, manifest: Manifest) -> int:
    """Refuses, before anything is started, a local server whose restored database would not fit in `folder`'s
    file system; returns the bytes expected."""
    expected, reason = expected_restored_bytes(manifest)
    needed = expected + CLUSTER_BYTES + WAL_BYTES
    if manifest.format == "directory":
        needed += _staging_bytes(folder, manifest)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise VerificationError(
            f"not enough disk to verify {manifest.name} on a local server in {folder}: it needs about "
            f"{human_bytes(needed)} ({reason}; plus {human_bytes(CLUSTER_BYTES + WAL_BYTES)} for the server and "
            f"its WAL) and {human_bytes(free)} is free. Nothing was started. Free space there, point "
            f"{LOCAL_DIR_ENV} at a larger disk, or verify on another server (BACKUP_VERIFY_DATABASE_URL)"
        )
    return needed


def _staging_bytes(folder: Path, manifest: Manifest) -> int:
    # A directory-format archive is unpacked into the temporary folder before pg_restore reads it.
    try:
        same_disk = os.stat(folder).st_dev == os.stat(tempfile.gettempdir()).st_dev
    except OSError:
        return 0
    return manifest.size_bytes if same_disk else 0


def check_room_on_server(
    admin, server_description: str, host: str, manifest: Manifest, log: Log, copies: int = 1
) -> None:
    """Before a restore (or verification) into a server: refuses when the server is on this machine and its
    data directory's disk lacks room for `copies` restored databases (a --replace keeps the old one until the
    swap); otherwise says how much room it needs and what the server's databases take now."""
    expected, reason = expected_restored_bytes(manifest)
    needed = expected * copies
    free = _local_data_directory_free(admin, host)
    if free is not None and free < needed:
        raise BackupError(
            f"not enough disk on {server_description} to restore {manifest.name}: it needs about "
            f"{human_bytes(needed)} ({reason}) and its data directory's disk has {human_bytes(free)} free. "
            "Nothing was created. Free space there first: a PostgreSQL whose disk fills stops accepting writes"
        )
    in_use = _databases_size(admin)
    seen = f"{human_bytes(free)} free on its disk" if free is not None else "its free disk cannot be seen from here"
    log(
        f"this restore needs about {human_bytes(needed)} on {server_description} ({reason}); {seen}"
        + (f", its databases take {human_bytes(in_use)} now" if in_use is not None else "")
        + (": make sure its disk has that much room, a full disk stops PostgreSQL" if free is None else "")
    )


def _local_data_directory_free(admin, host: str) -> int | None:
    """Free bytes on the disk of the server's data directory, when the server runs here and may say where it is
    (superusers and pg_read_all_settings)."""
    if host not in _LOOPBACK and not host.startswith("/"):
        return None
    try:
        folder = admin.execute("SHOW data_directory").fetchone()[0]
    except Exception:  # not allowed to see it: nothing to compare with
        with contextlib.suppress(Exception):
            admin.rollback()
        return None
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None  # a server in a container, or another machine behind a local port


def _databases_size(admin) -> int | None:
    try:
        return int(
            admin.execute(
                "SELECT sum(pg_database_size(datname)) FROM pg_database WHERE has_database_privilege(datname, 'CONNECT')"
            ).fetchone()[0]
            or 0
        )
    except Exception:
        return None


# What a failed restore's messages say when the server's disk filled or the server went down, and what to do.
# ("Check free disk space." is PostgreSQL's hint under its ENOSPC errors, at times the last line pg_restore prints.)
_DISK_FULL = ("could not extend file", "No space left on device", "could not write to file", "Check free disk space")
_CRASHED = (
    "server closed the connection unexpectedly",
    # libpq's lines after it, at times the last one pg_restore prints
    "the server terminated abnormally",
    "before or while processing the request",
    "terminating connection because of crash of another server process",
    "the database system is in recovery mode",
    "the database system is shutting down",
)


def explain_server_failure(
    text: str, where: str, advice: str, during: str = " while the backup was restored into it"
) -> str | None:
    """A sentence for a failure because `where`'s disk filled or it crashed; None otherwise."""
    if any(marker in text for marker in _DISK_FULL):
        return f"{where} ran out of disk{during}. {advice}"
    if any(marker in text for marker in _CRASHED):
        return (
            f"{where} stopped or crashed{during} (often a full disk: PostgreSQL stops when it cannot write its "
            f"WAL). Check the server's log and free disk. {advice}"
        )
    return None
