"""The retention plan (core/prune.py) as a pure function: which backups go, which stay, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_pipeline.core.catalog import BackupEntry
from backup_pipeline.core.names import BACKUP_TYPES, BackupId, BackupName
from backup_pipeline.core.prune import (
    INCOMPLETE_GRACE,
    RetentionPolicy,
    RetentionRefused,
    check_not_too_many,
    plan_prune,
)
from backup_pipeline.core.storage import StoredObject

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
POLICY = RetentionPolicy(retention_days=30, keep_last=2)


def entry(age: timedelta, backup_type: str = "daily", complete: bool = True, verified: bool = True) -> BackupEntry:
    name = BackupName("app", BackupId(created_at=NOW - age, type=backup_type))
    dump_key, manifest_key, verified_key = (
        f"db-backups/{name}{s}" for s in (".dump", ".dump.json", ".dump.verified.json")
    )
    return BackupEntry(
        name=name,
        dump=StoredObject(dump_key, 100),
        manifest_key=manifest_key if complete else None,
        verified_key=verified_key if complete and verified else None,
        keys=[dump_key] + ([manifest_key] if complete else []) + ([verified_key] if complete and verified else []),
    )


def plan(*entries: BackupEntry, policy: RetentionPolicy = POLICY) -> dict[str, tuple[bool, str]]:
    ordered = sorted(entries, key=lambda e: e.created_at, reverse=True)
    return {d.name: (d.delete, d.reason) for d in plan_prune(ordered, policy, NOW)}


def test_old_backups_go_but_the_newest_verified_and_every_pre_migration_one_stay():
    newest, second = entry(timedelta(days=40)), entry(timedelta(days=41))
    old = entry(timedelta(days=42))
    migration = entry(timedelta(days=400), "pre-migration")
    young = entry(timedelta(days=1), verified=False)
    decisions = plan(newest, second, old, migration, young)
    assert decisions[str(old.name)] == (True, "older than 30 days")
    assert decisions[str(newest.name)] == (False, "one of the newest 2 verified backups")
    assert decisions[str(second.name)] == (False, "one of the newest 2 verified backups")
    assert decisions[str(migration.name)] == (False, "pre-migration backups are kept")
    assert decisions[str(young.name)] == (False, "younger than 30 days")


def test_unverified_backups_do_not_count_towards_keep_last():
    unverified = entry(timedelta(days=35), verified=False)
    verified = entry(timedelta(days=36))
    decisions = plan(unverified, verified, policy=RetentionPolicy(retention_days=30, keep_last=1))
    assert decisions[str(unverified.name)][0] is True
    assert decisions[str(verified.name)][0] is False


def test_incomplete_uploads_are_removed_only_after_the_grace_period():
    running = entry(INCOMPLETE_GRACE - timedelta(minutes=1), complete=False)
    abandoned = entry(INCOMPLETE_GRACE + timedelta(minutes=1), complete=False)
    decisions = plan(running, abandoned)
    assert decisions[str(running.name)] == (False, "incomplete upload, may still be in progress")
    assert decisions[str(abandoned.name)] == (True, "incomplete upload (no manifest) older than 24 h")


def test_an_old_incomplete_upload_a_live_run_still_writes_is_kept():
    # A large dump can outlast the grace period: while its run holds the writer lock, it is not abandoned.
    writing = entry(timedelta(days=3), complete=False)
    abandoned = entry(timedelta(days=3, minutes=1), complete=False)
    ordered = [writing, abandoned]
    decisions = {d.name: (d.delete, d.reason) for d in plan_prune(ordered, POLICY, NOW, writing={str(writing.name)})}
    assert decisions[str(writing.name)] == (
        False,
        "incomplete upload, a run is still writing it (its writer lock is held)",
    )
    assert decisions[str(abandoned.name)] == (True, "incomplete upload (no manifest) older than 24 h")
    # When the server could not say which runs are writing, no incomplete upload goes.
    unknown = plan_prune(ordered, POLICY, NOW, writing=None)
    assert [d.delete for d in unknown] == [False, False]
    assert all("could not say whether a run still writes it" in d.reason for d in unknown)


def test_a_timestamp_in_the_future_is_never_deleted():
    future = entry(-timedelta(days=3))
    assert plan(future)[str(future.name)] == (False, "timestamp is in the future (clock skew?); never deleted")


def test_manifests_and_markers_are_deleted_before_the_dump():
    old = entry(timedelta(days=90))
    [decision] = [
        d for d in plan_prune([entry(timedelta(days=1)), entry(timedelta(days=2)), old], POLICY, NOW) if d.delete
    ]
    assert decision.keys[-1].endswith(".dump") and all(not k.endswith(".dump") for k in decision.keys[:-1])


def test_deleting_more_than_half_is_refused_with_a_typed_error():
    entries = [entry(timedelta(days=100 + i)) for i in range(5)]
    decisions = plan_prune(entries, RetentionPolicy(retention_days=30, keep_last=1), NOW)
    with pytest.raises(RetentionRefused, match="would delete 4 of 5 backups, more than half"):
        check_not_too_many(decisions, "app")
    check_not_too_many(decisions[:2], "app")  # 1 of 2: not more than half


@settings(max_examples=60, deadline=None)
@given(
    backups=st.lists(
        st.tuples(
            st.integers(min_value=-5 * 24, max_value=400 * 24),  # age in hours; negative: in the future
            st.sampled_from(BACKUP_TYPES),
            st.booleans(),  # complete
            st.booleans(),  # verified
        ),
        max_size=25,
        unique_by=lambda b: b[0],
    ),
    retention_days=st.integers(min_value=1, max_value=60),
    keep_last=st.integers(min_value=0, max_value=5),
)
def test_the_plan_never_deletes_what_the_policy_keeps(backups, retention_days, keep_last):
    entries = sorted(
        (entry(timedelta(hours=age), kind, complete, verified) for age, kind, complete, verified in backups),
        key=lambda e: e.created_at,
        reverse=True,
    )
    decisions = plan_prune(entries, RetentionPolicy(retention_days, keep_last), NOW)
    assert [d.name for d in decisions] == [str(e.name) for e in entries]
    newest_verified = [str(e.name) for e in entries if e.verified and e.created_at <= NOW][:keep_last]
    for e, d in zip(entries, decisions, strict=True):
        if d.delete:
            assert e.type != "pre-migration" or not e.complete
            assert str(e.name) not in newest_verified
            assert e.created_at < NOW - (timedelta(days=retention_days) if e.complete else INCOMPLETE_GRACE)
        elif e.complete and e.type != "pre-migration" and str(e.name) not in newest_verified:
            assert e.created_at >= NOW - timedelta(days=retention_days)
