"""A night's backup_batch run, in process against a real PostgreSQL and a real Dagster instance: one step per
database, a database that fails fails alone, and every database's results land on its own assets.

What the daemon adds (the schedule's tick, the batch sensor, the lanes) is in tests/test_deploy_scale_out.py.
"""

from __future__ import annotations

import dagster as dg
import pytest

from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.notify.discord import DISCORD_MARKUP
from backup_pipeline.core.notify.text import render
from backup_pipeline.core.servers import server_key
from backup_pipeline.defs.alerts.batches import batch_events
from backup_pipeline.defs.automation import build_batch_sensor
from backup_pipeline.defs.batch_config import batch_run_config
from backup_pipeline.defs.names import BACKUP_ID_TAG, BACKUP_TYPE_TAG, DATABASE_TAG, LANE_TAG, SERVER_TAG
from backup_pipeline.defs.run_lifecycle import run_database_and_kind
from tests.support.pipeline import failure_message, load_defs
from tests.support.seed import SEED_COUNTS

BACKUP_ID = "daily_20261206_060000"
KEYS = ["app", "broken", "shop"]


@pytest.fixture
def three_databases(clean_env, make_database, pg_admin_url, dagster_home, tmp_path):
    """app and shop seeded, broken pointing at a database its server does not have; all on one server."""
    config = tmp_path / "backups.yaml"
    config.write_text(
        "databases:\n"
        "  - {key: app, url_env: APP_URL}\n"
        "  - {key: broken, url_env: BROKEN_URL}\n"
        "  - {key: shop, url_env: SHOP_URL, auto_prune: false}\n"
    )
    missing = f"bp_missing_{tmp_path.name[-8:].lower()}"
    values = {
        "BACKUP_CONFIG_FILE": str(config),
        "APP_URL": make_database(),
        "SHOP_URL": make_database(),
        "BROKEN_URL": pg_admin_url.rsplit("/", 1)[0] + "/" + missing,
        "BACKUP_LOCAL_DIR": str(tmp_path / "backups"),
        "DAGSTER_HOME": str(dagster_home),
    }
    for key, value in values.items():
        clean_env.setenv(key, value)
    return {**values, "missing": missing}


def test_a_failing_database_fails_its_own_step_and_the_others_are_recorded_on_their_own_assets(three_databases):
    instance = dg.DagsterInstance.get()
    defs = load_defs()
    for key in KEYS:
        instance.add_dynamic_partitions(f"{key}_backups", [BACKUP_ID])
    result = defs.resolve_job_def("backup_batch").execute_in_process(
        instance=instance,
        run_config=batch_run_config(KEYS),
        tags={BACKUP_ID_TAG: BACKUP_ID, BACKUP_TYPE_TAG: "daily"},
        raise_on_error=False,
    )
    assert not result.success
    failed = {e.step_key for e in result.all_events if e.is_step_failure}
    succeeded = {e.step_key for e in result.all_events if e.is_step_success}
    assert failed == {"back_up_database[broken]"}
    # shop comes after broken and is still backed up; broken's retention is skipped, app's runs, shop's is off.
    assert {"back_up_database[app]", "back_up_database[shop]", "prune_after_backup[app]"} <= succeeded

    for key in ("app", "shop"):
        for asset in ("database_dump", "offsite_backup", "restore_verification"):
            event = instance.get_latest_materialization_event(dg.AssetKey([key, asset]))
            assert event.asset_materialization.partition == BACKUP_ID and event.run_id == result.run_id
        verification = instance.get_latest_materialization_event(dg.AssetKey([key, "restore_verification"]))
        metadata = verification.asset_materialization.metadata
        assert metadata["verified"].value is True and metadata["rows"].value == sum(SEED_COUNTS.values())
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey([key, "offsite_backup"]), "stored_object_matches_manifest")]
        )
        assert check, f"{key}'s stored_object_matches_manifest check has no result"
    assert instance.get_latest_materialization_event(dg.AssetKey(["app", "backup_retention"])) is not None
    assert instance.get_latest_materialization_event(dg.AssetKey(["shop", "backup_retention"])) is None
    for asset in ("database_dump", "restore_verification"):
        assert instance.get_latest_materialization_event(dg.AssetKey(["broken", asset])) is None

    # One message per database: broken's failure, the others' notices.
    run = instance.get_run_by_id(result.run_id)
    messages = [render(event, DISCORD_MARKUP).text() for event in batch_events(instance, run, load_settings())]
    assert len(messages) == 3
    [failure] = [m for m in messages if m.startswith(":x:")]
    assert three_databases["missing"] in failure and "does not exist" in failure
    assert len([m for m in messages if m.startswith(":white_check_mark:")]) == 2


