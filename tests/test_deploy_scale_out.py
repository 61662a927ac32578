"""The production profile and many databases, run for real: Dagster's storage in a fresh PostgreSQL database,
the image's code server, webserver and daemon commands on loopback, three databases from a config file."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import dagster as dg
import psycopg
import pytest

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config import load_settings
from backup_pipeline.core.names import BackupId
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.storage import storage_from_settings
from backup_pipeline.defs.names import DATABASE_TAG, DefinitionNames
from tests.conftest import CONFIG_VARS
from tests.support.deployment import PROJECT_ROOT, Deployment, base_env, dagster_pg_env, fresh_database
from tests.support.pipeline import load_defs
from tests.support.seed import SEED_COUNTS, SEED_SQL

pytestmark = pytest.mark.slow  # runs Dagster's own processes (daemon, webserver): -m "not slow" leaves it out

KEYS = ("app", "billing", "crm")
RUN_TIMEOUT_S = 180

DATABASES_FILE = """\
# Three databases: their own names, partitions and schedules.
defaults:
  retention_days: 14
databases:
  - key: app
    url_env: APP_DATABASE_URL
    name_prefix: app
  - key: billing
    url_env: BILLING_DATABASE_URL
    name_prefix: billing
    storage_prefix: db-backups/billing
    keep_last: 3
  - key: crm
    url_env: CRM_DATABASE_URL
    schedule: "0 6 * * *"
"""


@pytest.fixture(scope="module")
def deployment(pg_admin_url, tmp_path_factory):
    """Three seeded databases, Dagster storage in PostgreSQL, the image's processes serving them, and work
    for the daemon: a backup of app requested through request_backup (as `backup-db backup --no-wait`
    does), each database's 06:00 UTC schedule tick, and a pre-migration backup of billing requested at the
    same moment as billing's daily one."""
    from dagster_graphql import DagsterGraphQLClient

    tmp = tmp_path_factory.mktemp("deploy")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    config_file = tmp / "backups.yaml"
    config_file.write_text(DATABASES_FILE)
    with (
        pytest.MonkeyPatch.context() as env,
        fresh_database(pg_admin_url, "bp7_dagster") as dagster_url,
        fresh_database(pg_admin_url, "bp7_app", SEED_SQL) as app_url,
        fresh_database(pg_admin_url, "bp7_billing", SEED_SQL) as billing_url,
        fresh_database(pg_admin_url, "bp7_crm", SEED_SQL) as crm_url,
    ):
        for name in CONFIG_VARS:
            env.delenv(name, raising=False)
        pg_env = {"DAGSTER_HOME": str(home), **dagster_pg_env(dagster_url)}
        settings_env = {
            "BACKUP_CONFIG_FILE": str(config_file),
            "APP_DATABASE_URL": app_url,
            "BILLING_DATABASE_URL": billing_url,
            "CRM_DATABASE_URL": crm_url,
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
            defs = load_defs()
            request = defs.resolve_job_def("app__request_backup").execute_in_process(
                instance=instance,
                run_config={"ops": {"app__backup_request": {"config": {"backup_type": "pre-migration"}}}},
            )
            assert request.success
            processes.start_services()

            client = DagsterGraphQLClient("127.0.0.1", port_number=processes.webserver_port)
            six_utc = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0)
            daily_runs = {key: launch_schedule_tick(client, instance, defs, key, six_utc) for key in ("billing",)}
            billing_premigration = str(BackupId.new("pre-migration"))
            instance.add_dynamic_partitions("billing_backups", [billing_premigration])
            premigration_run = client.submit_job_execution(
                "billing__backup_job",
                repository_location_name="backup_pipeline",
                tags={"dagster/partition": billing_premigration, "backup/type": "pre-migration"},
            )
            daily_runs.update(
                {key: launch_schedule_tick(client, instance, defs, key, six_utc) for key in ("app", "crm")}
            )
            yield {
                "instance": instance,
                "defs": defs,
                "processes": processes,
                "dagster_url": dagster_url,
                "request_run_id": request.run_id,
                "daily_id": f"daily_{six_utc:%Y%m%d_%H%M%S}",
                "daily_runs": daily_runs,
                "billing_runs": [daily_runs["billing"], premigration_run],
            }
        finally:
            processes.stop()
            instance.dispose()


def launch_schedule_tick(client, instance, defs: dg.Definitions, key: str, when: datetime) -> str:
    """Evaluates the database's schedule at `when` and queues its run request, as the UI's "Test schedule"
    does; returns the run id."""
    repo = defs.get_repository_def()
    names = DefinitionNames(load_settings().database(key))
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when, repository_def=repo) as context:
        [request] = repo.get_schedule_def(names.schedule).evaluate_tick(context).run_requests
    return client.submit_job_execution(
        names.backup_job,
        repository_location_name="backup_pipeline",
        tags={**request.tags, "dagster/partition": request.partition_key, "dagster/schedule_name": names.schedule},
    )


