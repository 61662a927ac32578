"""How results look: the backup table, a readable manifest, JSON, and progress lines with elapsed seconds.

Results go to stdout; progress and notes go to stderr, so `--json` output can be piped as it is.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime

from backup_pipeline.core.catalog import FUTURE_SKEW, BackupEntry
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.streams import counted, human_bytes

_COLOURS = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2"}


def colour_on(stream) -> bool:
    """Colour only for a person at a terminal: never into a pipe or file, nor with NO_COLOR set or TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, colour: str, stream=None) -> str:
    stream = stream or sys.stdout
    return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m" if colour_on(stream) else text


def warn(message: str) -> None:
    print(paint(f"warning: {message}", "yellow", sys.stderr), file=sys.stderr, flush=True)


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


def age(moment: datetime) -> str:
    """How long ago, in the largest unit that fits: `40 s`, `12 min`, `5 h`, `3 d`; a moment ahead of now by more
    than the clock skew tolerated reads `in the future (400 d ahead)`, never `0 s`."""
    now = datetime.now(UTC)
    if moment - now > FUTURE_SKEW:
        return f"in the future ({_duration(int((moment - now).total_seconds()))} ahead)"
    return _duration(max(0, int((now - moment).total_seconds())))


def ago(moment: datetime) -> str:
    """`3 d ago`, or `in the future (400 d ahead)`."""
    text = age(moment)
    return text if text.startswith("in the future") else f"{text} ago"


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def backups_table(
    entries: list[BackupEntry],
    labels: dict[str, str] | None = None,
    with_database: bool = False,
    verifying: set[str] | frozenset[str] = frozenset(),
) -> str:
    """The original script's table (Filename, Size, Created; newest first; a Total line), plus type, age,
    verification (`verifying` while a run verifies one of `verifying`) and label; with `with_database`, the database (name prefix) each backup belongs to first."""
    labels = labels or {}
    header = ("Filename", "Type", "Size", "Created", "Age", "Verified", "Label")
    rows = [
        (
            f"{e.name}.dump",
            e.type,
            human_bytes(e.size_bytes),
            when(e.created_at),
            age(e.created_at),
            "yes" if e.verified else ("verifying" if str(e.name) in verifying else "no"),
            labels.get(str(e.name), ""),
        )
        for e in entries
    ]
    if with_database:
        header = ("Database", *header)
        rows = [(e.name.prefix, *row) for e, row in zip(entries, rows, strict=True)]
    if not any(row[-1] for row in rows):  # no labels at all: no empty column
        header, rows = header[:-1], [row[:-1] for row in rows]
    right = {header.index("Size"), header.index("Age")}
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [_row(row, widths, right) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = sum(e.size_bytes for e in entries)
    verified = sum(1 for e in entries if e.verified)
    databases = f" of {counted(len({e.name.prefix for e in entries}), 'database')}" if with_database else ""
    lines.append(f"Total: {counted(len(entries), 'backup')}{databases}, {human_bytes(total)} ({verified} verified)")
    return "\n".join(lines)


def _row(cells, widths, right: set[int]) -> str:
    # Sizes and ages align right, like the original script's table.
    padded = (
        cell.rjust(width) if i in right else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )
    return "  ".join(padded).rstrip()


def manifest_text(manifest: Manifest, entry: BackupEntry, verification: dict | None, location: str) -> str:
    server = f" on {manifest.source_server}" if manifest.source_server else ""
    lines = [
        f"Backup    {manifest.name}",
        f"Type      {manifest.type}",
        *([f"Label     {manifest.label}"] if manifest.label else []),
        f"Created   {when(manifest.created)} ({ago(manifest.created)})",
        f"Database  {manifest.database}{server} (PostgreSQL {manifest.server_version}, "
        f"{human_bytes(manifest.database_size_bytes)} on disk)",
        f"Stored    {manifest.key} in {location}",
        f"Size      {human_bytes(manifest.size_bytes)}",
        f"SHA-256   {manifest.sha256}",
        f"Dump      pg_dump {manifest.pg_dump_version}, {manifest.format} format, compression {manifest.compression}"
        f"{', encrypted' if manifest.encryption else ''}, took {manifest.duration_s:.1f} s",
        f"Verified  {_verified_text(entry, verification)}",
    ]
    if manifest.tables:
        lines.append(f"Tables    {counted(len(manifest.tables), 'table')}, {counted(manifest.total_rows, 'row')}:")
    else:
        lines.append("Tables    none (the database had no tables when it was dumped)")
    width = max((len(t) for t in manifest.tables), default=0)
    lines += [f"  {table.ljust(width)}  {rows:>12,}" for table, rows in sorted(manifest.tables.items())]
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
    with_tool = f", pg_restore {verification['pg_restore_version']}" if verification.get("pg_restore_version") else ""
    return f"yes, at {at} (restore took {took:.1f} s{with_tool})"