def test_a_tick_naming_every_database_becomes_batches_with_their_server_and_lane(three_databases):
    instance = dg.DagsterInstance.get()
    defs = load_defs()
    request = defs.resolve_job_def("request_backup").execute_in_process(
        instance=instance,
        run_config={"ops": {"backup_request": {"config": {"backup_type": "daily", "databases": KEYS}}}},
        tags={BACKUP_TYPE_TAG: "daily"},
    )
    assert request.success
    sensor = build_batch_sensor(load_settings(), defs.resolve_job_def("backup_batch"))
    with dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def()) as context:
        answer = sensor(context)
    [run_request] = answer.run_requests
    server = server_key(three_databases["APP_URL"])
    assert run_request.job_name == "backup_batch" and run_request.run_config == batch_run_config(KEYS)
    assert run_request.tags[SERVER_TAG] == server and run_request.tags[LANE_TAG] == f"{server}#0"
    assert {r.partitions_def_name for r in answer.dynamic_partitions_requests} == {f"{k}_backups" for k in KEYS}
    # Answered once: the next evaluation, from its cursor, releases nothing again.
    with dg.build_sensor_context(
        instance=instance, repository_def=defs.get_repository_def(), cursor=answer.cursor
    ) as context:
        again = sensor(context)
    assert not getattr(again, "run_requests", None)


def test_a_request_for_one_database_is_a_batch_run_of_it_alone_tagged_with_it(three_databases):
    """One database's pre-migration request among several: a backup_batch run of that database only (no job of
    every database's assets for Dagster to build), carrying its database tag so the run queue never lets it
    overlap another run of that database, recorded on its own assets."""
    instance = dg.DagsterInstance.get()
    defs = load_defs()
    request = defs.resolve_job_def("request_backup").execute_in_process(
        instance=instance, run_config={"ops": {"backup_request": {"config": {"database": "app"}}}}
    )
    assert request.success
    sensor = defs.resolve_sensor_def("backup_request_sensor")
    with dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def()) as context:
        answer = sensor(context)
    [run_request] = answer.run_requests
    backup_id = instance.get_run_by_id(request.run_id).tags[BACKUP_ID_TAG]
    server = server_key(three_databases["APP_URL"])
    assert run_request.job_name == "backup_batch" and run_request.run_config == batch_run_config(["app"])
    assert run_request.tags[DATABASE_TAG] == "app" and run_request.tags[BACKUP_ID_TAG] == backup_id
    assert run_request.tags[LANE_TAG] == f"{server}#0" and run_request.tags["dagster/priority"] == "10"
    [added] = answer.dynamic_partitions_requests
    assert (added.partitions_def_name, list(added.partition_keys)) == ("app_backups", [backup_id])

    instance.add_dynamic_partitions("app_backups", [backup_id])
    result = defs.resolve_job_def("backup_batch").execute_in_process(
        instance=instance, run_config=run_request.run_config, tags=run_request.tags
    )
    assert result.success
    event = instance.get_latest_materialization_event(dg.AssetKey(["app", "restore_verification"]))
    assert event.run_id == result.run_id and event.asset_materialization.partition == backup_id
    assert event.asset_materialization.metadata["verified"].value is True
    # A pre-migration backup is not followed by retention; the other databases are untouched.
    assert instance.get_latest_materialization_event(dg.AssetKey(["app", "backup_retention"])) is None
    assert instance.get_latest_materialization_event(dg.AssetKey(["shop", "database_dump"])) is None


