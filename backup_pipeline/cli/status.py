"""`backup-db status`: is every database protected right now? For a person, cron or CI.

Per database: its newest verified backup and that backup's age against the freshness window
(BACKUP_FRESHNESS_HOURS, `freshness_hours` in the databases file), aged by the backup's own timestamp as the
freshness check does; its last failed run and what is under way, from the Dagster instance when one exists.
Exit 0 only when every database is fresh; 1 when any is not (stale, no verified backup, or its storage could
not be read); 2 for bad usage or configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.output import ago, paint, print_json, when
from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.prune import newest_verified

EXIT_ALL_FRESH = 0
EXIT_NOT_FRESH = 1


@dataclass
class DatabaseStatus:
    key: str
    name_prefix: str | None
    storage: str
    freshness_hours: float
    fresh: bool = False
    newest_verified: dict | None = None
    newest_backup: dict | None = None
    problem: str | None = None
    last_failure: dict | None = None
    failed_since_newest_verified: bool = False
    under_way: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def show_status(ctx: CliContext, database_key: str | None, as_json: bool) -> int:
    databases = [ctx.db] if database_key else list(ctx.settings.databases)
    now = datetime.now(UTC)
    statuses = [database_status(ctx, db, now) for db in databases]
    runs_known = add_runs(ctx, statuses)
    all_fresh = all(s.fresh for s in statuses)
    if as_json:
        print_json(
            {
                "fresh": all_fresh,
                "runs_known": runs_known,
                "checked_at": now.isoformat(),
                "databases": [s.as_dict() for s in statuses],
            }
        )
    else:
        print(status_text(statuses, runs_known))
    return EXIT_ALL_FRESH if all_fresh else EXIT_NOT_FRESH


def database_status(ctx: CliContext, db: DatabaseSettings, now: datetime) -> DatabaseStatus:
    one = CliContext(settings=ctx.settings, db=db)
    status = DatabaseStatus(
        key=db.key, name_prefix=None, storage=ctx.storage.describe(), freshness_hours=db.freshness_hours
    )
    try:
        status.name_prefix = one.name_prefix
        entries = one.catalog().entries()
    except BackupError as error:
        status.problem = str(error)
        return status
    complete = [e for e in entries if e.complete and not e.in_future()]
    if complete:
        status.newest_backup = _backup(complete[0], now)
    newest = newest_verified(entries, now)
    if newest is not None:
        status.newest_verified = _backup(newest, now)
        status.fresh = status.newest_verified["age_hours"] <= db.freshness_hours
    return status


def add_runs(ctx: CliContext, statuses: list[DatabaseStatus]) -> bool:
    """Adds each database's last failure and runs under way; False when there is no Dagster instance to ask."""
    from backup_pipeline.cli.home import dagster_home_path

    if not dagster_home_path().is_dir():
        return False  # asked before Dagster is imported: without an instance there is nothing to read
    from backup_pipeline.cli.run_state import existing_instance, last_failures, runs_under_way

    with existing_instance(ctx.settings) as instance:
        if instance is None:
            return False
        failures = last_failures(instance, ctx.settings)
        under_way = runs_under_way(instance, ctx.settings)
    for status in statuses:
        failure = failures.get(status.key)
        if failure is not None:
            status.last_failure = failure.as_dict()
            newest_at = (status.newest_verified or {}).get("created_at")
            status.failed_since_newest_verified = newest_at is None or (
                failure.at is not None and failure.at > datetime.fromisoformat(newest_at)
            )
        status.under_way = [run.as_dict() for run in under_way.get(status.key, [])]
    return True


def _backup(entry, now: datetime) -> dict:
    return {
        "name": str(entry.name),
        "type": entry.type,
        "created_at": entry.created_at.isoformat(),
        "age_hours": round((now - entry.created_at).total_seconds() / 3600, 2),
        "verified": entry.verified,
        "size_bytes": entry.size_bytes,
    }


def status_text(statuses: list[DatabaseStatus], runs_known: bool) -> str:
    lines = []
    for status in statuses:
        title = status.name_prefix or status.key
        if status.key != "default" and status.name_prefix and status.name_prefix != status.key:
            title = f"{status.key} ({status.name_prefix})"
        if status.problem:
            lines.append(f"{title}: {paint('UNKNOWN', 'red')}: {status.problem}")
        elif status.newest_verified is None:
            lines.append(
                f"{title}: {paint('STALE', 'red')}: no verified backup in {status.storage} "
                f"(window {status.freshness_hours:g} h)"
            )
        else:
            newest = status.newest_verified
            word = paint("FRESH", "green") if status.fresh else paint("STALE", "red")
            state = "within" if status.fresh else "older than"
            lines.append(
                f"{title}: {word}: newest verified backup {newest['name']} taken "
                f"{ago(datetime.fromisoformat(newest['created_at']))} ({newest['age_hours']:.1f} h, {state} "
                f"the {status.freshness_hours:g} h window)"
            )
        newest_any = status.newest_backup
        if newest_any and (status.newest_verified is None or newest_any["name"] != status.newest_verified["name"]):
            lines.append(f"  newest backup {newest_any['name']} is not verified")
        failure = status.last_failure
        if failure:
            at = when(datetime.fromisoformat(failure["at"])) if failure["at"] else "?"
            since = " (since the newest verified backup)" if status.failed_since_newest_verified else ""
            message = f": {failure['message']}" if failure["message"] else ""
            lines.append(f"  last failure{since}: {failure['kind']} run {failure['run_id']} at {at}{message}")
        for run in status.under_way:
            backup = f" of {run['backup_id']}" if run["backup_id"] else ""
            lines.append(f"  under way: {run['kind']} run {run['run_id']}{backup} ({run['status'].lower()})")
    fresh = sum(1 for s in statuses if s.fresh)
    lines.append(f"{fresh} of {len(statuses)} database(s) fresh")
    if not runs_known:
        lines.append("(no Dagster instance at DAGSTER_HOME yet: failures and runs under way are not known)")
    return "\n".join(lines)
