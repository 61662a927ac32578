"""How results look: the backup table, a readable manifest, JSON, and progress lines with elapsed seconds.

Results go to stdout; progress and notes go to stderr, so `--json` output can be piped as it is.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

from backup_pipeline.core.catalog import BackupEntry
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.streams import human_bytes


def print_json(value) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Progress:
    """`[12s] message` lines on stderr, the elapsed time counted from when the command started the work."""

    def __init__(self, stream=None):
        self.started = time.monotonic()
        self.stream = stream or sys.stderr

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, message: str) -> None:
        print(f"[{self.elapsed:.0f}s] {message}", file=self.stream, flush=True)


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def backups_table(entries: list[BackupEntry]) -> str:
    """The original script's table (Filename, Size, Created; newest first; a Total line), plus Verified."""
    rows = [
        (f"{e.name}.dump", human_bytes(e.size_bytes), when(e.created_at), "yes" if e.verified else "no")
        for e in entries
    ]
    header = ("Filename", "Size", "Created", "Verified")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    lines = [_row(row, widths) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = sum(e.size_bytes for e in entries)
    count = f"{len(entries)} backup{'s' if len(entries) != 1 else ''}"
    verified = sum(1 for e in entries if e.verified)
    lines.append(f"Total: {count}, {human_bytes(total)} ({verified} verified)")
    return "\n".join(lines)


def _row(cells, widths) -> str:
    # Sizes (the second column) align right, like the original script's table.
    padded = (
        cell.rjust(width) if i == 1 else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )
    return "  ".join(padded).rstrip()


def manifest_text(manifest: Manifest, entry: BackupEntry, verification: dict | None, location: str) -> str:
    lines = [
        f"Backup    {manifest.name}",
        f"Type      {manifest.type}",
        f"Created   {when(manifest.created)}",
        f"Database  {manifest.database} (PostgreSQL {manifest.server_version}, "
        f"{human_bytes(manifest.database_size_bytes)} on disk)",
        f"Stored    {manifest.key} in {location}",
        f"Size      {human_bytes(manifest.size_bytes)} ({manifest.size_bytes} bytes)",
        f"SHA-256   {manifest.sha256}",
        f"Dump      pg_dump {manifest.pg_dump_version}, {manifest.format} format, compression {manifest.compression}"
        f"{', encrypted' if manifest.encryption else ''}, took {manifest.duration_s:.1f} s",
        f"Verified  {_verified_text(entry, verification)}",
        f"Tables    {len(manifest.tables)}, {manifest.total_rows} rows:",
    ]
    width = max((len(t) for t in manifest.tables), default=0)
    lines += [f"  {table.ljust(width)}  {rows:>12}" for table, rows in sorted(manifest.tables.items())]
    return "\n".join(lines)


def _verified_text(entry: BackupEntry, verification: dict | None) -> str:
    if not entry.verified:
        return "no (run `backup-db verify` to restore it into a scratch database and compare)"
    if not verification:
        return "yes"
    took = verification.get("restore_duration_s", 0)
    try:
        at = when(datetime.fromisoformat(verification["verified_at"]))
    except (KeyError, TypeError, ValueError):
        at = "?"
    return f"yes, at {at} (restore took {took:.1f} s)"
