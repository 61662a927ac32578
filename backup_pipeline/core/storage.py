"""Backup storage: an S3-compatible bucket or a local folder behind one interface.

The one place that talks to S3 (or the folder); backup, verification, retention, restore and the command
line share it. Objects are addressed by key (`db-backups/app_manual_20260113_150000.dump`); the local
folder mirrors the same keys as paths.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from backup_pipeline.core.config import StorageSettings
from backup_pipeline.core.errors import BackupError, ConfigurationError
from backup_pipeline.core.owners import abandoned, hold, remove

MIN_PART_BYTES = 8 * 1024 * 1024
MAX_PART_BYTES = 5 * 1024**3
MAX_PARTS = 10_000
DELETE_BATCH = 1000
UPLOAD_CONCURRENCY = 4
LIST_CONCURRENCY = 4
# Deleting thousands of objects: DeleteObjects requests (1,000 keys each) in flight at once.
DELETE_CONCURRENCY = 4
# A streamed upload holds whole parts in memory (read, queued, in flight): at most this much, and at
# least two parts, so memory stays flat whatever the size of the dump.
UPLOAD_MEMORY_BYTES = 64 * 1024 * 1024
# A download that drops or ends short is opened again from where it stopped (a ranged GET): this many times in
# a row without a byte gained before it is given up. boto3 retries the request, never a body cut mid-way.
DOWNLOAD_ATTEMPTS = 5
DOWNLOAD_RETRY_PAUSE_S = 0.5


class DownloadCutShort(BackupError):
    """A download ended before the object's last byte and could not be resumed: says nothing about the object."""


class ResumingReader:
    """An object read from its first byte to its last: when the connection drops or the body ends before `size`
    bytes, it is opened again at the byte where it stopped, so the caller (a checksum) sees every byte once, in
    order. `open_at(offset)` returns (a stream from `offset`, the object's size as that answer gives it);
    `size` is what the caller knows the object to hold (its manifest), trusted over a Content-Length."""

    def __init__(
        self,
        key: str,
        where: str,
        open_at: Callable[[int], tuple[object, int | None]],
        size: int | None,
        dropped: tuple[type[BaseException], ...],
        attempts: int = DOWNLOAD_ATTEMPTS,
        pause_s: float = DOWNLOAD_RETRY_PAUSE_S,
    ):
        self.key, self._where, self._open_at, self.size = key, where, open_at, size
        self._dropped, self._attempts, self._pause_s = dropped, attempts, pause_s
        self.position = 0
        self._failures = 0  # in a row, without a byte gained
        self._stream = None
        self._aborted: BackupError | None = None
        self._open()

    def abort(self, error: BackupError) -> None:
        """Ends the download from another thread (a watchdog): it is never opened again, and every read from now
        on raises `error`. The stream is not closed here: closing a buffered stream waits for the read that
        hangs in it. The hanging read ends with the client's read timeout, on the thread it hangs in."""
        self._aborted = error

    def _open(self) -> None:
        stream, size = self._open_at(self.position)
        self._stream = stream
        if self.size is None and size is not None:
            self.size = size

    def read(self, size: int = -1) -> bytes:
        while True:
            if self._aborted is not None:
                raise self._aborted
            try:
                if self._stream is None:
                    self._open()
                data = self._stream.read() if size is None or size < 0 else self._stream.read(size)
            except (*self._dropped, AttributeError, ValueError) as error:
                if self._aborted is not None:  # closed under the read by abort()
                    raise self._aborted from None
                if not isinstance(error, self._dropped):
                    raise
                self._lost(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'dropped'}")
                continue
            if data:
                self.position += len(data)
                self._failures = 0
                return data
            if self._aborted is not None:
                raise self._aborted
            if self.size is None or self.position >= self.size:
                return b""
            self._lost("the body ended early")

    def _lost(self, cause: str) -> None:
        """The stream stopped short: closed, to be opened again from `position`, unless the attempts are spent."""
        self.close()
        self._failures += 1
        if self._failures >= self._attempts:
            total = self.size if self.size is not None else "?"
            raise DownloadCutShort(
                f"the download was cut short after {self.position} of {total} bytes; the stored object was not "
                f"checked (reading {self.key} from {self._where}, {self._attempts} attempts in a row without a "
                f"byte gained, the last: {cause}). Check the network to storage and run it again"
            )
        time.sleep(self._pause_s * self._failures)

    def close(self) -> None:
        if self._aborted is not None:
            self._stream = None  # a read may still hang in it (see abort)
            return
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
            self._stream = None

    def readable(self) -> bool:
        return True


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


