"""`backup-db download`: a stored backup written out as pg_restore reads it, checked before it is whole."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import BackupError, VerificationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.owners import hold
from backup_pipeline.core.restore.plan import Log
from backup_pipeline.core.storage.local import partial_path
from backup_pipeline.core.stored_backup import OpenedBackup, open_backup, unpack_backup
from backup_pipeline.core.streams import CHUNK_BYTES, human_bytes
from backup_pipeline.core.sweep import sweep_download_partials

# What a stream (stdout) gets only once the sha256 matched: a damaged backup never reaches a pipe whole, so a
# pg_restore reading it meets the end of its input early and fails instead of restoring damaged data.
HELD_BACK_BYTES = 64 * 1024


def download_to(catalog: BackupCatalog, manifest: Manifest, destination: str, log: Log = print, sink=None) -> int:
    """Writes the backup as pg_restore reads it: a dump file (custom format) or a folder (directory format).

    Streamed, never held in memory: the stored bytes pass through sha256 (and decryption) into a partial file
    beside `destination`, renamed only once the checksum matched, so a damaged backup leaves nothing behind.
    `sink`: a binary stream to write a custom-format dump to instead (stdout). Returns the bytes written.
    """
    total = human_bytes(manifest.size_bytes)
    with open_backup(catalog, manifest, lambda n: log(f"downloaded {human_bytes(n)} of {total}")) as backup:
        if sink is not None:
            return _copy_checked(backup, sink)
        final = os.path.abspath(destination)
        for left in sweep_download_partials(final):
            log(f"removed {left}, a partial download a killed process left behind")
        partial = str(partial_path(Path(final)))
        try:
            if manifest.format == "directory":
                unpack_backup(backup, partial)
                written = sum(f.stat().st_size for f in Path(partial).rglob("*") if f.is_file())
            else:
                with open(partial, "wb") as out:
                    hold(out.fileno())  # a sweep leaves it alone while this process writes it
                    written = _copy(backup, out, manifest.name, os.path.dirname(final))
            backup.check()
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


def _copy_checked(backup: OpenedBackup, out) -> int:
    """Copies all but the last HELD_BACK_BYTES, checks the checksum, and only then writes the rest."""
    name = backup.manifest.name
    held = bytearray()
    written = 0
    while chunk := backup.read(CHUNK_BYTES):
        held += chunk
        if len(held) > HELD_BACK_BYTES:
            ready = len(held) - HELD_BACK_BYTES
            written += _write(out, held[:ready], name)
            del held[:ready]
    try:
        backup.check()
    except VerificationError as error:
        raise VerificationError(
            f"{error}. Its last {human_bytes(len(held))} were held back, so whatever read the output got an "
            "incomplete archive (a pg_restore reading it fails)"
        ) from None
    return written + _write(out, held, name)


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