def wait_for_runs(deployment, run_ids: list[str]) -> list[dg.DagsterRun]:
    """The runs, in the order given, once all have finished; fails with the daemon's log otherwise."""
    instance, processes = deployment["instance"], deployment["processes"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        processes.check_alive()
        runs = {r.run_id: r for r in instance.get_runs(filters=dg.RunsFilter(run_ids=run_ids))}
        if len(runs) == len(run_ids) and all(r.is_finished for r in runs.values()):
            return [runs[run_id] for run_id in run_ids]
        time.sleep(0.5)
    states = [(r.job_name, r.status.value) for r in instance.get_runs(filters=dg.RunsFilter(run_ids=run_ids))]
    raise TimeoutError(f"runs not finished in {RUN_TIMEOUT_S} s: {states}\n{processes.log_tail('daemon')}")


def event_time(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> float:
    [record] = instance.get_records_for_run(run_id, of_type=event_type).records
    return record.timestamp


def run_window(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    """From the run's launch (the queue let it go) to its end, from its own event log.

    Launch rather than the worker's first step: a worker takes seconds to start, which alone could keep
    two short runs apart even with no limit at all.
    """
    return (
        event_time(instance, run_id, dg.DagsterEventType.RUN_STARTING),
        event_time(instance, run_id, dg.DagsterEventType.RUN_SUCCESS),
    )


def catalog_for(key: str) -> BackupCatalog:
    """The backups of one configured database (name prefix: the file's, else the database name)."""
    settings = load_settings()
    db = settings.database(key)
    prefix = db.name_prefix or PostgresTarget.from_url(os.environ[db.url_env], db.url_env).dbname
    return BackupCatalog(storage_from_settings(settings.storage), db.storage_prefix, prefix)


def test_each_configured_database_gets_its_own_assets_jobs_and_partitions(deployment):
    defs = deployment["defs"]
    repo = defs.get_repository_def()
    for key in KEYS:
        names = DefinitionNames(load_settings().database(key))
        for asset in ("database_dump", "offsite_backup", "restore_verification", "backup_retention"):
            asset_key = dg.AssetKey([key, asset])
            assert repo.asset_graph.get(asset_key).group_name == f"{key}_backups"
        job = defs.resolve_job_def(names.backup_job)
        assert job.partitions_def.name == f"{key}_backups"
        assert job.tags[DATABASE_TAG] == key
        assert repo.get_schedule_def(names.schedule).cron_schedule == "0 6 * * *"
    # Each database's retention comes from the file, its defaults applied.
    billing, crm = load_settings().database("billing"), load_settings().database("crm")
    assert (billing.retention_days, billing.keep_last, crm.retention_days, crm.keep_last) == (14, 3, 14, 7)


def test_daily_tick_backs_up_every_database_through_the_queue(deployment):
    runs = wait_for_runs(deployment, list(deployment["daily_runs"].values()))
    assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 3, [(r.job_name, r.status) for r in runs]
    for key in KEYS:
        catalog = catalog_for(key)
        [entry] = [e for e in catalog.complete() if str(e.name.id) == deployment["daily_id"]]
        assert entry.verified
        assert catalog.manifest(entry.name).tables == SEED_COUNTS


def test_backup_request_goes_through_the_sensor_and_is_stored_in_postgres(deployment):
    request_run_id = deployment["request_run_id"]
    instance = deployment["instance"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (runs := instance.get_runs(dg.RunsFilter(tags={"backup/requested_by": request_run_id}))):
        assert time.monotonic() < deadline, deployment["processes"].log_tail("daemon")
        time.sleep(0.5)
    [run] = wait_for_runs(deployment, [runs[0].run_id])
    assert run.job_name == "app__backup_job" and run.status == dg.DagsterRunStatus.SUCCESS
    [entry] = [e for e in catalog_for("app").complete() if str(e.name.id) == run.tags["dagster/partition"]]
    assert entry.verified and entry.name.id.type == "pre-migration"

    # Straight from Dagster's tables in PostgreSQL: the sensor's tick that requested the run, and the run.
    with psycopg.connect(deployment["dagster_url"]) as conn:
        ticks = conn.execute(
            "SELECT status, tick_body FROM job_ticks WHERE tick_body LIKE %s", ["%app__backup_request_sensor%"]
        ).fetchall()
        stored = conn.execute("SELECT pipeline_name, status FROM runs WHERE run_id = %s", [run.run_id]).fetchone()
    assert any(status == "SUCCESS" and run.run_id in body for status, body in ticks), ticks
    assert stored == ("app__backup_job", "SUCCESS")


def test_two_simultaneous_backups_of_one_database_never_overlap(deployment):
    instance = deployment["instance"]
    billing_runs = wait_for_runs(deployment, deployment["billing_runs"])
    assert [r.status for r in billing_runs] == [dg.DagsterRunStatus.SUCCESS] * 2
    # Both were waiting at once: the second was queued before the first had finished.
    enqueued = [event_time(instance, r.run_id, dg.DagsterEventType.RUN_ENQUEUED) for r in billing_runs]
    finished = [event_time(instance, r.run_id, dg.DagsterEventType.RUN_SUCCESS) for r in billing_runs]
    assert max(enqueued) < min(finished), "the two billing backups were never waiting at the same time"

    # No two runs of one database in flight together, from launch to end (app: its request and its daily).
    for key, count in (("app", 2), ("billing", 2), ("crm", 1)):
        runs = wait_for_runs(deployment, [r.run_id for r in instance.get_runs(dg.RunsFilter(tags={DATABASE_TAG: key}))])
        assert len(runs) == count and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), runs
        windows = sorted(run_window(instance, r.run_id) for r in runs)
        for (_, first_end), (second_start, _) in zip(windows, windows[1:], strict=False):
            assert second_start >= first_end, f"{key} backups overlapped: {windows}"