# A partial write into the local folder: `.<object name>.partial-<pid>` beside the object it becomes.
PARTIAL_FILE = re.compile(r"^\.(?P<name>.+)\.partial-(?P<pid>\d+)$")


def partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial-{os.getpid()}")


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    last_modified: datetime | None = None


def part_size_for(expected_bytes: int) -> int:
    """Multipart part size so that a dump up to twice the expected size stays under S3's 10,000 parts.

    8 MiB up to about 40 GB expected, then growing with the expectation (whole MiB); a 5 TiB dump, S3's
    largest object, fits whenever at least 2.5 TiB were expected.
    """
    wanted = math.ceil(max(expected_bytes, 1) * 2 / (MAX_PARTS - 100) / 2**20) * 2**20
    return min(MAX_PART_BYTES, max(MIN_PART_BYTES, wanted))


def upload_concurrency_for(part_bytes: int) -> tuple[int, int]:
    """(parts uploaded at once, parts held in memory at once) within UPLOAD_MEMORY_BYTES."""
    in_memory = max(2, min(UPLOAD_CONCURRENCY + 2, UPLOAD_MEMORY_BYTES // part_bytes))
    return max(1, min(UPLOAD_CONCURRENCY, in_memory - 1)), in_memory


class BackupStorage:
    """What every backup step needs from storage: stream in, stream out, list, head, delete many."""

    def describe(self) -> str:
        raise NotImplementedError

    def uri(self, key: str) -> str:
        raise NotImplementedError

    def check_access(self) -> None:
        """Fail early, naming the place, when storage cannot be used."""

    def upload_stream(self, key: str, reader, expected_bytes: int = 0) -> None:
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def open_stream(self, key: str, size: int | None = None):
        """Context manager yielding a file-like object with read(n): every byte of the object, resumed from
        where it stopped when a connection drops or a body ends short (of `size`, when the caller knows it:
        a manifest's size_bytes; else of what storage says); DownloadCutShort when it cannot be."""
        raise NotImplementedError

    def read_bytes(self, key: str) -> bytes:
        with self.open_stream(key) as stream:
            return stream.read()

    def list(self, prefix: str) -> Iterator[StoredObject]:
        raise NotImplementedError

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

    def head(self, key: str) -> StoredObject | None:
        raise NotImplementedError

    def delete_many(self, keys: Iterable[str]) -> int:
        raise NotImplementedError

    def unfinished_uploads(self, prefix: str) -> list[UnfinishedUpload]:
        """Writes under `prefix` that have not finished: running ones, and those a killed process left."""
        return []

    def discard_unfinished(self, upload: UnfinishedUpload) -> bool:
        """Removes an unfinished write the caller judged abandoned; False when it turned out to be alive."""
        raise NotImplementedError


class LocalStorage(BackupStorage):
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

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
                yield StoredObject(
                    key=path.relative_to(self.root).as_posix(),
                    size=stat.st_size,
                    last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
                )

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return StoredObject(key=key, size=stat.st_size, last_modified=datetime.fromtimestamp(stat.st_mtime, UTC))

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


class S3Storage(BackupStorage):
    def __init__(self, client, bucket: str, endpoint_url: str | None = None, settings: StorageSettings | None = None):
        self.client = client
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        # Only for messages: the variables the user actually set (DO_SPACES_* or BACKUP_S3_*/AWS_*).
        self.settings = settings or StorageSettings(bucket=bucket, endpoint_url=endpoint_url)

    def describe(self) -> str:
        return f"bucket '{self.bucket}' at {self.endpoint_url or 'AWS S3'}"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def check_access(self) -> None:
        with self._errors("open"):
            self.client.head_bucket(Bucket=self.bucket)

    def upload_stream(self, key: str, reader, expected_bytes: int = 0) -> None:
        from boto3.s3.transfer import TransferConfig

        part = part_size_for(expected_bytes)
        concurrency, in_memory = upload_concurrency_for(part)
        config = TransferConfig(
            multipart_threshold=part,
            multipart_chunksize=part,
            max_concurrency=concurrency,
            use_threads=True,
        )
        # s3transfer's own setting (boto3's constructor does not take it): parts buffered from a stream.
        config.max_in_memory_upload_chunks = in_memory
        # s3transfer aborts the multipart upload itself when a part keeps failing.
        with self._errors(f"upload {key} to"):
            self.client.upload_fileobj(reader, self.bucket, key, Config=config)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._errors(f"write {key} to"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")

    @contextlib.contextmanager
    def open_stream(self, key: str, size: int | None = None):
        from botocore.exceptions import BotoCoreError

        first: dict = {}

        def open_at(offset: int):
            # Resumed at `offset` only from the very object first read (If-Match its ETag): a backup replaced
            # meanwhile must not be stitched from two objects.
            ranged = {"Range": f"bytes={offset}-"} if offset else {}
            if offset and first.get("etag"):
                ranged["IfMatch"] = first["etag"]
            with self._errors(f"read {key} from"):
                response = self.client.get_object(Bucket=self.bucket, Key=key, **ranged)
            first.setdefault("etag", response.get("ETag"))
            whole = _content_range_total(response.get("ContentRange"))
            return response["Body"], whole if whole is not None else offset + int(response.get("ContentLength", 0))

        # A drop while reading a body is a botocore error (ResponseStreamingError, IncompleteReadError,
        # ReadTimeoutError) or, unwrapped, a socket's.
        reader = ResumingReader(key, self.describe(), open_at, size, dropped=(BotoCoreError, OSError))
        try:
            yield reader
        finally:
            reader.close()

    def list(self, prefix: str) -> Iterator[StoredObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors("list"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield StoredObject(key=item["Key"], size=int(item["Size"]), last_modified=item.get("LastModified"))

    def list_names(self, prefixes: Sequence[str], rollup: str) -> Iterator[StoredObject]:
        # One listing per prefix, at once, each page handed over as it arrives. The delimiter is `rollup` and a
        # dot: keys ending in `rollup` come back whole, and foreign keys going on past it (`x.dump.json.bak`)
        # fold into one common prefix ending in ".", which no name of ours matches. (`rollup` alone as the
        # delimiter folded `x.dump.json.bak` into `x.dump.json`, a manifest that does not exist.)
        import queue

        pages: queue.Queue = queue.Queue()

        def listing(prefix: str) -> None:
            try:
                with self._errors("list"):
                    for page in self.client.get_paginator("list_objects_v2").paginate(
                        Bucket=self.bucket, Prefix=prefix, Delimiter=f"{rollup}."
                    ):
                        contents, names = page.get("Contents", []), page.get("CommonPrefixes", [])
                        pages.put(
                            [
                                StoredObject(key=o["Key"], size=int(o["Size"]), last_modified=o.get("LastModified"))
                                for o in contents
                            ]
                            + [StoredObject(key=common["Prefix"], size=0) for common in names]
                        )
            except BaseException as error:  # handed to the caller's thread
                pages.put(error)
            finally:
                pages.put(None)

        with ThreadPoolExecutor(max_workers=max(1, min(len(prefixes), LIST_CONCURRENCY))) as pool:
            for prefix in prefixes:
                pool.submit(listing, prefix)
            running = len(prefixes)
            while running:
                page = pages.get()
                if page is None:
                    running -= 1
                elif isinstance(page, BaseException):
                    raise page
                else:
                    yield from page

    def head(self, key: str) -> StoredObject | None:
        from botocore.exceptions import ClientError

        try:
            with self._errors(f"look up {key} in", passthrough=(ClientError,)):
                response = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._translate(error, f"look up {key} in") from None
        return StoredObject(key=key, size=int(response["ContentLength"]), last_modified=response.get("LastModified"))

    def delete_many(self, keys: Iterable[str]) -> int:
        """Deletes in batches of 1,000, several batches at once: callers needing an order call it once per step."""
        keys = list(keys)
        batches = [keys[start : start + DELETE_BATCH] for start in range(0, len(keys), DELETE_BATCH)]
        if len(batches) <= 1:
            return sum(self._delete_batch(batch) for batch in batches)
        with ThreadPoolExecutor(max_workers=DELETE_CONCURRENCY) as pool:
            return sum(pool.map(self._delete_batch, batches))

    def unfinished_uploads(self, prefix: str) -> list[UnfinishedUpload]:
        found = []
        with self._errors("list the unfinished uploads of"):
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    found.append(
                        UnfinishedUpload(
                            key=upload["Key"], ref=upload["UploadId"], started=upload.get("Initiated"), size=0
                        )
                    )
        return found

    def uploaded_bytes(self, upload: UnfinishedUpload) -> int:
        """The bytes of the parts an unfinished multipart upload holds (what it costs while it stays)."""
        total = 0
        with self._errors(f"list the parts of {upload.key} in"):
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=upload.key, UploadId=upload.ref
            )
            for page in pages:
                total += sum(int(part.get("Size", 0)) for part in page.get("Parts", []))
        return total

    def discard_unfinished(self, upload: UnfinishedUpload) -> bool:
        from botocore.exceptions import ClientError

        try:
            with self._errors(f"abort the upload of {upload.key} to", passthrough=(ClientError,)):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload.key, UploadId=upload.ref)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return False  # it finished or was aborted meanwhile
            raise self._translate(error, f"abort the upload of {upload.key} to") from None
        return True

    def _delete_batch(self, batch: list[str]) -> int:
        with self._errors("delete from"):
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
        errors = response.get("Errors", [])
        if errors:
            raise BackupError(
                f"{len(errors)} objects could not be deleted from {self.describe()}, first {errors[0].get('Key')}: "
                f"{errors[0].get('Message') or errors[0].get('Code')}"
            )
        return len(batch)

    @contextlib.contextmanager
    def _errors(self, action: str, passthrough: tuple = ()):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except passthrough:
            raise
        except (ClientError, BotoCoreError) as error:
            raise self._translate(error, action) from None
        except Exception as error:
            # s3transfer wraps part failures; unwrap to the botocore error when there is one.
            cause = error.__cause__ or error.__context__
            if isinstance(cause, (ClientError, BotoCoreError)):
                raise self._translate(cause, action) from None
            raise

    def _translate(self, error, action: str) -> BackupError:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        where = self.describe()
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchBucket",) or (code in ("404", "NotFound") and action == "open"):
                return BackupError(
                    f"the bucket '{self.bucket}' does not exist at {self.endpoint_url or 'AWS S3'}: create it, or "
                    f"set {self._bucket_variables()} to an existing one"
                )
            if code == "NoSuchKey":
                return BackupError(f"cannot {action} {where}: the object does not exist (run `backup-db list`)")
            # A HEAD request gets a bare 403, a GET or a listing the reason (InvalidAccessKeyId, ...): every verb
            # says the same thing, so the reason is left out.
            if code in _REFUSED_CODES:
                return BackupError(
                    f"cannot {action} {where}: the credentials were refused. Check {self._credential_variables()}"
                )
            return BackupError(f"cannot {action} {where}: S3 answered {code or status}")
        if isinstance(error, NoCredentialsError):
            return BackupError(
                f"cannot {action} {where}: no S3 credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or DO_SPACES_KEY and DO_SPACES_SECRET)"
            )
        if isinstance(error, EndpointConnectionError) or "connect" in type(error).__name__.lower():
            return BackupError(
                f"cannot {action} {where}: the endpoint is unreachable. Check {self.settings.endpoint_env} and the "
                "network"
            )
        return BackupError(f"cannot {action} {where}: {type(error).__name__}: {str(error).splitlines()[0]}")

    def _bucket_variables(self) -> str:
        if self.settings.bucket_env == "DO_SPACES_BUCKET":
            return "DO_SPACES_BUCKET (and DO_SPACES_REGION)"
        return f"{self.settings.bucket_env} (and BACKUP_S3_ENDPOINT_URL)"

    def _credential_variables(self) -> str:
        used = {self.settings.access_key_id_env, self.settings.secret_access_key_env} - {None}
        if used and all(name.startswith("DO_SPACES_") for name in used):
            return "DO_SPACES_KEY and DO_SPACES_SECRET"
        if used and not any(name.startswith("DO_SPACES_") for name in used):
            return "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        return "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or DO_SPACES_KEY and DO_SPACES_SECRET)"


_REFUSED_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "Forbidden", "InvalidToken"}
)


