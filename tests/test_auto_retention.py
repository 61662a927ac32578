"""Retention wired into the schedule: the sensor that prunes after a daily backup, the GFS settings end to
end, and the circuit breaker that holds (and alerts) while backups fail."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.names import TIMESTAMP_FORMAT
from backup_pipeline.core.notify.discord import DISCORD_MARKUP
from backup_pipeline.core.notify.text import render
from backup_pipeline.defs.alerts.run_sensors import run_notice_events
from tests.support.pipeline import failure_message, load_defs, run_backup

NOW = datetime.now(UTC).replace(microsecond=0)


def _put(folder, backup_type: str, at: datetime, verified: bool = True, prefix: str = "app") -> str:
    name = f"{prefix}_{backup_type}_{at.strftime(TIMESTAMP_FORMAT)}"
    base = folder / "db-backups" / f"{name}.dump"
    base.parent.mkdir(parents=True, exist_ok=True)
    base.write_bytes(b"PGDMP fake dump body")
    base.with_name(base.name + ".json").write_text("{}")
    if verified:
        base.with_name(base.name + ".verified.json").write_text("{}")
    return name


def _stored(folder) -> set[str]:
    return {p.name.removesuffix(".dump") for p in (folder / "db-backups").glob("*.dump")}


def _prune(instance, **config):
    return (
        load_defs()
        .resolve_job_def("prune_job")
        .execute_in_process(
            instance=instance, raise_on_error=False, run_config={"ops": {"backup_retention": {"config": config}}}
        )
    )


def _decisions(result) -> dict[str, dict]:
    [event] = result.get_asset_materialization_events()
    metadata = event.step_materialization_data.materialization.metadata
    return {d["name"]: d for d in metadata["decisions_json"].value}


def _sensor_answer(instance, result):
    defs = load_defs()
    sensor = defs.resolve_sensor_def("backup_retention_sensor")
    run = instance.get_run_by_id(result.run_id)
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=result.get_run_success_event(),
        dagster_instance=instance,
        dagster_run=run,
        repository_def=defs.get_repository_def(),
    )
    return sensor(context)


@pytest.fixture
def named(local_env, clean_env):
    clean_env.setenv("BACKUP_NAME_PREFIX", "app")
    return local_env


def test_a_daily_backup_requests_its_database_retention_and_a_manual_one_does_not(named, clean_env):
    instance = dg.DagsterInstance.get()
    daily, daily_id = run_backup(instance, backup_id=f"daily_{NOW.strftime(TIMESTAMP_FORMAT)}")
    assert daily.success, failure_message(daily)
    request = _sensor_answer(instance, daily)
    assert isinstance(request, dg.RunRequest), request
    assert request.job_name == "prune_job"
    assert request.tags["backup/database"] == "default" and request.tags["backup/kind"] == "prune"
    assert request.run_key == f"retention:{daily.run_id}"

    manual, _ = run_backup(instance, "manual")
    assert manual.success, failure_message(manual)
    assert isinstance(_sensor_answer(instance, manual), dg.SkipReason)

    clean_env.setenv("BACKUP_AUTO_PRUNE", "false")
    answer = _sensor_answer(instance, daily)
    assert isinstance(answer, dg.SkipReason) and "auto_prune is off" in answer.skip_message


def test_gfs_keeps_exactly_the_newest_backup_of_each_period_over_a_year(named, clean_env, tmp_path):
    folder = tmp_path / "backups"
    for name, value in {
        "BACKUP_RETENTION_DAYS": "3",
        "BACKUP_KEEP_LAST": "2",
        "BACKUP_KEEP_DAILY": "7",
        "BACKUP_KEEP_WEEKLY": "5",
        "BACKUP_KEEP_MONTHLY": "12",
        "BACKUP_KEEP_YEARLY": "2",
    }.items():
        clean_env.setenv(name, value)
    # A year of daily backups at 06:00, a gap of three weeks in the spring, one pre-migration backup.
    times = [NOW - timedelta(days=d, hours=2) for d in range(0, 400) if not 100 <= d < 121]
    names = {_put(folder, "daily", at): at for at in times}
    pre = _put(folder, "pre-migration", NOW - timedelta(days=300))

    result = _prune(dg.DagsterInstance.get(), allow_large_prune=True)
    assert result.success, failure_message(result)

    # The expected set, from the rules as the README states them.
    newest_first = sorted(names.items(), key=lambda item: item[1], reverse=True)
    expected = (
        {pre} | {n for n, at in newest_first[:2]} | {n for n, at in names.items() if at >= NOW - timedelta(days=3)}
    )
    for count, period in (
        (7, lambda at: at.date()),
        (5, lambda at: at.isocalendar()[:2]),
        (12, lambda at: (at.year, at.month)),
        (2, lambda at: at.year),
    ):
        newest_of = defaultdict(list)
        for n, at in newest_first:
            newest_of[period(at)].append(n)
        expected |= {ns[0] for _, ns in sorted(newest_of.items(), reverse=True)[:count]}
    assert _stored(folder) == expected
    decisions = _decisions(result)
    reasons = " | ".join(decisions[n]["reason"] for n in expected)
    for rule in ("keep_daily 7", "keep_weekly 5", "keep_monthly 12", "keep_yearly 2", "pre-migration backups are kept"):
        assert rule in reasons
    print(f"a year: {len(names) + 1} backups, {len(expected)} kept")


def test_the_breaker_holds_while_backups_fail_and_the_refusal_alerts(named, clean_env, tmp_path):
    folder = tmp_path / "backups"
    clean_env.setenv("BACKUP_KEEP_LAST", "1")
    # The last verified backup is three days old: the daily backups have been failing since.
    kept = {_put(folder, "daily", NOW - timedelta(days=d)) for d in (3, 4, 5, 40)}
    before = _stored(folder)

    instance = dg.DagsterInstance.get()
    dry = _prune(instance, dry_run=True)
    assert dry.success and all(d["action"] == "keep" for d in _decisions(dry).values())
    oldest = sorted(kept)[0]  # 40 days old: the policy alone would delete it
    assert _decisions(dry)[oldest]["reason"].startswith("circuit breaker: the newest verified backup")

    result = _prune(instance)
    assert not result.success
    message = failure_message(result)
    assert "circuit breaker" in message and "older than the 26 h freshness window" in message, message
    assert _stored(folder) == before  # nothing deleted
    [event] = run_notice_events(instance, instance.get_run_by_id(result.run_id), load_settings())
    alert = render(event, DISCORD_MARKUP).text()
    assert alert.startswith(":warning: **Retention refused to prune**") and "circuit breaker" in alert, alert

    # A new verified backup lifts it: the 40-day-old backup goes, keep-last is honoured.
    fresh = _put(folder, "daily", NOW - timedelta(hours=1))
    result = _prune(instance)
    assert result.success, failure_message(result)
    assert _stored(folder) == before - {oldest} | {fresh}
