"""Health of a backup compared with the previous verified backup of the same database.

A backup can restore perfectly and still be wrong: an empty database dumped after a bad migration, a table
dropped by mistake, a dump cut short. Each check compares the new backup's manifest with the previous
verified backup's: a table that disappeared, total rows down by more than a share (default 20 %), the dump
under half the previous size, no tables where there were some, a dump that took over 3 times as long.
A failing check blocks nothing except retention of the last good backup before it (see
`previous_good_backups`): the evidence of what the data looked like stays until the failing backup goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from backup_pipeline.core.catalog import BackupCatalog, BackupEntry
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.manifest import Manifest

HEALTH_CHECKS = {
    "no_table_disappeared": "Every table of the previous verified backup is in this one.",
    "rows_not_dropped": "Total rows did not fall by more than the allowed share (BACKUP_HEALTH_MAX_ROW_DROP_PERCENT).",
    "dump_not_halved": "The dump is at least half the size of the previous verified backup's.",
    "tables_present": "The backup has tables when the previous verified backup had some.",
    "duration_not_tripled": "The dump took at most 3 times as long as the previous verified backup's.",
}
SIZE_FLOOR_SHARE = 0.5
DURATION_FACTOR = 3.0
# Durations of a few seconds jitter by more than 3x; a slowdown matters once it costs real time.
DURATION_MIN_INCREASE_S = 30.0
# Retention compares this many of the newest verified backups when looking for the last good one.
RETENTION_LOOKBACK = 30


@dataclass(frozen=True)
class HealthFinding:
    check: str
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def compare_backups(current: Manifest, previous: Manifest | None, row_drop_percent: float) -> list[HealthFinding]:
    """One finding per check in HEALTH_CHECKS; all pass when there is no previous verified backup."""
    if previous is None:
        return [HealthFinding(c, True, "no previous verified backup to compare with") for c in HEALTH_CHECKS]
    versus = f"than {previous.name}"
    gone = sorted(set(previous.tables) - set(current.tables))
    rows, before_rows = current.total_rows, previous.total_rows
    drop = (before_rows - rows) / before_rows * 100 if before_rows else 0.0
    duration, before_duration = current.duration_s, previous.duration_s
    return [
        HealthFinding(
            "no_table_disappeared",
            not gone,
            f"{len(gone)} table(s) of {previous.name} are missing: {', '.join(gone[:10])}"
            + (" …" if len(gone) > 10 else "")
            if gone
            else f"all {len(previous.tables)} tables of {previous.name} are present",
            {"missing_tables": len(gone), "previous_backup": previous.name},
        ),
        HealthFinding(
            "rows_not_dropped",
            drop <= row_drop_percent,
            f"{rows:,} rows, {drop:.1f} % fewer {versus} ({before_rows:,}); the limit is {row_drop_percent:g} %"
            if drop > 0
            else f"{rows:,} rows, not fewer {versus} ({before_rows:,})",
            {"rows": rows, "previous_rows": before_rows, "drop_percent": round(drop, 2)},
        ),
        HealthFinding(
            "dump_not_halved",
            current.size_bytes >= previous.size_bytes * SIZE_FLOOR_SHARE,
            f"{current.size_bytes:,} bytes, {current.size_bytes / previous.size_bytes:.0%} of {previous.name} "
            f"({previous.size_bytes:,} bytes)"
            if previous.size_bytes
            else f"{current.size_bytes:,} bytes",
            {"size_bytes": current.size_bytes, "previous_size_bytes": previous.size_bytes},
        ),
        HealthFinding(
            "tables_present",
            bool(current.tables) or not previous.tables,
            f"no tables at all, where {previous.name} had {len(previous.tables)}"
            if not current.tables and previous.tables
            else f"{len(current.tables)} tables ({len(previous.tables)} in {previous.name})",
            {"tables": len(current.tables), "previous_tables": len(previous.tables)},
        ),
        HealthFinding(
            "duration_not_tripled",
            duration <= before_duration * DURATION_FACTOR or duration - before_duration < DURATION_MIN_INCREASE_S,
            f"the dump took {duration:.1f} s, {duration / before_duration:.1f} times {previous.name}'s "
            f"{before_duration:.1f} s"
            if before_duration
            else f"the dump took {duration:.1f} s",
            {"duration_s": duration, "previous_duration_s": before_duration},
        ),
    ]


def failed_summary(findings: list[HealthFinding]) -> str:
    return "; ".join(f"{f.check}: {f.description}" for f in findings if not f.passed)


def previous_verified_manifest(catalog: BackupCatalog, current: Manifest) -> Manifest | None:
    """The manifest of the newest verified backup taken before `current`, or None."""
    for entry in catalog.entries():  # newest first
        if entry.verified and entry.created_at < current.created and str(entry.name) != current.name:
            return catalog.manifest(entry.name)
    return None


def previous_good_backups(
    catalog: BackupCatalog,
    verified: list[BackupEntry],
    row_drop_percent: float,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, str]:
    """Backup name → why retention must keep it: the last good backup before each newer one failing its checks.

    `verified` are verified backups newest first; the newest RETENTION_LOOKBACK are compared pairwise.
    """
    manifests: list[Manifest] = []
    for entry in verified[: RETENTION_LOOKBACK + 1]:
        try:
            manifests.append(catalog.manifest(entry.name))
        except BackupError as error:  # an unreadable manifest protects nothing and blocks nothing
            log(f"health comparison skips {entry.name}: {error}")
    healthy = [
        not failed_summary(compare_backups(m, manifests[i + 1], row_drop_percent)) if i + 1 < len(manifests) else True
        for i, m in enumerate(manifests)
    ]
    protected: dict[str, str] = {}
    for i, manifest in enumerate(manifests[:-1]):
        if healthy[i]:
            continue
        good = next((j for j in range(i + 1, len(manifests)) if healthy[j]), len(manifests) - 1)
        findings = compare_backups(manifest, manifests[i + 1], row_drop_percent)
        protected.setdefault(
            manifests[good].name,
            f"last good backup before {manifest.name}, which failed its health checks "
            f"({failed_summary(findings).split(';')[0]})",
        )
    return protected
