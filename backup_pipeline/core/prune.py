"""Pruning: which backups the retention policy deletes, and why; then deleting exactly those.

`plan_prune` is the whole policy, a pure function of the listed backups, the policy and the time. Kept:
anything whose timestamp lies in the future (a skewed clock must not cost backups), incomplete uploads
younger than a grace period (they may still be running) or that a live run is still writing (the caller
passes the names whose writer lock is held: a dump of a large database can take longer than the grace), every pre-migration backup (or, with their own
window, those younger than it), the newest `keep_last` verified backups, everything younger than the
retention window, the newest verified backup of each of the last `keep_daily` days, `keep_weekly` ISO weeks,
`keep_monthly` months and `keep_yearly` years that have one (grandfather-father-son, counted over periods
that hold a backup, so an outage never eats the history), and backups named as protected by the caller (the
last good backup before one that failed its health checks). Each kept backup's reason names the rule that
kept it: the first that applies, in that order (pre-migration, keep-last, the window, GFS, protection).

Nothing is deleted on one observation: a listing may leave out an object that exists (an eventually
consistent store, a proxy, a paginator's bad page). `confirmed_entries` reads each backup the policy would
delete again by name (HEAD of its dump, manifest and verification record) and plans again with what it
found, until every backup the plan deletes has been confirmed, so a backup whose manifest is found is never
deleted as incomplete, and keep-last and the more-than-half guard count what the confirmation found.

The circuit breaker: while the newest verified backup is older than the freshness window (backups are
failing), nothing is deleted at all. Age comes from the backup's own timestamp, never from the object's
LastModified, which a bucket copy resets.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from backup_pipeline.core.catalog import BackupCatalog, BackupEntry
from backup_pipeline.core.errors import BackupError

INCOMPLETE_GRACE = timedelta(hours=24)
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_DELETE_FRACTION = 0.5
# Backups looked up at once when confirming a plan (each is three small HEAD requests).
CONFIRM_CONCURRENCY = 16
BREAKER_MARK = "circuit breaker"

# GFS rules: (policy field, what a period is called, the period a timestamp falls in).
GFS_RULES = (
    ("keep_daily", "day", lambda at: at.strftime("%Y-%m-%d")),
    ("keep_weekly", "week", lambda at: "{}-W{:02d}".format(*at.isocalendar()[:2])),
    ("keep_monthly", "month", lambda at: at.strftime("%Y-%m")),
    ("keep_yearly", "year", lambda at: at.strftime("%Y")),
)


@dataclass(frozen=True)
class RetentionPolicy:
    retention_days: int
    keep_last: int
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    # None: pre-migration backups are kept forever; a number: they are kept that many days (and then by the
    # rules above, except the general window).
    pre_migration_days: int | None = None
    # The circuit breaker: nothing is deleted while the newest verified backup is older than this; None: off.
    freshness_hours: float | None = None
    incomplete_grace: timedelta = INCOMPLETE_GRACE


@dataclass
class PruneDecision:
    name: str
    type: str
    created_at: datetime
    delete: bool
    reason: str
    complete: bool
    keys: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "created_at": self.created_at.isoformat(),
            "action": "delete" if self.delete else "keep",
            "reason": self.reason,
            "keys": self.keys if self.delete else [],
        }


class RetentionRefused(BackupError):
    """Retention would delete more than half of a database's backups, or backups are failing; nothing was deleted."""


def newest_verified(entries: list[BackupEntry], now: datetime) -> BackupEntry | None:
    """The newest verified backup not stamped in the future (beyond the tolerance); entries newest first."""
    return next((e for e in entries if e.verified and e.created_at <= now + FUTURE_TOLERANCE), None)


def breaker_reason(entries: list[BackupEntry], policy: RetentionPolicy, now: datetime) -> str | None:
    """Why the circuit breaker holds (nothing may be deleted), or None when retention may run."""
    if policy.freshness_hours is None:
        return None
    newest = newest_verified(entries, now)
    if newest is None:
        return f"{BREAKER_MARK}: there is no verified backup, so nothing is deleted until one is taken"
    age_hours = (now - newest.created_at).total_seconds() / 3600
    if age_hours <= policy.freshness_hours:
        return None
    return (
        f"{BREAKER_MARK}: the newest verified backup {newest.name} is {age_hours:.1f} h old, older than the "
        f"{policy.freshness_hours:g} h freshness window (BACKUP_FRESHNESS_HOURS): backups are failing, so nothing "
        "is deleted until a new one is verified"
    )


def plan_prune(
    entries: list[BackupEntry],
    policy: RetentionPolicy,
    now: datetime,
    protected: Mapping[str, str] | None = None,
    writing: Collection[str] | None = frozenset(),
) -> list[PruneDecision]:
    """One decision per backup (newest first); `entries` must be newest first, as the catalog lists them.

    `protected` maps backup names to the reason they must stay (see health.previous_good_backups).
    `writing` names the backups a live run is writing (their writer lock is held, core/backup.py); None when
    that could not be asked, and then no incomplete upload is deleted.
    """
    protected = protected or {}
    breaker = breaker_reason(entries, policy, now)
    keepers = _rule_keepers(entries, policy, now)
    cutoff = now - timedelta(days=policy.retention_days)
    decisions = []
    for entry in entries:
        name = str(entry.name)
        delete, reasons = False, []
        if entry.created_at > now + FUTURE_TOLERANCE:
            reasons.append("timestamp is in the future (clock skew?); never deleted")
        elif not entry.complete:
            if writing is not None and name in writing:
                reasons.append("incomplete upload, a run is still writing it (its writer lock is held)")
            elif writing is None:
                reasons.append(
                    "incomplete upload, kept: the database server could not say whether a run still writes it"
                )
            elif entry.created_at < now - policy.incomplete_grace:
                delete = True
                reasons.append(f"incomplete upload (no manifest) older than {_hours(policy.incomplete_grace)} h")
            else:
                reasons.append("incomplete upload, may still be in progress")
        else:
            reason = _keep_reason(entry, policy, cutoff, now, keepers.get(name, []), protected.get(name))
            reasons = [reason] if reason else []
            if not reasons:
                delete = True
                window = (
                    f"pre-migration window of {policy.pre_migration_days} days"
                    if entry.type == "pre-migration"
                    else f"{policy.retention_days} days"
                )
                reasons.append(f"older than {window}")
        if delete and breaker:
            delete, reasons = False, [breaker]
        decisions.append(
            PruneDecision(
                name=name,
                type=entry.type,
                created_at=entry.created_at,
                delete=delete,
                reason="; ".join(reasons),
                complete=entry.complete,
                keys=_deletion_order(entry),
            )
        )
    return decisions


