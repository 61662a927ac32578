"""What a restore did: the database, its tables and rows, the versions at play, what was left out, and what
was applied of the backup's owners, privileges and settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from backup_pipeline.core.errors import VerificationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.privileges import AppliedPrivileges, PrivilegeChoices
from backup_pipeline.core.restore.plan import Log, major
from backup_pipeline.core.streams import counted


@dataclass
class RestoreOutcome:
    manifest: Manifest
    database: str
    tables: dict[str, int]
    duration_s: float
    server_version: str = ""  # the target server's
    pg_restore_version: str = ""
    left_out: list[str] = field(default_factory=list)  # objects the target's role cannot create (TocFilter)
    # What was applied of the backup's owners, privileges and settings, what could not be, and what was left.
    privileges: AppliedPrivileges | None = None

    @property
    def upgrade(self) -> bool:
        """Whether the backup came from an older PostgreSQL major than the server it went into."""
        return bool(self.server_version) and major(self.manifest.server_version) < major(self.server_version)


def compare_row_counts(expected: dict[str, int], actual: dict[str, int], name: str) -> None:
    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        if want != got:
            problems.append(
                f"{table}: manifest {want if want is not None else 'absent'}, "
                f"restored {got if got is not None else 'absent'}"
            )
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise VerificationError(f"{name} restored to different contents than were dumped: {shown}")


def report_privileges(applied: AppliedPrivileges, privileges: PrivilegeChoices, log: Log) -> None:
    skipped = [flag for flag, on in (("--no-owner", privileges.no_owner), ("--no-acl", privileges.no_acl)) if on]
    if skipped:
        applied.notes.append(
            f"left out as asked ({' '.join(skipped)}): the backup's "
            + ("owners and privileges" if len(skipped) == 2 else ("owners" if privileges.no_owner else "privileges"))
        )
    if privileges.role_map:
        applied.notes.append(
            "roles mapped: " + ", ".join(f"{old} -> {new}" for old, new in sorted(privileges.role_map.items()))
        )
    log(f"applied {counted(applied.applied, 'ownership, privilege and setting statement')}")
    if applied.not_applied:
        log(
            f"could not apply {counted(len(applied.not_applied), 'statement')} (the restoring role may not): "
            + "; ".join(applied.not_applied)
        )
