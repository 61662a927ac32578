"""The dead-man's switch: is there a verified backup of each database from the last BACKUP_FRESHNESS_HOURS?

Answered from storage, not from Dagster's event log: the newest backup whose verification marker exists,
aged by the backup's own timestamp (its name). A backup taken elsewhere (the command line on another
machine, a restored bucket) counts; re-verifying an old backup does not make it fresh, and a backup deleted
from the bucket no longer counts.

One sensor re-evaluates it for every database every few minutes: it sends one alert to every configured channel
when backups go stale, repeats it at most every STALE_ALERT_REPEAT while it lasts, and records the `verified_backup_fresh` asset check so the UI
shows it failing. The same check also runs at the end of each backup_job run and on demand from the UI.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.notify.events import Event, FreshnessFacts
from backup_pipeline.core.notify.notifier import Notifier
from backup_pipeline.core.prune import FUTURE_TOLERANCE, newest_verified
from backup_pipeline.defs.alerts.runs import database_name
from backup_pipeline.defs.metrics import publish_metrics
from backup_pipeline.defs.names import FRESHNESS_SENSOR, DefinitionNames, asset_url
from backup_pipeline.defs.resources import BackupStorageResource, PostgresResource

FRESHNESS_CHECK = "verified_backup_fresh"
FRESHNESS_SENSOR_INTERVAL_S = 600
FRESHNESS_WORKERS = 8
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
    # Verified backups stamped in the future beyond FUTURE_TOLERANCE (a skewed clock): they prove nothing about
    # today, and counting them would keep the switch quiet until that date.
    ignored_future: tuple[str, ...] = ()

    def description(self) -> str:
        if self.problem:
            return f"could not list backups: {self.problem}"
        if self.newest_name is None:
            text = "there is no verified backup"
        else:
            state = "within" if self.fresh else "older than"
            text = (
                f"newest verified backup {self.newest_name} is {self.age_hours:.1f} h old, {state} "
                f"{self.limit_hours:g} h"
            )
        if self.ignored_future:
            shown = ", ".join(self.ignored_future[:3]) + (" …" if len(self.ignored_future) > 3 else "")
            text += f"; ignored {len(self.ignored_future)} backup(s) stamped in the future (clock skew?): {shown}"
        return text

    def facts(self) -> FreshnessFacts:
        return FreshnessFacts(
            limit_hours=self.limit_hours,
            newest_name=self.newest_name,
            newest_at=self.newest_at,
            age_hours=self.age_hours,
            problem=self.problem,
            ignored_future=self.ignored_future,
        )

    def metadata(self) -> dict:
        metadata = {"limit_hours": dg.MetadataValue.float(float(self.limit_hours))}
        if self.newest_name:
            metadata["newest_verified_backup"] = self.newest_name
            metadata["age_hours"] = dg.MetadataValue.float(round(self.age_hours, 2))
            metadata["newest_verified_at"] = dg.MetadataValue.timestamp(self.newest_at)
        if self.ignored_future:
            metadata["ignored_future_backups"] = dg.MetadataValue.int(len(self.ignored_future))
        return metadata


def verified_backup_freshness(catalog: BackupCatalog, limit_hours: float, now: datetime) -> FreshnessVerdict:
    entries = catalog.entries()  # newest first
    future = tuple(str(e.name) for e in entries if e.verified and e.created_at > now + FUTURE_TOLERANCE)
    newest = newest_verified(entries, now)
    if newest is None:
        return FreshnessVerdict(fresh=False, limit_hours=limit_hours, ignored_future=future)
    age_hours = (now - newest.created_at).total_seconds() / 3600
    return FreshnessVerdict(
        fresh=age_hours <= limit_hours,
        limit_hours=limit_hours,
        newest_name=str(newest.name),
        newest_at=newest.created_at,
        age_hours=age_hours,
        ignored_future=future,
    )


def check_freshness(
    postgres: PostgresResource, backup_storage: BackupStorageResource, db: DatabaseSettings, now: datetime
) -> FreshnessVerdict:
    """The verdict for one database, using the code location's resources; a storage problem is a stale verdict."""
    try:
        catalog = backup_storage.catalog(postgres.database(db), db.storage_prefix)
        return verified_backup_freshness(catalog, db.freshness_hours, now)
    except BackupError as error:
        return FreshnessVerdict(fresh=False, limit_hours=db.freshness_hours, problem=str(error))


