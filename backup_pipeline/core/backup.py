"""Taking one backup: pg_dump streamed through sha256 into storage, the manifest written last."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from backup_pipeline import __version__
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config import DEFAULT_STALL_SECONDS
from backup_pipeline.core.dump import DumpOptions, Log, start_dump
from backup_pipeline.core.encryption import EncryptingReader
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupId, BackupName, check_label
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import server_identity
from backup_pipeline.core.postgres.clients import ClientTools
from backup_pipeline.core.postgres.locks import advisory_lock, held_advisory_locks
from backup_pipeline.core.streams import HashingReader, StallWatch, human_bytes, run_watched


@dataclass
class BackupResult:
    manifest: Manifest
    uri: str


def take_backup(
    target: PostgresTarget,
    catalog: BackupCatalog,
    backup_id: BackupId,
    tools: ClientTools | None = None,
    options: DumpOptions | None = None,
    log: Log = print,
    label: str | None = None,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
) -> BackupResult:
    tools = tools or ClientTools.locate()
    if label is not None:
        check_label(label)
    options = options or DumpOptions()
    name = BackupName(prefix=catalog.name_prefix, id=backup_id)
    catalog.storage.check_access()
    # Two runs for one backup id (a relaunched partition, two `backup-db backup` in the same second) must never
    # both dump into one name: the first holds a lock in the database until its manifest is written.
    with advisory_lock(target, writer_lock_name(name)) as obtained:
        if not obtained:
            raise BackupError(
                f"another run is writing {name} right now: a backup is never written twice. Wait for that run "
                "(it shows in the Dagster UI), or start a new backup"
            )
        return _store_new_backup(target, catalog, name, tools, options, log, label, stall_seconds)


def writer_lock_name(name: BackupName | str) -> str:
    """The advisory lock a backup's run holds from before its dump until its manifest is written: while it is
    held, the backup's unfinished upload is alive (core/sweep.py)."""
    return f"backup_pipeline {name}"


def backups_being_written(target: PostgresTarget, names) -> set[str]:
    """Which of the backup `names` a live run is writing right now (it holds their writer lock on `target`'s
    server). Raises BackupError when the server cannot be asked."""
    locks = {writer_lock_name(name): str(name) for name in names}
    if not locks:
        return set()
    with target.connect() as conn:
        return {locks[lock] for lock in held_advisory_locks(conn, locks)}


def _store_new_backup(
    target: PostgresTarget,
    catalog: BackupCatalog,
    name: BackupName,
    tools: ClientTools,
    options: DumpOptions,
    log: Log,
    label: str | None,
    stall_seconds: float,
) -> BackupResult:
    storage = catalog.storage
    backup_id = name.id
    dump_key = name.dump_key(catalog.storage_prefix)
    manifest_key = name.manifest_key(catalog.storage_prefix)
    if storage.head(manifest_key) is not None or storage.head(dump_key) is not None:
        raise BackupError(f"{name} already exists in {storage.describe()}: a backup is never overwritten")

    started = time.monotonic()
    with target.connect() as conn:
        source_identity = server_identity(conn)
    with start_dump(target, tools, options, log, stall_seconds) as dump:
        # Encrypted (when a key is configured) before upload; size and sha256 describe the stored bytes.
        source = dump.stdout if catalog.encryption is None else EncryptingReader(dump.stdout, catalog.encryption)
        watch = StallWatch(stall_seconds)
        reader = HashingReader(
            source,
            on_progress=lambda n: log(f"dumped and uploaded {human_bytes(n)} so far"),
            watch=watch,
        )
        try:
            run_watched(
                lambda: storage.upload_stream(dump_key, reader, expected_bytes=dump.database_size_bytes),
                watch,
                stop=dump.stop_stalled,
            )
        except BaseException:
            dump.kill()
            _remove_partial(storage, dump_key)
            raise
        try:
            tables = dump.finish()
        except BaseException:
            _remove_partial(storage, dump_key)
            raise
    duration = time.monotonic() - started
    # Beside the dump, before the manifest: an upload that stops here is incomplete and swept with its dump.
    roles_key = name.roles_key(catalog.storage_prefix)
    storage.put_bytes(roles_key, dump.role_definitions)
    manifest = Manifest(
        name=str(name),
        backup_id=str(backup_id),
        type=backup_id.type,
        database=target.dbname,
        created_at=backup_id.created_at.isoformat(),
        key=dump_key,
        size_bytes=reader.bytes_read,
        sha256=reader.sha256,
        server_version=dump.server_version,
        pg_dump_version=dump.pg_dump_version,
        tables=tables,
        duration_s=round(duration, 3),
        tool_version=__version__,
        format=options.format,
        compression=options.description,
        dump_jobs=options.jobs,
        database_size_bytes=dump.database_size_bytes,
        finished_at=datetime.now(UTC).isoformat(),
        encryption=catalog.encryption.manifest_record() if catalog.encryption else None,
        label=label,
        source_host=target.host,
        source_port=target.port,
        database_properties=dump.database_properties,
        roles=dump.roles,
        roles_key=roles_key,
        encoding=dump.encoding,
        source_system_identifier=source_identity,
    )
    # Written last: a dump without its manifest is an incomplete upload and never listed as a backup.
    storage.put_bytes(manifest_key, manifest.to_json())
    log(f"stored {name}: {human_bytes(manifest.size_bytes)}, sha256 {manifest.sha256}, {duration:.1f} s")
    return BackupResult(manifest=manifest, uri=storage.uri(dump_key))


def _remove_partial(storage, key: str) -> None:
    try:
        storage.delete_many([key])
    except BackupError:
        pass  # the manifest was never written, so retention removes it later
