"""Many databases on the production profile, run for real: Dagster's storage in a fresh PostgreSQL database,
the image's code server, webserver and daemon on loopback, two dozen databases from a config file.

The real scheduler fires one tick for every database sharing a cron; the one request sensor fans it out to
one run per database; the run queue lets them through a few at a time (deploy/dagster.yaml), never two of
one database at once, while a pre-migration backup requested at the same moment goes ahead of them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg
import pytest
import yaml

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config import load_settings
from backup_pipeline.core.storage import open_storage
from backup_pipeline.defs.names import DATABASE_TAG, REQUESTED_BY_TAG, DefinitionNames, schedule_name
from tests.conftest import CONFIG_VARS
from tests.support.deployment import PROJECT_ROOT, Deployment, base_env, dagster_pg_env, fresh_database
from tests.support.pipeline import load_defs
from tests.support.scale import (
    SOURCE_URL_ENV,
    cron_at,
    database_keys,
    databases_file,
    max_concurrent,
    next_minute_after,
    overlapping,
    run_windows,
    wait_for,
)
from tests.support.seed import SEED_COUNTS, SEED_SQL

# One worker runs this module's tests: they share module-scoped fixtures that are costly to make (pytest-xdist).
# slow: runs Dagster's own processes (daemon, webserver); -m "not slow" leaves it out.
pytestmark = [pytest.mark.xdist_group("deploy_scale_out"), pytest.mark.slow]

DATABASES = 24
SOURCES = 3
RUN_TIMEOUT_S = 600
# Startup of the code server, webserver and daemon before the tick; the tick is the first whole minute after.
TICK_LEAD_S = 75
DAILY = {"backup/kind": "backup", "backup/type": "daily"}
PROFILE = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
DAILY_LIMIT = next(
    limit["limit"]
    for limit in PROFILE["concurrency"]["runs"]["tag_concurrency_limits"]
    if limit["key"] == "backup/type"
)
# One database on a cron of its own, with its own retention: a second schedule, and the file's fields at work.
ODD_ONE = """\
  - key: billing
    url_env: SCALE_SOURCE_0_URL
    name_prefix: billing
    schedule: "30 2 * * *"
    retention_days: 14
    keep_last: 3
    storage_prefix: db-backups/billing
