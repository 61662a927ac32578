"""The retention policy as a pure function: generated histories (ages, gaps, clock skew, failed verifications,
incomplete uploads) against the rules users rely on, and a year of daily backups through GFS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from backup_pipeline.core.catalog import BackupEntry
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.prune import FUTURE_TOLERANCE, GFS_RULES, RetentionPolicy, plan_prune
from backup_pipeline.core.storage import StoredObject

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
PREFIX = "app"


def entry(created_at: datetime, backup_type: str = "daily", complete: bool = True, verified: bool = True):
    name = BackupName(prefix=PREFIX, id=BackupId(created_at=created_at.replace(microsecond=0), type=backup_type))
    base = f"db-backups/{name}.dump"
    found = BackupEntry(name=name, dump=StoredObject(key=base, size=100), keys=[base])
    if complete:
        found.manifest_key = base + ".json"
        found.keys.append(found.manifest_key)
        if verified:
            found.verified_key = base + ".verified.json"
            found.keys.append(found.verified_key)
    return found


def newest_first(entries):
    unique = {str(e.name): e for e in entries}
    return sorted(unique.values(), key=lambda e: e.created_at, reverse=True)


# A history: backups at ages from minutes to ~3 years, with gaps, some in the future (skew), some not verified.
backups = st.lists(
    st.builds(
        entry,
        created_at=st.one_of(
            st.integers(min_value=-3 * 24 * 3600, max_value=3 * 365 * 24 * 3600).map(
                lambda s: NOW - timedelta(seconds=s)
            ),
            st.integers(min_value=0, max_value=400).map(lambda d: NOW - timedelta(days=d, hours=-6)),
        ),
        backup_type=st.sampled_from(["daily", "daily", "daily", "manual", "pre-migration"]),
        complete=st.sampled_from([True, True, True, False]),
        verified=st.sampled_from([True, True, True, False]),
    ),
    max_size=80,
).map(newest_first)

policies = st.builds(
    RetentionPolicy,
    retention_days=st.integers(min_value=1, max_value=60),
    keep_last=st.integers(min_value=0, max_value=10),
    keep_daily=st.integers(min_value=0, max_value=10),
    keep_weekly=st.integers(min_value=0, max_value=8),
    keep_monthly=st.integers(min_value=0, max_value=12),
    keep_yearly=st.integers(min_value=0, max_value=3),
    pre_migration_days=st.none() | st.integers(min_value=1, max_value=400),
    freshness_hours=st.none() | st.sampled_from([26.0, 72.0, 24.0 * 365 * 5]),
)


def kept_names(decisions) -> set[str]:
    return {d.name for d in decisions if not d.delete}


def present(entries, now=NOW):
    return [e for e in entries if e.created_at <= now + FUTURE_TOLERANCE]


@settings(max_examples=150, deadline=None)
@given(history=backups, policy=policies)
def test_what_is_never_deleted(history, policy):
    decisions = {d.name: d for d in plan_prune(history, policy, NOW)}
    assert list(decisions) == [str(e.name) for e in history]
    for e in history:
        decision = decisions[str(e.name)]
        if e.created_at > NOW + FUTURE_TOLERANCE:
            assert not decision.delete and "future" in decision.reason
        elif not e.complete and e.created_at >= NOW - policy.incomplete_grace:
            assert not decision.delete
        elif e.complete and e.type != "pre-migration" and e.created_at >= NOW - timedelta(days=policy.retention_days):
            assert not decision.delete, decision
        elif e.complete and e.type == "pre-migration" and policy.pre_migration_days is None:
            assert not decision.delete and "pre-migration backups are kept" in decision.reason
        # Every decision says why, and a deletion never passes for a keep.
        assert decision.reason
        if decision.delete:
            assert "older than" in decision.reason


@settings(max_examples=150, deadline=None)
@given(history=backups, policy=policies)
def test_never_fewer_than_keep_last_verified_and_gfs_keeps_the_newest_of_each_period(history, policy):
    kept = kept_names(plan_prune(history, policy, NOW))
    verified = [e for e in present(history) if e.verified]
    assert all(str(e.name) in kept for e in verified[: policy.keep_last])
    assert len([e for e in verified if str(e.name) in kept]) >= min(policy.keep_last, len(verified))
    for rule, _, period_of in GFS_RULES:
        wanted = getattr(policy, rule)
        newest_of_period = {}
        for e in verified:  # newest first
            newest_of_period.setdefault(period_of(e.created_at), e)
        for period in sorted(newest_of_period, reverse=True)[:wanted]:
            assert str(newest_of_period[period].name) in kept, (rule, period)


@settings(max_examples=100, deadline=None)
@given(history=backups, policy=policies)
def test_circuit_breaker_deletes_nothing_while_the_newest_verified_backup_is_stale(history, policy):
    decisions = plan_prune(history, policy, NOW)
    newest = next((e for e in present(history) if e.verified), None)
    stale = newest is None or NOW - newest.created_at > timedelta(hours=policy.freshness_hours or 0)
    if policy.freshness_hours is not None and stale:
        assert not any(d.delete for d in decisions)
        assert all("circuit breaker" in d.reason for d in decisions if "circuit breaker" in d.reason)


@settings(max_examples=100, deadline=None)
@given(history=backups, policy=policies, more=st.integers(min_value=1, max_value=5))
def test_asking_to_keep_more_never_deletes_more(history, policy, more):
    kept = kept_names(plan_prune(history, policy, NOW))
    generous = RetentionPolicy(
        retention_days=policy.retention_days + more,
        keep_last=policy.keep_last + more,
        keep_daily=policy.keep_daily + more,
        keep_weekly=policy.keep_weekly,
        keep_monthly=policy.keep_monthly + more,
        keep_yearly=policy.keep_yearly,
        pre_migration_days=policy.pre_migration_days,
        freshness_hours=policy.freshness_hours,
    )
    assert kept <= kept_names(plan_prune(history, generous, NOW))


@settings(max_examples=100, deadline=None)
@given(history=backups, policy=policies)
def test_pruning_twice_deletes_nothing_more(history, policy):
    first = plan_prune(history, policy, NOW)
    kept = kept_names(first)
    remaining = [e for e in history if str(e.name) in kept]
    assert not any(d.delete for d in plan_prune(remaining, policy, NOW))


@settings(max_examples=100, deadline=None)
@given(history=backups, policy=policies, skew_days=st.integers(min_value=1, max_value=400))
def test_a_backup_stamped_in_the_future_is_kept_and_counts_for_no_rule(history, policy, skew_days):
    future = entry(NOW + timedelta(days=skew_days))
    with_future = newest_first([future, *history])
    decisions = {d.name: d for d in plan_prune(with_future, policy, NOW)}
    assert not decisions[str(future.name)].delete
    # It takes no keep-last or GFS slot from a real backup.
    assert kept_names(plan_prune(history, policy, NOW)) == kept_names(decisions.values()) - {str(future.name)}


@settings(max_examples=100, deadline=None)
@given(history=backups, policy=policies)
def test_a_protected_backup_is_kept_and_says_why(history, policy):
    complete = [e for e in history if e.complete and e.created_at <= NOW]
    if not complete:
        return
    target = str(complete[-1].name)
    without = {d.name: d for d in plan_prune(history, policy, NOW)}
    decisions = {d.name: d for d in plan_prune(history, policy, NOW, protected={target: "previous good backup"})}
    assert not decisions[target].delete
    if without[target].delete:  # nothing else kept it: the protection is the reason
        assert decisions[target].reason == "previous good backup"
    assert {n for n, d in decisions.items() if d.delete} == {n for n, d in without.items() if d.delete} - {target}


def test_gfs_keeps_exactly_the_expected_set_over_a_year_of_daily_backups():
    # One verified daily backup at 06:00 every day for a year and a bit, the last one this morning.
    days = [NOW.replace(hour=6) - timedelta(days=n) for n in range(400)]
    history = newest_first(entry(at) for at in days)
    policy = RetentionPolicy(retention_days=3, keep_last=2, keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=3)

    decisions = plan_prune(history, policy, NOW)

    by_day = {d.created_at.date(): d for d in decisions}
    expected_daily = {(NOW - timedelta(days=n)).date() for n in range(7)}
    # The newest backup of each ISO week is its Sunday's, except this week's: today's.
    this_week = NOW.date()
    sundays = [this_week - timedelta(days=(this_week.isoweekday() % 7) + 7 * n) for n in range(3)]
    expected_weekly = {this_week, *sundays}
    # The newest of each month is its last day, except this month's; the first month is cut at 12.
    months = [this_week]
    first = this_week.replace(day=1)
    for _ in range(11):
        first = (first - timedelta(days=1)).replace(day=1)
        months.append((first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1))
    expected_monthly = set(months)
    # Years: this year's newest (today) and last year's 31 December; the history starts in 2025.
    expected_yearly = {this_week, this_week.replace(year=this_week.year - 1, month=12, day=31)}
    # 06:00 today, yesterday and the day before are within 3 days of noon; three days ago is not.
    expected_window = {(NOW - timedelta(days=n)).date() for n in range(3)}
    expected = expected_daily | expected_weekly | expected_monthly | expected_yearly | expected_window

    assert {day for day, d in by_day.items() if not d.delete} == expected
    assert len(expected) < len(history)
    # Each kept backup names the rule that kept it: the first that applies.
    assert "one of the newest 2 verified backups" in by_day[this_week].reason
    assert "keep_daily 7: newest verified backup of the day" in by_day[(NOW - timedelta(days=4)).date()].reason
    assert "keep_weekly 4: newest verified backup of the week" in by_day[sundays[1]].reason
    assert "keep_monthly 12" in by_day[months[5]].reason
    # 31 December is kept as its month's newest, which also makes it its year's.
    last_year = this_week.replace(year=this_week.year - 1, month=12, day=31)
    assert "keep_monthly 12" in by_day[last_year].reason
    deleted = [d for d in decisions if d.delete]
    assert all(d.reason == "older than 3 days" for d in deleted)


def test_pre_migration_window_and_keep_by_default():
    old_pre = entry(NOW - timedelta(days=200), "pre-migration")
    young_pre = entry(NOW - timedelta(days=5), "pre-migration")
    fresh = entry(NOW - timedelta(hours=2))
    history = newest_first([old_pre, young_pre, fresh])

    default = {d.name: d for d in plan_prune(history, RetentionPolicy(retention_days=30, keep_last=1), NOW)}
    assert not default[str(old_pre.name)].delete

    windowed = plan_prune(history, RetentionPolicy(retention_days=30, keep_last=1, pre_migration_days=90), NOW)
    decisions = {d.name: d for d in windowed}
    assert decisions[str(old_pre.name)].delete
    assert "pre-migration window of 90 days" in decisions[str(old_pre.name)].reason
    assert "pre-migration, younger than 90 days" in decisions[str(young_pre.name)].reason
