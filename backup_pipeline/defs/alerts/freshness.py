"""The dead-man's switch: is there a verified backup of each database from the last BACKUP_FRESHNESS_HOURS?

Answered from storage, not from Dagster's event log: the newest backup whose verification marker exists,
aged by the backup's own timestamp (its name). A backup taken elsewhere (the command line on another
machine, a restored bucket) counts; re-verifying an old backup does not make it fresh, and a backup deleted
from the bucket no longer counts.

A sensor re-evaluates it every few minutes: it posts one Discord alert when backups go stale, repeats it at
most every STALE_ALERT_REPEAT while it lasts, and records the `verified_backup_fresh` asset check so the UI
shows it failing. The same check also runs at the end of each backup_job run and on demand from the UI.
"""

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.errors import BackupError
from backup_pipeline.defs.alerts.discord import DiscordClient
from backup_pipeline.defs.alerts.messages import fresh_again_text, stale_text
from backup_pipeline.defs.alerts.runs import database_name
from backup_pipeline.defs.names import STORAGE_RESOURCE_KEY, DefinitionNames, asset_url

FRESHNESS_CHECK = "verified_backup_fresh"
FRESHNESS_SENSOR_INTERVAL_S = 600
STALE_ALERT_REPEAT = timedelta(hours=6)
# The check result is recorded when it changes, and at least this often so the UI shows a recent evaluation.
CHECK_REPORT_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class FreshnessVerdict:
    fresh: bool
    limit_hours: float
    newest_name: str | None = None
    newest_at: datetime | None = None
    age_hours: float | None = None
    problem: str | None = None

    def description(self) -> str:
        if self.problem:
            return f"could not list backups: {self.problem}"
        if self.newest_name is None:
            return "there is no verified backup"
        state = "within" if self.fresh else "older than"
        return (
            f"newest verified backup {self.newest_name} is {self.age_hours:.1f} h old, {state} {self.limit_hours:g} h"
        )

    def metadata(self) -> dict:
        metadata = {"limit_hours": dg.MetadataValue.float(float(self.limit_hours))}
        if self.newest_name:
            metadata["newest_verified_backup"] = self.newest_name
            metadata["age_hours"] = dg.MetadataValue.float(round(self.age_hours, 2))
            metadata["newest_verified_at"] = dg.MetadataValue.timestamp(self.newest_at)
        return metadata


def verified_backup_freshness(catalog: BackupCatalog, limit_hours: float, now: datetime) -> FreshnessVerdict:
    newest = next((e for e in catalog.entries() if e.verified), None)  # entries are newest first
    if newest is None:
        return FreshnessVerdict(fresh=False, limit_hours=limit_hours)
    age_hours = (now - newest.created_at).total_seconds() / 3600
    return FreshnessVerdict(
        fresh=age_hours <= limit_hours,
        limit_hours=limit_hours,
        newest_name=str(newest.name),
        newest_at=newest.created_at,
        age_hours=age_hours,
    )


def check_freshness(resources, db: DatabaseSettings, now: datetime) -> FreshnessVerdict:
    """The verdict for one database, using the code location's resources; a storage problem is a stale verdict."""
    names = DefinitionNames(db)
    try:
        postgres = getattr(resources, names.postgres_resource)
        catalog = getattr(resources, STORAGE_RESOURCE_KEY).catalog(postgres, db.storage_prefix)
        return verified_backup_freshness(catalog, db.freshness_hours, now)
    except BackupError as error:
        return FreshnessVerdict(fresh=False, limit_hours=db.freshness_hours, problem=str(error))


def _required_resources(names: DefinitionNames) -> set[str]:
    return {names.postgres_resource, STORAGE_RESOURCE_KEY}