def _keep_reason(entry, policy: RetentionPolicy, cutoff, now, rules: list[str], protection: str | None) -> str | None:
    """The rule that keeps a complete backup (the first that applies, in the order users know), or None."""
    if entry.type == "pre-migration":
        if policy.pre_migration_days is None:
            return "pre-migration backups are kept"
        if entry.created_at >= now - timedelta(days=policy.pre_migration_days):
            return f"pre-migration, younger than {policy.pre_migration_days} days"
    keep_last = [r for r in rules if r.startswith("one of the newest")]
    if keep_last:
        return keep_last[0]
    if entry.type != "pre-migration" and entry.created_at >= cutoff:
        return f"younger than {policy.retention_days} days"
    if rules:
        return rules[0]
    return protection


def _rule_keepers(entries: list[BackupEntry], policy: RetentionPolicy, now: datetime) -> dict[str, list[str]]:
    """Backup name → the count rules (keep-last, GFS) that keep it. Only verified, present-day backups count."""
    candidates = [e for e in entries if e.verified and e.created_at <= now + FUTURE_TOLERANCE]
    kept: dict[str, list[str]] = {}
    for entry in candidates[: policy.keep_last]:
        kept.setdefault(str(entry.name), []).append(f"one of the newest {policy.keep_last} verified backups")
    for rule, period_name, period_of in GFS_RULES:
        wanted = getattr(policy, rule)
        seen: set[str] = set()
        for entry in candidates:  # newest first: the first of each period is its newest backup
            if len(seen) >= wanted:
                break
            period = period_of(entry.created_at)
            if period in seen:
                continue
            seen.add(period)
            kept.setdefault(str(entry.name), []).append(
                f"{rule} {wanted}: newest verified backup of the {period_name} {period}"
            )
    return kept


def check_not_too_many(decisions: list[PruneDecision], where: str) -> None:
    complete = [d for d in decisions if d.complete]
    doomed = [d for d in complete if d.delete]
    if complete and len(doomed) > len(complete) * MAX_DELETE_FRACTION:
        raise RetentionRefused(
            f"retention refused to run for {where}: it would delete {len(doomed)} of {len(complete)} backups, more "
            "than half. Check the clock and BACKUP_RETENTION_DAYS; to prune anyway run the prune job with "
            "allow_large_prune: true (or `backup-db prune --force`)"
        )


def check_breaker(entries: list[BackupEntry], policy: RetentionPolicy, now: datetime, where: str) -> None:
    """Raises RetentionRefused while the circuit breaker holds, so the refusal fails the run and alerts."""
    reason = breaker_reason(entries, policy, now)
    if reason is not None:
        raise RetentionRefused(f"retention refused to run for {where}: {reason}")


def confirmed_entries(
    catalog: BackupCatalog, entries: list[BackupEntry], doomed_by: Callable[[list[BackupEntry]], list[PruneDecision]]
) -> list[BackupEntry]:
    """`entries` with every backup that `doomed_by` (a plan) would delete looked up again by name, planning again
    with what was found until the plan deletes only confirmed backups. Each backup is looked up at most once."""
    confirmed: set[str] = set()
    while True:
        unconfirmed = {d.name for d in doomed_by(entries) if d.delete} - confirmed
        pending = [entry for entry in entries if str(entry.name) in unconfirmed]
        if not pending:
            return entries
        with ThreadPoolExecutor(max_workers=min(len(pending), CONFIRM_CONCURRENCY)) as pool:
            found = {str(e.name): e for e in pool.map(lambda entry: catalog.look_up(entry.name), pending)}
        confirmed |= set(found)
        # A backup none of whose objects exists any more is gone: nothing to keep or delete.
        entries = [found.get(str(e.name), e) for e in entries]
        entries = [e for e in entries if e.keys]


def apply_prune(catalog: BackupCatalog, decisions: list[PruneDecision]) -> list[PruneDecision]:
    doomed = [d for d in decisions if d.delete]
    # Manifests and markers go first, all of them before any dump: should a batch fail midway, what is left
    # is an incomplete upload, never a listed backup whose dump is gone.
    catalog.storage.delete_many([k for d in doomed for k in d.keys if not k.endswith(".dump")])
    catalog.storage.delete_many([k for d in doomed for k in d.keys if k.endswith(".dump")])
    return doomed


def _deletion_order(entry: BackupEntry) -> list[str]:
    return sorted(entry.keys, key=lambda k: k.endswith(".dump"))


def _hours(delta: timedelta) -> int:
    return int(delta.total_seconds() // 3600)
