"""The daily schedule and the backup request path create a partition and a run for it."""

import os
import subprocess
import sys
from datetime import UTC, datetime

import dagster as dg

from backup_pipeline.defs.names import BACKUP_ID_TAG
from tests.conftest import CONFIG_VARS, PROJECT_ROOT
from tests.support.pipeline import load_defs


def test_schedule_at_0600_utc_requests_a_new_daily_partition(local_env):
    """06:00 UTC: the tick's request_backup run names the daily backup; the request sensor registers its
    partition and starts backup_job for it, which stores the backup."""
    defs = load_defs()
    schedule = defs.resolve_schedule_def("daily_backup_schedule")
    assert schedule.cron_schedule == "0 6 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    instance = dg.DagsterInstance.get()

    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 1, 13, 6, 0, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    ) as context:
        [tick_request] = schedule.evaluate_tick(context).run_requests
    request = defs.resolve_job_def("request_backup").execute_in_process(
        instance=instance, run_config=tick_request.run_config, tags=tick_request.tags
    )
    assert request.success
    assert instance.get_run_by_id(request.run_id).tags[BACKUP_ID_TAG] == "daily_20260113_060000"

    sensor = defs.resolve_sensor_def("backup_request_sensor")
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        result = sensor(context)
    [run_request] = [r for r in result.run_requests if r.tags["backup/requested_by"] == request.run_id]
    assert run_request.partition_key == "daily_20260113_060000"
    assert run_request.tags["backup/type"] == "daily" and "dagster/priority" not in run_request.tags
    instance.add_dynamic_partitions("backups", [run_request.partition_key])
    result = defs.resolve_job_def("backup_job").execute_in_process(
        instance=instance, partition_key=run_request.partition_key
    )
    assert result.success
    assert (
        (PROJECT_ROOT / local_env["BACKUP_LOCAL_DIR"])
        .joinpath("db-backups", f"{local_env['DATABASE_URL'].rsplit('/', 1)[1]}_daily_20260113_060000.dump.json")
        .exists()
    )


def test_schedule_cron_is_configurable(local_env, clean_env):
    clean_env.setenv("BACKUP_SCHEDULE_CRON", "30 2 * * *")
    assert load_defs().resolve_schedule_def("daily_backup_schedule").cron_schedule == "30 2 * * *"


def test_request_backup_run_becomes_a_pre_migration_backup_run(local_env):
    defs = load_defs()
    instance = dg.DagsterInstance.get()
    request = defs.resolve_job_def("request_backup").execute_in_process(instance=instance)
    assert request.success
    backup_id = instance.get_run_by_id(request.run_id).tags[BACKUP_ID_TAG]
    assert backup_id.startswith("pre-migration_")

    sensor = defs.resolve_sensor_def("backup_request_sensor")
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        result = sensor(context)
    assert [r.partition_key for r in result.run_requests] == [backup_id]
    [add] = result.dynamic_partitions_requests
    assert add.partitions_def_name == "backups" and list(add.partition_keys) == [backup_id]

    # Once the partition exists the same request is not answered twice.
    instance.add_dynamic_partitions("backups", [backup_id])
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        again = sensor(context)
    assert isinstance(again, dg.SkipReason) or not again.run_requests


def test_definitions_load_with_nothing_configured(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env["DAGSTER_HOME"] = str(tmp_path)
    validate = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validate.returncode == 0, validate.stderr[-2000:]
    assert "Validation successful" in validate.stdout + validate.stderr


def test_run_without_database_url_fails_saying_what_to_set(clean_env, dagster_home, tmp_path):
    clean_env.setenv("DAGSTER_HOME", str(dagster_home))
    clean_env.setenv("BACKUP_LOCAL_DIR", str(tmp_path / "backups"))
    from tests.support.pipeline import failure_message, run_backup

    result, _ = run_backup(dg.DagsterInstance.get(), "manual")
    assert not result.success
    assert "DATABASE_URL is not set" in failure_message(result)
    assert not (tmp_path / "backups" / "db-backups").exists() or not any((tmp_path / "backups").rglob("*.dump"))


def test_storage_assets_are_labelled_with_the_storage_in_use(local_env, clean_env):
    graph = load_defs().resolve_asset_graph()
    assert graph.get(dg.AssetKey("offsite_backup")).kinds == {"file"}
    clean_env.setenv("BACKUP_S3_BUCKET", "team-backups")
    graph = load_defs().resolve_asset_graph()
    assert graph.get(dg.AssetKey("offsite_backup")).kinds == {"s3"}
    assert graph.get(dg.AssetKey("backup_retention")).kinds == {"s3"}
