"""Reading a stored backup back: from storage (resumed where a connection drops), through sha256, decrypted.

Restore, verification, download and diff all read a backup this way: `open_backup` for the whole object, whose
sha256 is checked against its manifest once it has been read, and `open_backup_head` for only its start (a
custom-format archive's table of contents), which is never checked since the rest is never read.
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Iterator
from pathlib import Path

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.directory_archive import unpack as unpack_archive
from backup_pipeline.core.encryption import check_can_decrypt, decrypting
from backup_pipeline.core.errors import VerificationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupName
from backup_pipeline.core.streams import CHUNK_BYTES, HashingReader, ProgressCallback, StallWatch


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


def check_checksum(actual: str, manifest: Manifest) -> None:
    if actual != manifest.sha256:
        raise VerificationError(
            f"{manifest.name} is corrupted: its sha256 is {actual} but the manifest recorded {manifest.sha256}; "
            "restore another backup"
        )


class OpenedBackup:
    """The plain (decrypted) bytes of one stored backup, hashed as they are read from storage."""

    def __init__(self, body, manifest: Manifest, catalog: BackupCatalog, hashing: HashingReader):
        self.body = body  # the storage stream: a stall watchdog ends it (`abort`)
        self.manifest = manifest
        self._hashing = hashing
        self._plain = decrypting(hashing, manifest.encryption, catalog.encryption, manifest.name)

    def read(self, size: int = -1) -> bytes:
        return self._plain.read(size)

    def readable(self) -> bool:
        return True

    def check(self) -> None:
        """Reads what is left of the stored object (nothing, when the reader took it all) and checks its sha256
        against the manifest: VerificationError when they differ."""
        while self._hashing.read(CHUNK_BYTES):
            pass
        check_checksum(self._hashing.sha256, self.manifest)


@contextlib.contextmanager
def open_backup(
    catalog: BackupCatalog,
    manifest: Manifest,
    on_progress: ProgressCallback | None = None,
    watch: StallWatch | None = None,
) -> Iterator[OpenedBackup]:
    """The whole backup, streamed: its sha256 is checked when the block ends normally (a block that failed
    reports its own error). `on_progress` gets the stored bytes read so far; `watch` sees them move."""
    with catalog.storage.open_stream(manifest.key, manifest.size_bytes) as body:
        backup = OpenedBackup(body, manifest, catalog, HashingReader(body, on_progress=on_progress, watch=watch))
        yield backup
        backup.check()


@contextlib.contextmanager
def open_backup_head(catalog: BackupCatalog, manifest: Manifest) -> Iterator[object]:
    """The decrypted start of the backup, for a reader that stops after the table of contents: not checked."""
    with catalog.storage.open_stream(manifest.key, manifest.size_bytes) as body:
        yield decrypting(body, manifest.encryption, catalog.encryption, manifest.name)


def unpack_backup(backup: OpenedBackup, folder: str | Path) -> None:
    """A directory-format backup (a tar of pg_dump's folder) unpacked into `folder`. One that is no readable tar
    is refused as corrupted when its checksum differs, else as unreadable; OSError (a full disk) is the caller's."""
    try:
        unpack_archive(backup, folder)
    except (tarfile.TarError, ValueError) as error:
        backup.check()  # a damaged object: say so by its checksum when it differs
        raise VerificationError(f"{backup.manifest.name} is not a readable directory-format archive: {error}") from None