def _content_range_total(content_range: str | None) -> int | None:
    """The object's whole size from a ranged answer's Content-Range (`bytes 100-199/200`)."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None


def checksum_mode(settings: StorageSettings) -> str:
    """boto3's request_checksum_calculation and response_checksum_validation for this storage.

    Since boto3 1.36 every upload carries CRC checksum headers (and trailers on streamed parts) by default;
    DigitalOcean Spaces, R2, MinIO and others reject some of them. On an endpoint that is not AWS only the
    checksums an operation requires are sent (BACKUP_S3_CHECKSUMS overrides). Integrity does not depend on
    them: the sha256 of every dump is computed on the way up, kept in its manifest and checked on download.
    """
    if settings.checksums:
        return settings.checksums
    host = (urlparse(settings.endpoint_url).hostname or "") if settings.endpoint_url else ""
    is_aws = not host or host == "amazonaws.com" or host.endswith((".amazonaws.com", ".amazonaws.com.cn"))
    return "when_supported" if is_aws else "when_required"


def s3_client(settings: StorageSettings, max_attempts: int | None = None):
    """The one place a boto3 client for backup storage is built: the Dagster resource and the command line."""
    import boto3
    import botocore.session
    from botocore.config import Config

    key_id = os.environ.get(settings.access_key_id_env) if settings.access_key_id_env else None
    secret = os.environ.get(settings.secret_access_key_env) if settings.secret_access_key_env else None
    session = botocore.session.get_session()
    # botocore parses every listed object's date with dateutil, the larger part of listing 30,000 objects.
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_parse_timestamp)
    return boto3.session.Session(botocore_session=session).client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            retries={"max_attempts": max_attempts or settings.max_attempts, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            request_checksum_calculation=checksum_mode(settings),
            response_checksum_validation=checksum_mode(settings),
        ),
    )


def _parse_timestamp(value):
    try:
        return datetime.fromisoformat(value)  # S3 sends ISO 8601 (2026-01-13T15:00:00.000Z)
    except (TypeError, ValueError):
        from botocore.utils import parse_timestamp

        return parse_timestamp(value)


def storage_from_settings(settings: StorageSettings, client=None) -> BackupStorage:
    if settings.uses_s3:
        return S3Storage(client or s3_client(settings), settings.bucket, settings.endpoint_url, settings)
    return LocalStorage(settings.local_dir)
