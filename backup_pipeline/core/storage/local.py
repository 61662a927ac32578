"""The local-folder backend: backups as files under one folder, keys mirrored as paths.

Writes go to a partial file beside the object (`.<name>.partial-<pid>`) and are renamed into place whole, so
a reader never sees half an object and a sweep can tell an abandoned write by its process id.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from backup_pipeline.core.errors import BackupError, ConfigurationError
from backup_pipeline.core.owners import abandoned, hold, remove
from backup_pipeline.core.settings import BY_NAME
from backup_pipeline.core.storage.base import BackupStorage, StorageSettings, StoredObject, UnfinishedUpload
from backup_pipeline.core.storage.reader import ResumingReader

# A partial write into the local folder: `.<object name>.partial-<pid>` beside the object it becomes.
PARTIAL_FILE = re.compile(r"^\.(?P<name>.+)\.partial-(?P<pid>\d+)$")


def partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial-{os.getpid()}")


class LocalStorageSettings(StorageSettings):
    """A folder on this machine (BACKUP_LOCAL_DIR): used when no other backend is chosen."""

    kind: ClassVar[str] = "file"
    backend: Literal["local"] = "local"
    local_dir: str = BY_NAME["local_dir"].default

    @classmethod
    def chosen_by(cls, values: Mapping[str, Any]) -> bool:
        return True  # the fallback: last in the registry

    def describe(self) -> str:
        return f"local folder {Path(self.local_dir).resolve()}"


class LocalStorage(BackupStorage):
    """Backups as files under one folder: keys are paths below it."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    @classmethod
    def from_settings(cls, settings: LocalStorageSettings) -> LocalStorage:
        return cls(settings.local_dir)

    def describe(self) -> str:
        return f"local folder {self.root}"

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root != path and self.root not in path.parents:
            raise ConfigurationError(f"key '{key}' points outside the backup folder {self.root}")
        return path

    def check_access(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BackupError(
                f"cannot use the backup folder {self.root}: {error.strerror}. Set BACKUP_LOCAL_DIR to a writable "
                "folder, or BACKUP_S3_BUCKET to use S3"
            ) from None

    def upload_stream(self, key: str, reader, expected_bytes: int = 0) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(path)
        try:
            with open(partial, "wb") as out:
                hold(out.fileno())  # a sweep leaves it alone while this process writes it
                shutil.copyfileobj(reader, out, 1024 * 1024)
            os.replace(partial, path)
        except OSError as error:
            raise BackupError(f"could not write {path}: {error.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()

    def put_bytes(self, key: str, data: bytes) -> None:
        import io

        self.upload_stream(key, io.BytesIO(data))

    @contextlib.contextmanager
    def open_stream(self, key: str, size: int | None = None):
        path = self._path(key)

        def open_at(offset: int):
            try:
                handle = open(path, "rb")
            except FileNotFoundError:
                raise BackupError(f"{key} is not in {self.describe()}") from None
            handle.seek(offset)
            return handle, os.fstat(handle.fileno()).st_size

        reader = ResumingReader(key, self.describe(), open_at, size, dropped=(OSError,), pause_s=0)
        try:
            yield reader
        finally:
            reader.close()

    def list(self, prefix: str) -> Iterator[StoredObject]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith("."):  # partial writes in progress
                    continue
                path = Path(dirpath) / name
                stat = path.stat()
                yield StoredObject(key=path.relative_to(self.root).as_posix(), size=stat.st_size)

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return StoredObject(key=key, size=stat.st_size)

    def delete_many(self, keys: Iterable[str]) -> int:
        deleted = 0
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()
                deleted += 1
        return deleted

    def unfinished_uploads(self, prefix: str) -> list[UnfinishedUpload]:
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(folder) if folder.strip("/") else self.root
        found = []
        for dirpath, _dirs, files in os.walk(base) if base.is_dir() else ():
            for name in files:
                match = PARTIAL_FILE.match(name)
                if not match:
                    continue
                path = Path(dirpath) / name
                key = (Path(dirpath) / match["name"]).relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    stat = path.stat()
                    found.append(
                        UnfinishedUpload(
                            key=key,
                            ref=str(path),
                            started=datetime.fromtimestamp(stat.st_mtime, UTC),
                            size=stat.st_size,
                            pid=int(match["pid"]),
                        )
                    )
        return found

    def discard_unfinished(self, upload: UnfinishedUpload) -> bool:
        path = Path(upload.ref)
        if upload.pid is None or not abandoned(path, upload.pid):
            return False
        remove(path)
        return True