def test_a_daily_backup_of_one_database_is_followed_by_its_retention_run_naming_it(three_databases):
    """A daily backup run of app's assets (the UI's Materialize): the retention sensor starts retention_job
    naming app in its config, which prunes app's backups alone and records it on app's backup_retention."""
    instance = dg.DagsterInstance.get()
    defs = load_defs()
    instance.add_dynamic_partitions("app_backups", [BACKUP_ID])
    backup = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        partition_key=BACKUP_ID,
        asset_selection=[dg.AssetKey(["app", a]) for a in ("database_dump", "offsite_backup", "restore_verification")],
    )
    assert backup.success
    sensor = defs.resolve_sensor_def("backup_retention_sensor")
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=backup.get_run_success_event(),
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(backup.run_id),
        repository_def=defs.get_repository_def(),
    )
    request = sensor(context)
    assert isinstance(request, dg.RunRequest), request
    assert request.job_name == "retention_job" and request.tags[DATABASE_TAG] == "app"
    assert request.run_config == {"ops": {"prune_one_database": {"config": {"database": "app"}}}}

    pruned = defs.resolve_job_def("retention_job").execute_in_process(
        instance=instance, run_config=request.run_config, tags=request.tags
    )
    assert pruned.success
    [materialization] = pruned.get_asset_materialization_events()
    assert materialization.asset_key == dg.AssetKey(["app", "backup_retention"])
    decisions = materialization.step_materialization_data.materialization.metadata["decisions_json"].value
    stored = instance.get_latest_materialization_event(dg.AssetKey(["app", "offsite_backup"]))
    assert [(d["name"], d["action"]) for d in decisions] == [
        (stored.asset_materialization.metadata["name"].value, "keep")
    ]
    assert run_database_and_kind(instance.get_run_by_id(pruned.run_id), load_settings())[1] == "prune"

    # The prune settings reach the policy: a dry run says so and deletes nothing.
    dry = defs.resolve_job_def("retention_job").execute_in_process(
        instance=instance, run_config={"ops": {"prune_one_database": {"config": {"database": "app", "dry_run": True}}}}
    )
    [reported] = dry.get_asset_materialization_events()
    metadata = reported.step_materialization_data.materialization.metadata
    assert metadata["dry_run"].value is True and metadata["deleted"].value == 0

    # A database that is not configured: the run fails saying which are, and nothing is pruned.
    wrong = defs.resolve_job_def("retention_job").execute_in_process(
        instance=instance,
        run_config={"ops": {"prune_one_database": {"config": {"database": "nope"}}}},
        raise_on_error=False,
    )
    assert not wrong.success and "no database 'nope' is configured" in failure_message(wrong)
    assert "app, broken, shop" in failure_message(wrong)


def test_a_batch_whose_databases_were_all_removed_since_the_request_fails_saying_so(three_databases):
    """A request answered after its database left the databases file: the run fails naming it (someone may be
    waiting for that backup), instead of succeeding with nothing backed up."""
    instance = dg.DagsterInstance.get()
    result = (
        load_defs()
        .resolve_job_def("backup_batch")
        .execute_in_process(
            instance=instance,
            run_config=batch_run_config(["gone"]),
            tags={BACKUP_ID_TAG: BACKUP_ID, BACKUP_TYPE_TAG: "pre-migration"},
            raise_on_error=False,
        )
    )
    assert not result.success
    assert "not backed up: gone no longer configured" in failure_message(result)