"""


@pytest.fixture(scope="module")
def deployment(pg_admin_url, tmp_path_factory):
    """Seeded sources, Dagster storage in PostgreSQL, the image's processes serving two dozen databases whose
    daily cron fires a minute or so from now, and a pre-migration backup of db001 requested for that minute."""
    tmp = tmp_path_factory.mktemp("scale")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    tick = next_minute_after(TICK_LEAD_S)
    keys = database_keys(DATABASES)
    config_file = tmp / "backups.yaml"
    config_file.write_text(databases_file(keys, SOURCES, cron_at(tick), extra=ODD_ONE))
    with (
        pytest.MonkeyPatch.context() as env,
        fresh_database(pg_admin_url, "bp15_dagster") as dagster_url,
        fresh_database(pg_admin_url, "bp15_src0", SEED_SQL) as source0,
        fresh_database(pg_admin_url, "bp15_src1", SEED_SQL) as source1,
        fresh_database(pg_admin_url, "bp15_src2", SEED_SQL) as source2,
    ):
        for name in CONFIG_VARS:
            env.delenv(name, raising=False)
        pg_env = {"DAGSTER_HOME": str(home), **dagster_pg_env(dagster_url)}
        settings_env = {
            "BACKUP_CONFIG_FILE": str(config_file),
            **{SOURCE_URL_ENV.format(i): url for i, url in enumerate((source0, source1, source2))},
            "BACKUP_LOCAL_DIR": str(tmp / "backups"),
        }
        for key, value in {**pg_env, **settings_env}.items():
            env.setenv(key, value)

        # Creating the schema here, once, keeps the three processes from racing to create it.
        instance = dg.DagsterInstance.get()
        processes = Deployment(
            code_env={**base_env(CONFIG_VARS), **pg_env, **settings_env},
            service_env={**base_env(CONFIG_VARS), **pg_env},
            logs=tmp,
        )
        try:
            processes.start_code_server()
            processes.start_services()
            defs = load_defs()
            # Once the tick's runs are queued: a pre-migration backup of a database whose daily backup is
            # running right then, requested as `dagster job launch` would.
            time.sleep(max(0.0, (tick - datetime.now(UTC)).total_seconds()))
            running = wait_for(
                lambda: instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED], tags=DAILY)),
                RUN_TIMEOUT_S,
                "a daily backup run",
                check=processes.check_alive,
            )
            busy = running[0].tags[DATABASE_TAG]
            request = defs.resolve_job_def("request_backup").execute_in_process(
                instance=instance,
                run_config={"ops": {"backup_request": {"config": {"database": busy}}}},
            )
            assert request.success
            yield {
                "instance": instance,
                "defs": defs,
                "processes": processes,
                "keys": keys,
                "daily_id": f"daily_{tick:%Y%m%d_%H%M%S}",
                "cron": cron_at(tick),
                "premigration_request": request.run_id,
                "busy": busy,
            }
        finally:
            processes.stop()
            instance.dispose()


def backup_runs(deployment, expected: int) -> list[dg.DagsterRun]:
    """Every backup run of the test, once all `expected` have finished."""
    instance, processes = deployment["instance"], deployment["processes"]

    def finished():
        runs = instance.get_runs(dg.RunsFilter(tags={"backup/kind": "backup"}))
        return runs if len(runs) >= expected and all(r.is_finished for r in runs) else None

    return wait_for(finished, RUN_TIMEOUT_S, "backup runs", check=processes.check_alive)


def catalog_for(key: str) -> BackupCatalog:
    settings = load_settings()
    db = settings.database(key)
    return BackupCatalog(open_storage(settings.storage), db.storage_prefix, db.name_prefix)


def test_definitions_do_not_grow_with_the_databases(deployment):
    repo = deployment["defs"].get_repository_def()
    assert sorted(s.name for s in repo.sensor_defs) == [
        "backup_freshness_sensor",
        "backup_request_sensor",
        "backup_retention_sensor",
        "dead_run_sensor",
        "discord_on_backup_success",
        "discord_on_run_failure",
    ]
    # One schedule per distinct cron: the two dozen databases' and billing's own.
    assert sorted(s.cron_schedule for s in repo.schedule_defs) == sorted(["30 2 * * *", deployment["cron"]])
    assert {job.name for job in repo.get_all_jobs()} == {
        "request_backup",
        "restore_job",
        "retention_job",
        "__ASSET_JOB",
    }
    # What a user sees per database stays: its own asset group, partitions and settings from the file.
    for key in ("db000", "db023", "billing"):
        names = DefinitionNames(load_settings().database(key))
        for asset in ("database_dump", "offsite_backup", "restore_verification", "backup_retention"):
            assert repo.asset_graph.get(dg.AssetKey([key, asset])).group_name == f"{key}_backups"
        assert repo.asset_graph.get(dg.AssetKey([key, "database_dump"])).partitions_def.name == names.partitions
    billing = load_settings().database("billing")
    assert (billing.retention_days, billing.keep_last, billing.storage_prefix) == (14, 3, "db-backups/billing")


def test_one_tick_fans_out_to_one_backup_of_every_database_a_few_at_a_time(deployment):
    instance, keys = deployment["instance"], deployment["keys"]
    runs = backup_runs(deployment, DATABASES + 1)
    daily = [r for r in runs if r.tags.get("backup/type") == "daily"]
    assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * len(runs), [
        (r.tags.get(DATABASE_TAG), r.status) for r in runs
    ]
    # One tick, one request run for all of them, one run per database, each of its own assets and partition.
    [tick_request] = instance.get_runs(dg.RunsFilter(job_name="request_backup", tags={"backup/type": "daily"}))
    assert tick_request.tags["dagster/schedule_name"] == schedule_name(deployment["cron"])
    assert sorted(r.tags[DATABASE_TAG] for r in daily) == keys
    for run in daily:
        key = run.tags[DATABASE_TAG]
        assert run.tags[REQUESTED_BY_TAG] == tick_request.run_id
        assert run.tags["dagster/partition"] == deployment["daily_id"]
        assert {tuple(k.path) for k in run.asset_selection} == {
            (key, "database_dump"),
            (key, "offsite_backup"),
            (key, "restore_verification"),
        }
    # Every database's daily backup is stored, verified, and holds the rows of the database it came from.
    for key in keys:
        [entry] = [e for e in catalog_for(key).complete() if str(e.name.id) == deployment["daily_id"]]
        assert entry.verified
        assert catalog_for(key).manifest(entry.name).tables == SEED_COUNTS

    # The queue let them through a few at a time: several at once, never more than the profile's limit.
    windows = run_windows(instance, daily)
    assert 1 < max_concurrent(windows) <= DAILY_LIMIT, max_concurrent(windows)
    # They were all queued at once, long before the last one could start.
    assert max(w.queued for w in windows) < max(w.launched for w in windows)


def test_a_database_never_has_two_backups_at_once_and_a_requested_one_goes_first(deployment):
    instance, busy = deployment["instance"], deployment["busy"]
    runs = backup_runs(deployment, DATABASES + 1)
    [premigration] = [r for r in runs if r.tags.get(REQUESTED_BY_TAG) == deployment["premigration_request"]]
    assert premigration.tags[DATABASE_TAG] == busy and premigration.tags["backup/type"] == "pre-migration"
    [entry] = [e for e in catalog_for(busy).complete() if str(e.name.id) == premigration.tags["dagster/partition"]]
    assert entry.verified

    windows = run_windows(instance, runs)
    assert overlapping(windows) == []
    [pre] = [w for w in windows if w.run_id == premigration.run_id]
    [daily] = [w for w in windows if w.database == busy and w.run_id != premigration.run_id]
    # Requested after its database's daily backup started; while that one ran (on a loaded machine the daily one
    # can end before the request reaches the queue), it waited for that one to end, and only for that one.
    assert daily.launched < pre.queued
    assert daily.ended <= pre.launched
    overtaken = [w for w in windows if w.queued < pre.queued and w.launched > pre.launched]
    if any(w.queued < pre.queued and w.launched > daily.ended for w in windows):
        assert overtaken, "the pre-migration backup waited behind daily backups queued before it"
