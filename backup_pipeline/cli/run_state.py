"""What the Dagster instance knows about each database's runs: which are under way, and the last that failed.

Read-only verbs (`status`, `list`, `delete`'s checks) ask only an instance that already exists: none is
created for a question. Imports Dagster, so callers import this module only when they need an answer.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from backup_pipeline.cli.home import existing_dagster_home
from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.defs.alerts.announce import announcer
from backup_pipeline.defs.names import BACKUP_ID_TAG, PARTITION_TAG
from backup_pipeline.defs.run_lifecycle import fail_dead_runs, op_config_with, run_database_and_kind, run_failure_error

UNDER_WAY = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
# Failed runs read to find each database's last failure (newest first): enough for a few hundred databases.
FAILED_RUNS_READ = 500
# A failed restore says nothing about whether a database is protected.
PROTECTION_KINDS = ("backup", "verify", "prune", "request")


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    kind: str
    status: str
    backup_id: str | None
    at: datetime | None
    message: str | None = None

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "backup_id": self.backup_id,
            "at": self.at.isoformat() if self.at else None,
            "message": self.message,
        }


@contextlib.contextmanager
def existing_instance(settings: Settings):
    """The Dagster instance at DAGSTER_HOME when it exists (runs whose process died failed first, as every
    command that opens it does), else None."""
    if existing_dagster_home() is None:
        yield None
        return
    with dg.DagsterInstance.get() as instance:
        fail_dead_runs(instance, announcer(settings, instance))
        yield instance


def runs_under_way(instance: dg.DagsterInstance, settings: Settings) -> dict[str, list[RunSummary]]:
    """Database key → its runs that are queued, starting, running or being canceled."""
    found: dict[str, list[RunSummary]] = {}
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=UNDER_WAY)):
        db, summary = _summary(record, settings)
        if db is not None:
            found.setdefault(db.key, []).append(summary)
    return found


def last_failures(instance: dg.DagsterInstance, settings: Settings) -> dict[str, RunSummary]:
    """Database key → its newest failed backup, verification, prune or request run, with the failing step's
    message."""
    found: dict[str, RunSummary] = {}
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=FAILED_RUNS_READ
    )
    for record in records:
        db, summary = _summary(record, settings)
        if db is None or db.key in found or summary.kind not in PROTECTION_KINDS:
            continue
        message = run_failure_error(instance, summary.run_id).message or None
        found[db.key] = RunSummary(**{**summary.__dict__, "message": message})
    return found


def verifications_under_way(instance: dg.DagsterInstance, settings: Settings, db: DatabaseSettings) -> set[str]:
    """The backup ids of `db` that a backup or verification run under way is verifying (or about to)."""
    return {
        run.backup_id
        for run in runs_under_way(instance, settings).get(db.key, [])
        if run.kind in ("backup", "verify") and run.backup_id
    }


def runs_for_backup(instance: dg.DagsterInstance, settings: Settings, db: DatabaseSettings, backup_id: str):
    """The runs under way that concern one backup of `db` (its backup, verification or restore)."""
    return [
        run
        for run in runs_under_way(instance, settings).get(db.key, [])
        if run.backup_id == backup_id or (run.kind == "restore" and run.backup_id is None)
    ]


def _summary(record, settings: Settings) -> tuple[DatabaseSettings | None, RunSummary]:
    run = record.dagster_run
    db, kind = run_database_and_kind(run, settings)
    backup_id = run.tags.get(PARTITION_TAG) or run.tags.get(BACKUP_ID_TAG)
    if kind == "restore":
        backup_id = _restore_backup_id(run)
    at = record.end_time or record.start_time or record.create_timestamp.timestamp()
    when = datetime.fromtimestamp(at, UTC) if isinstance(at, int | float) else None
    return db, RunSummary(run.run_id, kind, run.status.value, backup_id, when)


def _restore_backup_id(run) -> str | None:
    """The backup id a restore run's config names (`backup_name: app_manual_...`), or None when not said."""
    name = op_config_with(run.run_config, "backup_name").get("backup_name")
    if not isinstance(name, str) or not name:
        return None
    parts = name.removesuffix(".dump").rsplit("_", 3)
    return "_".join(parts[-3:]) if len(parts) >= 3 else None
