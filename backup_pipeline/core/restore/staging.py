"""Getting a backup's bytes to pg_restore: fed to its input, staged in a file, or unpacked into a folder."""

from __future__ import annotations

import os

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.restore.plan import Log
from backup_pipeline.core.stored_backup import open_backup, unpack_backup
from backup_pipeline.core.streams import CHUNK_BYTES, human_bytes


def unpack_checked(catalog: BackupCatalog, manifest: Manifest, staging: str, log: Log | None = None) -> str:
    """A directory-format backup unpacked into `staging`, its sha256 checked; returns the archive folder."""
    folder = os.path.join(staging, "archive")
    on_progress = (lambda n: log(f"downloaded {human_bytes(n)}")) if log else None
    with open_backup(catalog, manifest, on_progress) as backup:
        try:
            unpack_backup(backup, folder)
        except OSError as error:
            raise BackupError(
                f"cannot unpack {manifest.name} for restoring in {staging}: {error.strerror}. Free space there "
                "or point TMPDIR at a larger disk"
            ) from None
    return folder


def stage(source, out, name: str) -> None:
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


def feed(reader, sink, stopped=lambda: False) -> None:
    """Copies the object into pg_restore; if pg_restore stops early, reads on so the hash is complete (unless
    a watchdog `stopped` the restore: then there is nothing to complete)."""
    sink_open = True
    while not (not sink_open and stopped()) and (chunk := reader.read(CHUNK_BYTES)):
        if sink_open:
            try:
                sink.write(chunk)
            except BrokenPipeError:
                sink_open = False
