"""Pruning: which backups the retention policy deletes, and why; then deleting exactly those.

Kept: every pre-migration backup, the newest `keep_last` verified backups, everything younger than the
retention window, anything whose timestamp lies in the future (a skewed clock must not cost backups), and
incomplete uploads younger than a grace period (they may still be running). Age comes from the backup's
own timestamp, never from the object's LastModified, which a bucket copy resets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from backup_pipeline.core.catalog import BackupCatalog, BackupEntry
from backup_pipeline.core.errors import BackupError

INCOMPLETE_GRACE = timedelta(hours=24)
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_DELETE_FRACTION = 0.5


@dataclass(frozen=True)
class RetentionPolicy:
    retention_days: int
    keep_last: int
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
    """Retention would delete more than half of a database's backups; nothing was deleted."""


def plan_prune(entries: list[BackupEntry], policy: RetentionPolicy, now: datetime) -> list[PruneDecision]:
    """One decision per backup (newest first); `entries` must be newest first, as the catalog lists them."""
    cutoff = now - timedelta(days=policy.retention_days)
    newest_verified = {
        str(e.name) for e in [e for e in entries if e.verified and e.created_at <= now][: policy.keep_last]
    }
    decisions = []
    for entry in entries:
        name = str(entry.name)
        delete, reason = False, ""
        if entry.created_at > now + FUTURE_TOLERANCE:
            reason = "timestamp is in the future (clock skew?); never deleted"
        elif not entry.complete:
            if entry.created_at < now - policy.incomplete_grace:
                delete, reason = True, f"incomplete upload (no manifest) older than {_hours(policy.incomplete_grace)} h"
            else:
                reason = "incomplete upload, may still be in progress"
        elif entry.type == "pre-migration":
            reason = "pre-migration backups are kept"
        elif name in newest_verified:
            reason = f"one of the newest {policy.keep_last} verified backups"
        elif entry.created_at >= cutoff:
            reason = f"younger than {policy.retention_days} days"
        else:
            delete, reason = True, f"older than {policy.retention_days} days"
        decisions.append(
            PruneDecision(
                name=name,
                type=entry.type,
                created_at=entry.created_at,
                delete=delete,
                reason=reason,
                complete=entry.complete,
                keys=_deletion_order(entry),
            )
        )
    return decisions


def check_not_too_many(decisions: list[PruneDecision], where: str) -> None:
    complete = [d for d in decisions if d.complete]
    doomed = [d for d in complete if d.delete]
    if complete and len(doomed) > len(complete) * MAX_DELETE_FRACTION:
        raise RetentionRefused(
            f"retention refused to run for {where}: it would delete {len(doomed)} of {len(complete)} backups, more "
            "than half. Check the clock and BACKUP_RETENTION_DAYS; to prune anyway run the prune job with "
            "allow_large_prune: true (or `backup-db prune --force`)"
        )


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
