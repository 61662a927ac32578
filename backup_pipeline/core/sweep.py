"""Sweeping up what killed processes left behind: the one place that decides what is abandoned.

Every piece of temporary state names its owner and stays locked by it while it lives, so a sweep removes only
what is ours and whose owner is gone:
- password files `backup-pgpass-<pid>-*` in the temporary folder: the owner pid is dead and the file's flock
  is free (core/owners.py);
- local verification servers, folders `backup-verify-pg-<pid>-*` in the temporary folder (or
  BACKUP_VERIFY_LOCAL_DIR): the owner pid is dead and the flock of the folder's `owner.lock` is free; the
  server a kill left running is stopped, then the folder removed (core/local_verify.py);
- scratch databases `bp_<verify|restore|replaced|diff>_<time>_<random>`: no session holds the advisory lock
  keyed by the name (core/postgres/scratch.py); a user's database never has that shape;
- partial files `.<name>.partial-<pid>` in the local folder and beside a download: pid dead, flock free;
- unfinished multipart uploads and dumps without a manifest, of our own backup names only: no session holds
  the backup's writer lock (core/backup.py), which its run keeps from before the dump until the manifest is
  written; when the database cannot be asked, only uploads older than a day go.

The backup, verification, restore and retention paths call `sweep_leftovers` before their work, so what one
killed run left is gone after the next one; each removal is logged by name and size (never a secret).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from backup_pipeline.core.backup import backups_being_written
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.local_verify import local_server_parents, sweep_local_servers
from backup_pipeline.core.names import BackupName, classify_key, join_key
from backup_pipeline.core.owners import abandoned, remove
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.databases import drop_database
from backup_pipeline.core.postgres.environment import PASSWORD_FILE
from backup_pipeline.core.postgres.maintenance import admin_connection
from backup_pipeline.core.postgres.scratch import abandoned_scratch_databases
from backup_pipeline.core.prune import INCOMPLETE_GRACE
from backup_pipeline.core.storage import UnfinishedUpload
from backup_pipeline.core.storage.local import PARTIAL_FILE
from backup_pipeline.core.streams import human_bytes

Log = Callable[[str], None]
# Without a way to ask whether its run still lives, an unfinished upload is abandoned after this long.
STALE_UPLOAD = INCOMPLETE_GRACE


@dataclass
class SweepReport:
    password_files: list[str] = field(default_factory=list)
    local_servers: list[str] = field(default_factory=list)
    scratch_databases: list[str] = field(default_factory=list)
    partial_files: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes)
    multipart_uploads: list[tuple[str, int]] = field(default_factory=list)  # (key, bytes)
    incomplete_backups: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return (
            len(self.password_files)
            + len(self.local_servers)
            + len(self.scratch_databases)
            + len(self.partial_files)
            + len(self.multipart_uploads)
            + len(self.incomplete_backups)
        )

    def lines(self) -> list[str]:
        lines = []
        if self.password_files:
            lines.append(f"{len(self.password_files)} temporary password file(s): {', '.join(self.password_files)}")
        if self.local_servers:
            lines.append(f"{len(self.local_servers)} local verification server(s): {', '.join(self.local_servers)}")
        if self.scratch_databases:
            lines.append(f"{len(self.scratch_databases)} scratch database(s): {', '.join(self.scratch_databases)}")
        if self.partial_files:
            lines.append(
                f"{len(self.partial_files)} partial file(s) ({_total(self.partial_files)}): {_named(self.partial_files)}"
            )
        if self.multipart_uploads:
            lines.append(
                f"{len(self.multipart_uploads)} unfinished multipart upload(s) aborted ({_total(self.multipart_uploads)}): "
                f"{_named(self.multipart_uploads)}"
            )
        if self.incomplete_backups:
            lines.append(
                f"{len(self.incomplete_backups)} incomplete upload(s) without a manifest: {', '.join(self.incomplete_backups)}"
            )
        return lines

    def log_to(self, log: Log) -> None:
        if self.removed:
            log("removed what killed runs left behind: " + "; ".join(self.lines()))
        for problem in self.problems:
            log(f"could not sweep up after killed runs: {problem}")


def _total(items: list[tuple[str, int]]) -> str:
    return human_bytes(sum(size for _, size in items))


def _named(items: list[tuple[str, int]]) -> str:
    return ", ".join(f"{name} ({human_bytes(size)})" for name, size in items)


def sweep_leftovers(
    catalog: BackupCatalog | None,
    target: PostgresTarget | None,
    servers: Iterable[PostgresTarget] = (),
    log: Log = print,
    local_server_folder: Path | None = None,
) -> SweepReport:
    """Removes what killed runs left: password files and local verification servers here (those in
    `local_server_folder` too), scratch databases on `servers`, and the catalog's unfinished uploads (the
    backups' writer locks are looked up on `target`'s server). Never raises for a part it cannot sweep: it
    says so in the log and the work goes on."""
    report = SweepReport()
    _attempt(report, "temporary password files", lambda: report.password_files.extend(sweep_password_files()))
    for folder in local_server_parents(local_server_folder):
        _attempt(
            report,
            f"local verification servers in {folder}",
            lambda folder=folder: report.local_servers.extend(sweep_local_servers(folder)),
        )
    seen = set()
    for server in servers:
        if server.server in seen:
            continue
        seen.add(server.server)
        _attempt(
            report,
            f"scratch databases on {server.describe()}",
            lambda server=server: report.scratch_databases.extend(sweep_scratch_databases(server)),
        )
    if catalog is not None:
        _attempt(
            report,
            f"unfinished uploads in {catalog.storage.describe()}",
            lambda: sweep_storage(catalog, target, report),
        )
    report.log_to(log)
    return report


def _attempt(report: SweepReport, what: str, action: Callable[[], object]) -> None:
    try:
        action()
    except BackupError as error:
        report.problems.append(f"{what}: {error}")
    except Exception as error:  # a database's or the file system's own error: the sweep must not fail the run
        first = str(error).strip().splitlines()
        report.problems.append(f"{what}: {first[0] if first else type(error).__name__}")


def sweep_password_files(folder: str | None = None) -> list[str]:
    base = Path(folder or tempfile.gettempdir())
    removed = []
    for entry in os.scandir(base):
        match = PASSWORD_FILE.match(entry.name)
        if match and entry.is_file(follow_symlinks=False) and abandoned(Path(entry.path), int(match["pid"])):
            remove(Path(entry.path))
            removed.append(entry.name)
    return sorted(removed)


def sweep_scratch_databases(server: PostgresTarget) -> list[str]:
    removed = []
    with admin_connection(server) as conn:
        for name in abandoned_scratch_databases(conn):
            drop_database(conn, name)
            removed.append(name)
    return removed


def sweep_download_partials(destination: str) -> list[str]:
    """Partial downloads of `destination` (`.<name>.partial-<pid>` beside it) whose process is gone."""
    final = Path(os.path.abspath(destination))
    removed = []
    if not final.parent.is_dir():
        return removed
    for entry in os.scandir(final.parent):
        match = PARTIAL_FILE.match(entry.name)
        if match and match["name"] == final.name and abandoned(Path(entry.path), int(match["pid"])):
            remove(Path(entry.path))
            removed.append(entry.path)
    return removed


@dataclass(frozen=True)
class Candidate:
    """One unfinished upload of ours, with the backup it belongs to."""

    upload: UnfinishedUpload
    name: BackupName


def our_unfinished(uploads: Iterable[UnfinishedUpload], storage_prefix: str, name_prefix: str) -> list[Candidate]:
    """The uploads whose key is one of our own backup names (anything else is never touched)."""
    found = []
    for upload in uploads:
        classified = classify_key(upload.key, storage_prefix, name_prefix)
        if classified is not None:
            found.append(Candidate(upload, classified[0]))
    return found


def abandoned_uploads(candidates: Iterable[Candidate], live: set[str] | None, now: datetime) -> list[Candidate]:
    """Which unfinished uploads to remove: those whose backup's writer lock nobody holds (`live`: the backup
    names whose lock is held; None when that could not be asked, and then only uploads older than
    STALE_UPLOAD go). Local partial files are also checked against their owner process when removed."""
    chosen = []
    for candidate in candidates:
        if live is not None:
            if str(candidate.name) not in live:
                chosen.append(candidate)
        elif candidate.upload.pid is not None:
            chosen.append(candidate)  # a partial file: its owner process is asked when it is removed
        elif candidate.upload.started is not None and candidate.upload.started < now - STALE_UPLOAD:
            chosen.append(candidate)
    return chosen


def sweep_storage(catalog: BackupCatalog, target: PostgresTarget | None, report: SweepReport) -> None:
    storage = catalog.storage
    candidates = our_unfinished(
        storage.unfinished_uploads(join_key(catalog.storage_prefix, f"{catalog.name_prefix}_")),
        catalog.storage_prefix,
        catalog.name_prefix,
    )
    incomplete = [e for e in catalog.entries() if not e.complete] if target is not None else []
    names = {str(c.name) for c in candidates} | {str(e.name) for e in incomplete}
    live = _live_writers(target, names, report) if target is not None else None
    for candidate in abandoned_uploads(candidates, live, datetime.now(UTC)):
        upload = candidate.upload
        size = upload.size if upload.pid is not None else _uploaded_bytes(storage, upload)
        if storage.discard_unfinished(upload):
            where = upload.ref if upload.pid is not None else upload.key
            (report.partial_files if upload.pid is not None else report.multipart_uploads).append((where, size))
    if live is None:
        return  # prune deletes incomplete uploads after its grace period
    for entry in incomplete:
        name = entry.name
        # Its writer could have written the manifest and let go of the lock since the listing: look again.
        if str(name) in live or storage.head(name.manifest_key(catalog.storage_prefix)) is not None:
            continue
        storage.delete_many(entry.keys)
        report.incomplete_backups.append(str(name))


def _live_writers(target: PostgresTarget, names: set[str], report: SweepReport) -> set[str] | None:
    """The backups among `names` whose run is writing them right now; None when the server cannot tell."""
    try:
        return backups_being_written(target, names)
    except BackupError as error:
        report.problems.append(f"cannot tell which backups are being written ({error}): only old uploads are swept")
        return None


def _uploaded_bytes(storage, upload: UnfinishedUpload) -> int:
    try:
        return storage.uploaded_bytes(upload)
    except BackupError:
        return 0
