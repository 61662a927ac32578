"""The S3 backend: an S3-compatible bucket (AWS, DigitalOcean Spaces, R2, MinIO) through boto3.

Uploads stream in parts sized to the expected dump, with memory held flat; downloads resume with ranged GETs
pinned to the first answer's ETag; listings run per prefix at once. Its errors are put in the user's words
by s3_errors.py.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse

from backup_pipeline.core import config_fields as fields
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.settings import BY_NAME
from backup_pipeline.core.storage.base import BackupStorage, StorageSettings, StoredObject, UnfinishedUpload
from backup_pipeline.core.storage.reader import ResumingReader
from backup_pipeline.core.storage.s3_errors import error_code, s3_errors, translate

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


class S3StorageSettings(StorageSettings):
    """An S3-compatible bucket (BACKUP_S3_* or DO_SPACES_*); the credentials are named, never held.

    Checked where they are read (core/settings/storage.py); the bucket and endpoint types again here, for
    values that come back through the Dagster resource's config."""

    kind: ClassVar[str] = "s3"
    backend: Literal["s3"] = "s3"
    bucket: fields.Bucket
    endpoint_url: fields.EndpointUrl | None = None
    region: fields.Region | None = None
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    max_attempts: int = BY_NAME["max_attempts"].default
    # boto3's request checksums and response validation; None: when_required for an endpoint that is not
    # AWS (several S3-compatible stores reject the headers recent boto3 sends by default), else boto3's own.
    checksums: fields.S3Checksums | None = None
    # Which variables said so, for messages: a user who set DO_SPACES_BUCKET is told about DO_SPACES_BUCKET.
    bucket_env: str = "BACKUP_S3_BUCKET"
    endpoint_env: str = "BACKUP_S3_ENDPOINT_URL"

    @classmethod
    def chosen_by(cls, values: Mapping[str, Any]) -> bool:
        return values.get("bucket") is not None

    def describe(self) -> str:
        return f"bucket '{self.bucket}' at {self.endpoint_url or 'AWS S3'}"

    def secret_variables(self) -> tuple[str, ...]:
        return (self.secret_access_key_env,) if self.secret_access_key_env else ()


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


class S3Storage(BackupStorage):
    """Backups as objects in one bucket, through a boto3 client (built by `s3_client`, or given)."""

    def __init__(self, client, bucket: str, endpoint_url: str | None = None, settings: S3StorageSettings | None = None):
        self.client = client
        # Besides bucket and endpoint, only for messages: the variables the user actually set.
        self.settings = settings or S3StorageSettings(bucket=bucket, endpoint_url=endpoint_url)
        self.bucket, self.endpoint_url = self.settings.bucket, self.settings.endpoint_url

    @classmethod
    def from_settings(cls, settings: S3StorageSettings) -> S3Storage:
        return cls(s3_client(settings), settings.bucket, settings.endpoint_url, settings)

    def describe(self) -> str:
        return self.settings.describe()

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
                    yield StoredObject(key=item["Key"], size=int(item["Size"]))

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
                            [StoredObject(key=o["Key"], size=int(o["Size"])) for o in contents]
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
            if error_code(error) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._translate(error, f"look up {key} in") from None
        return StoredObject(key=key, size=int(response["ContentLength"]))

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
            if error_code(error) == "NoSuchUpload":
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

    def _errors(self, action: str, passthrough: tuple = ()):
        return s3_errors(self.settings, action, passthrough)

    def _translate(self, error, action: str) -> BackupError:
        return translate(self.settings, error, action)


def _content_range_total(content_range: str | None) -> int | None:
    """The object's whole size from a ranged answer's Content-Range (`bytes 100-199/200`)."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None


def checksum_mode(settings: S3StorageSettings) -> str:
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


def s3_client(settings: S3StorageSettings, max_attempts: int | None = None):
    """The one place a boto3 client for backup storage is built: the Dagster resource and the command line."""
    import boto3
    import botocore.session
    from botocore.config import Config

    key_id = os.environ.get(settings.access_key_id_env) if settings.access_key_id_env else None
    secret = os.environ.get(settings.secret_access_key_env) if settings.secret_access_key_env else None
    session = botocore.session.get_session()
    session.register_component("data_loader", _service_descriptions())
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


_LOADER = None


def _service_descriptions():
    """botocore's loader of service descriptions, one per process: a session of its own parses S3's (a few MB of
    JSON, 0.3 s of CPU) again for every client, and a run or a command opens storage several times."""
    global _LOADER
    if _LOADER is None:
        import botocore.loaders

        _LOADER = botocore.loaders.create_loader()
    return _LOADER


def _parse_timestamp(value):
    try:
        return datetime.fromisoformat(value)  # S3 sends ISO 8601 (2026-01-13T15:00:00.000Z)
    except (TypeError, ValueError):
        from botocore.utils import parse_timestamp

        return parse_timestamp(value)