def build_freshness_check(db: DatabaseSettings) -> dg.AssetChecksDefinition:
    names = DefinitionNames(db)

    @dg.asset_check(
        asset=dg.AssetKey(names.asset_path("restore_verification")),
        name=FRESHNESS_CHECK,
        required_resource_keys=_required_resources(names),
        blocking=False,
        description=(
            f"Passes when storage holds a verified backup taken in the last {db.freshness_hours:g} hours "
            "(BACKUP_FRESHNESS_HOURS), aged by the backup's own timestamp."
        ),
    )
    def verified_backup_fresh(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        verdict = check_freshness(context.resources, db, datetime.now(UTC))
        return dg.AssetCheckResult(
            passed=verdict.fresh,
            severity=dg.AssetCheckSeverity.ERROR,
            description=verdict.description(),
            metadata=verdict.metadata(),
        )

    return verified_backup_fresh


@dataclass
class AlarmState:
    """What the sensor remembers between ticks (its cursor)."""

    alerted_at: str | None = None  # when the current stale alert was last posted; None: not alerting
    reported_fresh: bool | None = None
    reported_at: str | None = None

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "AlarmState":
        try:
            return cls(**json.loads(cursor)) if cursor else cls()
        except (ValueError, TypeError):
            return cls()

    def to_cursor(self) -> str:
        return json.dumps(asdict(self))


def _older_than(stamp: str | None, now: datetime, delta: timedelta) -> bool:
    return stamp is None or now - datetime.fromisoformat(stamp) >= delta


def build_freshness_sensor(
    db: DatabaseSettings, settings: Settings, client: DiscordClient, redact=lambda text: text
) -> dg.SensorDefinition:
    names = DefinitionNames(db)
    asset_key = dg.AssetKey(names.asset_path("restore_verification"))
    link = asset_url(settings.webserver_url, asset_key.path)
    # Running wherever the database is configured, so the UI's check stays current even without Discord.
    running = bool(os.environ.get(db.url_env)) or client.configured

    @dg.sensor(
        name=names.freshness_sensor,
        minimum_interval_seconds=FRESHNESS_SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        required_resource_keys=_required_resources(names),
        description=(
            f"Dead-man's switch for {db.key}: alerts on Discord when no verified backup exists from the last "
            f"{db.freshness_hours:g} hours (repeated every {STALE_ALERT_REPEAT.total_seconds() / 3600:g} h while "
            f"it lasts) and records the {FRESHNESS_CHECK} check."
        ),
    )
    def backup_freshness_sensor(context: dg.SensorEvaluationContext):
        now = datetime.now(UTC)
        verdict = check_freshness(context.resources, db, now)
        state = AlarmState.from_cursor(context.cursor)
        database = database_name(db)
        if not verdict.fresh and _older_than(state.alerted_at, now, STALE_ALERT_REPEAT):
            text = stale_text(
                database,
                verdict.limit_hours,
                verdict.newest_name,
                verdict.newest_at,
                verdict.age_hours,
                verdict.problem,
                link,
            )
            # Only a delivered alert starts the quiet period; an undelivered one is tried again next tick.
            if client.post(redact(text), log=context.log):
                state.alerted_at = now.isoformat()
        elif verdict.fresh and state.alerted_at is not None:
            client.post(
                redact(fresh_again_text(database, verdict.newest_name, verdict.age_hours, link)), log=context.log
            )
            state.alerted_at = None
        events = []
        if verdict.fresh != state.reported_fresh or _older_than(state.reported_at, now, CHECK_REPORT_EVERY):
            events.append(
                dg.AssetCheckEvaluation(
                    asset_key=asset_key,
                    check_name=FRESHNESS_CHECK,
                    passed=verdict.fresh,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=redact(verdict.description()),
                    metadata=verdict.metadata(),
                )
            )
            state.reported_fresh, state.reported_at = verdict.fresh, now.isoformat()
        return dg.SensorResult(asset_events=events, cursor=state.to_cursor(), skip_reason=redact(verdict.description()))

    return backup_freshness_sensor
