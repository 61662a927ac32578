"""What every storage backend is: its settings' common part, and the interface every backup step uses.

A backend is one module beside this one (local.py, s3.py): a settings type (a `StorageSettings` subclass)
and a `BackupStorage` subclass built from it, registered in factory.py.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict


class StorageSettings(BaseModel):
    """Where backups are kept: each backend's settings type extends this with its own fields.

    The values come checked from the configuration (core/settings/storage.py declares each variable);
    `from_values` takes a backend's own from them. `backend` names the backend (`local`, `s3`) so the
    settings survive a round trip through plain values (the Dagster resource's config). Settings hold the
    *names* of variables carrying secrets, never their values.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # What the store is, as the UI's asset kinds show it (`s3`, `file`).
    kind: ClassVar[str]

    # Client-side encryption, whatever the backend: the variable holding the key (never its value here), or a
    # key file's path. The key itself is read and checked where it is used (core/encryption.py).
    encryption_key_env: str | None = None
    encryption_key_file: str | None = None

    @classmethod
    @abc.abstractmethod
    def chosen_by(cls, values: Mapping[str, Any]) -> bool:
        """Whether the storage section's values (`bucket`, `local_dir`, ...) choose this backend."""

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Self:
        """This backend's settings from the storage section's values: the fields it has, where they are set."""
        return cls.model_validate({k: v for k, v in values.items() if k in cls.model_fields and v is not None})

    @abc.abstractmethod
    def describe(self) -> str:
        """Where, for people: `bucket 'b' at AWS S3`, `local folder /srv/backups`."""

    def secret_variables(self) -> tuple[str, ...]:
        """The variables holding this backend's secrets (their values are masked in every message)."""
        return ()


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


@dataclass(frozen=True)
class UnfinishedUpload:
    """A write into storage that has not finished (or never will: its process was killed).

    `ref`: what removes it (the multipart upload's id, the partial file's path); `pid`: the process writing it,
    where storage records one (the local folder's partial files do, S3's multipart uploads do not)."""

    key: str
    ref: str
    started: datetime | None
    size: int
    pid: int | None = None


class BackupStorage(abc.ABC):
    """What every backup step needs from storage: stream in, stream out, list, head, delete many.

    Objects are addressed by key (`db-backups/app_manual_20260113_150000.dump`).
    """

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings: StorageSettings) -> BackupStorage:
        """The backend for its own settings type (factory.open_storage picks the class)."""

    @abc.abstractmethod
    def describe(self) -> str: ...

    @abc.abstractmethod
    def uri(self, key: str) -> str: ...

    def check_access(self) -> None:  # noqa: B027 (a backend with nothing to check keeps this)
        """Fail early, naming the place, when storage cannot be used."""

    @abc.abstractmethod
    def upload_stream(self, key: str, reader, expected_bytes: int = 0) -> None:
        """Every byte `reader` gives, stored under `key` whole or not at all."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def open_stream(self, key: str, size: int | None = None):
        """Context manager yielding a file-like object with read(n): every byte of the object, resumed from
        where it stopped when a connection drops or a body ends short (of `size`, when the caller knows it:
        a manifest's size_bytes; else of what storage says); DownloadCutShort when it cannot be (reader.py)."""

    def read_bytes(self, key: str) -> bytes:
        with self.open_stream(key) as stream:
            return stream.read()

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[StoredObject]: ...

    def list_names(self, prefixes: Sequence[str], rollup: str) -> Iterator[StoredObject]:
        """Every object whose key starts with one of `prefixes` (which must not overlap), for the catalog.

        Keys come back exactly as stored, never cut short, so `x.dump.json.bak` is never taken for
        `x.dump.json`; keys continuing past `rollup` may come back cut after `rollup` plus one character,
        which no name of ours ends in.
        """
        folders = {prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else "" for prefix in prefixes}
        for folder in sorted(folders):
            for obj in self.list(folder):
                if obj.key.startswith(tuple(prefixes)):
                    yield obj

    @abc.abstractmethod
    def head(self, key: str) -> StoredObject | None: ...

    @abc.abstractmethod
    def delete_many(self, keys: Iterable[str]) -> int: ...

    def unfinished_uploads(self, prefix: str) -> list[UnfinishedUpload]:
        """Writes under `prefix` that have not finished: running ones, and those a killed process left."""
        return []

    def uploaded_bytes(self, upload: UnfinishedUpload) -> int:
        """The bytes an unfinished write holds (what it costs while it stays), where storage does not say."""
        return upload.size

    def discard_unfinished(self, upload: UnfinishedUpload) -> bool:
        """Removes an unfinished write the caller judged abandoned; False when it turned out to be alive."""
        raise NotImplementedError