def build_freshness_checks(databases: list[DatabaseSettings]) -> dg.AssetChecksDefinition:
    """Every database's verified_backup_fresh check, as one multi-check: a run evaluates the selected ones.

    One op for all databases rather than one each: each op costs the code location's load time.
    """
    by_key = {}
    specs = []
    for db in databases:
        asset_key = dg.AssetKey(DefinitionNames(db).asset_path("restore_verification"))
        by_key[dg.AssetCheckKey(asset_key, FRESHNESS_CHECK)] = db
        specs.append(
            dg.AssetCheckSpec(
                FRESHNESS_CHECK,
                asset=asset_key,
                blocking=False,
                description=(
                    f"Passes when storage holds a verified backup taken in the last {db.freshness_hours:g} hours "
                    "(BACKUP_FRESHNESS_HOURS), aged by the backup's own timestamp."
                ),
            )
        )

    @dg.multi_asset_check(
        name=FRESHNESS_CHECK,
        specs=specs,
        can_subset=True,
    )
    def verified_backup_fresh(
        context: dg.AssetCheckExecutionContext, postgres: PostgresResource, backup_storage: BackupStorageResource
    ):
        now = datetime.now(UTC)
        for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.asset_key.path):
            verdict = check_freshness(postgres, backup_storage, by_key[check_key], now)
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=FRESHNESS_CHECK,
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
    def from_dict(cls, saved: dict | None) -> "AlarmState":
        try:
            return cls(**saved) if saved else cls()
        except TypeError:
            return cls()


def _older_than(stamp: str | None, now: datetime, delta: timedelta) -> bool:
    return stamp is None or now - datetime.fromisoformat(stamp) >= delta


def build_freshness_sensor(settings: Settings, notifier: Notifier) -> dg.SensorDefinition:
    """The one dead-man's switch for every database: each database's alarm state is kept in the cursor."""
    databases = list(settings.databases)
    # Running wherever a database is configured, so the UI's checks stay current even without a channel.
    running = any(os.environ.get(db.url_env) for db in databases) or notifier.configured
    limits = sorted({db.freshness_hours for db in databases})

    @dg.sensor(
        name=FRESHNESS_SENSOR,
        minimum_interval_seconds=FRESHNESS_SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Dead-man's switch for every database: alerts every configured channel when one has no verified backup from the "
            f"last {'/'.join(f'{h:g}' for h in limits)} hours (repeated every "
            f"{STALE_ALERT_REPEAT.total_seconds() / 3600:g} h while it lasts) and records its {FRESHNESS_CHECK} check."
        ),
    )
    def backup_freshness_sensor(
        context: dg.SensorEvaluationContext, postgres: PostgresResource, backup_storage: BackupStorageResource
    ):
        now = datetime.now(UTC)
        states = _states_from_cursor(context.cursor)
        # Listing storage is I/O: hundreds of databases are checked a few at a time, not one after another.
        with ThreadPoolExecutor(max_workers=FRESHNESS_WORKERS) as pool:
            verdicts = list(pool.map(lambda db: check_freshness(postgres, backup_storage, db, now), databases))
            # Ages move on between backups, and a Pushgateway keeps only what was pushed last.
            list(pool.map(lambda db: publish_metrics(postgres, backup_storage, db, context.log.warning), databases))
        events, stale = [], 0
        for db, verdict in zip(databases, verdicts, strict=True):
            state = AlarmState.from_dict(states.get(db.key))
            event = _alarm(db, verdict, state, now, settings, notifier, context.log)
            if event is not None:
                events.append(event)
            states[db.key] = asdict(state)
            stale += not verdict.fresh
        summary = f"{len(databases) - stale} of {len(databases)} databases have a fresh verified backup"
        if len(databases) == 1:
            summary = notifier.redact(verdicts[0].description())
        return dg.SensorResult(asset_events=events, cursor=json.dumps(states), skip_reason=summary)

    return backup_freshness_sensor


def _alarm(db, verdict, state, now, settings, notifier: Notifier, log):
    """Sends the stale (or fresh-again) alert when due; returns the check evaluation to record, if any."""
    names = DefinitionNames(db)
    asset_key = dg.AssetKey(names.asset_path("restore_verification"))
    link = asset_url(settings.webserver_url, asset_key.path)
    database = database_name(db)
    if not verdict.fresh and _older_than(state.alerted_at, now, STALE_ALERT_REPEAT):
        # Only a delivered alert starts the quiet period; an undelivered one is tried again next tick.
        if notifier.notify([Event.stale(database, verdict.facts(), link, db.key)], log=log):
            state.alerted_at = now.isoformat()
    elif verdict.fresh and state.alerted_at is not None:
        notifier.notify([Event.recovered(database, verdict.facts(), link, db.key)], log=log)
        state.alerted_at = None
    if verdict.fresh == state.reported_fresh and not _older_than(state.reported_at, now, CHECK_REPORT_EVERY):
        return None
    state.reported_fresh, state.reported_at = verdict.fresh, now.isoformat()
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=FRESHNESS_CHECK,
        passed=verdict.fresh,
        severity=dg.AssetCheckSeverity.ERROR,
        description=notifier.redact(verdict.description()),
        metadata=verdict.metadata(),
    )


def _states_from_cursor(cursor: str | None) -> dict:
    try:
        states = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    return states if isinstance(states, dict) else {}
