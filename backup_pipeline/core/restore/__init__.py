"""Restoring: a stored backup streamed through sha256 into pg_restore.

Shared by verification (into a scratch database) and by `restore_job`. A restore always goes into a scratch
database first, renamed to the user's name only once it matched its manifest: a new database appears under its
name only complete, and a database restored over is swapped with its new contents in one transaction, so a
failed or killed restore leaves the original as it was.

By concern: `plan` (the restore plan, the pg_restore chosen, constants), `checks` (the target, whose backup it
is, the roles it names), `toc` (what the target's role may create), `runners` (streamed, staged for --jobs,
directory format) over `staging`, `processes` and `schema`, `watchdog` (stalls), `stopping` (cancel and
signals), `swap` (--replace, replication state), `outcome` (what a restore did), `database` (restore_job's
restore from start to end), `download` (`backup-db download`).
"""

from backup_pipeline.core.restore.checks import (
    NO_PRIVILEGES_NOTE,
    check_backup_roles,
    check_backup_source,
    check_restore_target,
    note_lost_database,
)
from backup_pipeline.core.restore.database import restore_to_database
from backup_pipeline.core.restore.download import HELD_BACK_BYTES, download_to
from backup_pipeline.core.restore.outcome import RestoreOutcome, compare_row_counts
from backup_pipeline.core.restore.plan import (
    MAX_RESTORE_JOBS,
    RESTORE_CONFIRMATION,
    Log,
    RestorePlan,
    check_restore_jobs,
    describe_versions,
    restore_client,
)
from backup_pipeline.core.restore.runners import restore_into
from backup_pipeline.core.restore.schema import archive_schema_sql
from backup_pipeline.core.restore.stopping import RestoreStopped, StopCheck
from backup_pipeline.core.restore.swap import kept_name
from backup_pipeline.core.restore.toc import TargetRole, TocFilter, filter_table_of_contents
from backup_pipeline.core.stored_backup import checked_manifest

__all__ = [
    "HELD_BACK_BYTES",
    "MAX_RESTORE_JOBS",
    "NO_PRIVILEGES_NOTE",
    "RESTORE_CONFIRMATION",
    "Log",
    "RestoreOutcome",
    "RestorePlan",
    "RestoreStopped",
    "StopCheck",
    "TargetRole",
    "TocFilter",
    "archive_schema_sql",
    "check_backup_roles",
    "check_backup_source",
    "check_restore_jobs",
    "check_restore_target",
    "checked_manifest",
    "compare_row_counts",
    "describe_versions",
    "download_to",
    "filter_table_of_contents",
    "kept_name",
    "note_lost_database",
    "restore_client",
    "restore_into",
    "restore_to_database",
]
