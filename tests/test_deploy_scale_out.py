"""Many databases on the production profile, run for real: Dagster's storage in a fresh PostgreSQL database,
the image's code server, webserver and daemon on loopback, a score of databases from a config file.

The real scheduler fires one tick for every database sharing a cron; the batch sensor answers it with
backup_batch runs, a few databases of one server each; the run queue lets at most server_max_runs of them
through at once per server (deploy/dagster.yaml's lane limit). One database's server answers that it does
not exist: its step fails, alone, with one alert naming it, while the others of its batch are backed up,
verified and recorded on their own assets. A pre-migration backup requested meanwhile runs on its own, in a
lane of its server.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg
import pytest

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.storage import open_storage
from backup_pipeline.defs.batch_config import batch_keys
from backup_pipeline.defs.names import (
    DATABASE_TAG,
    LANE_TAG,
    REQUESTED_BY_TAG,
    SERVER_TAG,
    DefinitionNames,
    schedule_name,
)
from tests.conftest import CONFIG_VARS
from tests.support.deployment import PROJECT_ROOT, Deployment, base_env, dagster_pg_env, fresh_database
from tests.support.discord_stub import DiscordStub
from tests.support.pipeline import load_defs
from tests.support.scale import (
    SOURCE_URL_ENV,
    cron_at,
    database_keys,
    databases_file,
    max_concurrent,
    next_minute_after,
    run_windows,
    wait_for,
)
from tests.support.seed import SEED_COUNTS, SEED_SQL

# slow: runs Dagster's own processes (daemon, webserver); -m "not slow" leaves it out. About 3 minutes on an
# idle 2-core machine; a night of runs on a machine shared with other test runs can take three times that.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DATABASES = 18
SOURCES = 3
SERVER_MAX_RUNS = 2
BATCH_SIZE = 3
RUN_TIMEOUT_S = 600
# Startup of the code server, webserver and daemon before the tick; the tick is the first whole minute after.
TICK_LEAD_S = 75
# The same PostgreSQL reached by two names is two servers to the pipeline (host:port): source 2 and the
# broken database are on "localhost", the rest on "127.0.0.1".
SERVER_A, SERVER_B = "127.0.0.1:5432", "localhost:5432"
BROKEN_URL_ENV = "SCALE_BROKEN_URL"


def extra_entries(cron: str) -> str:
    """The broken database (on the night's cron), billing on a cron of its own, and the file's defaults."""
    return f"""\
  - key: broken
    url_env: {BROKEN_URL_ENV}
    schedule: "{cron}"
  - key: billing
    url_env: SCALE_SOURCE_0_URL
    name_prefix: billing
    schedule: "30 2 * * *"
    retention_days: 14
    keep_last: 3
    storage_prefix: db-backups/billing
defaults:
  server_max_runs: {SERVER_MAX_RUNS}
  batch_size: {BATCH_SIZE}
  verify_on: source
"""


@pytest.fixture(scope="module")
def deployment(pg_admin_url, tmp_path_factory):
    """Seeded sources, Dagster storage in PostgreSQL, the image's processes serving 18 databases (and a
    broken one) whose daily cron fires a minute or so from now, Discord's stand-in, and a pre-migration backup
    of one database requested once the night's runs are going."""
    tmp = tmp_path_factory.mktemp("scale")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    tick = next_minute_after(TICK_LEAD_S)
    keys = database_keys(DATABASES)
    config_file = tmp / "backups.yaml"
    config_file.write_text(databases_file(keys, SOURCES, cron_at(tick), extra=extra_entries(cron_at(tick))))
    with (
        pytest.MonkeyPatch.context() as env,
        DiscordStub() as discord,
        fresh_database(pg_admin_url, "bp15_dagster") as dagster_url,
        fresh_database(pg_admin_url, "bp15_src0", SEED_SQL) as source0,
        fresh_database(pg_admin_url, "bp15_src1", SEED_SQL) as source1,
        fresh_database(pg_admin_url, "bp15_src2", SEED_SQL) as source2,
    ):
        for name in CONFIG_VARS:
            env.delenv(name, raising=False)
        missing = f"bp15_missing_{int(time.time())}"
        pg_env = {"DAGSTER_HOME": str(home), **dagster_pg_env(dagster_url)}
        settings_env = {
            "BACKUP_CONFIG_FILE": str(config_file),
            SOURCE_URL_ENV.format(0): source0,
            SOURCE_URL_ENV.format(1): source1,
            SOURCE_URL_ENV.format(2): source2.replace("//postgres@127.0.0.1:", "//postgres@localhost:"),
            BROKEN_URL_ENV: source2.replace("//postgres@127.0.0.1:", "//postgres@localhost:").rsplit("/", 1)[0]
            + f"/{missing}",
            "BACKUP_LOCAL_DIR": str(tmp / "backups"),
            "DISCORD_WEBHOOK_URL": discord.webhook_url,
        }
        assert SERVER_A in source0, "the test server is expected at 127.0.0.1:5432"
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
            time.sleep(max(0.0, (tick - datetime.now(UTC)).total_seconds()))
            wait_for(
                lambda: instance.get_runs(
                    dg.RunsFilter(job_name="backup_batch", statuses=[dg.DagsterRunStatus.STARTED])
                ),
                RUN_TIMEOUT_S,
                "a batch run",
                check=processes.check_alive,
            )
            # While the night's batches run: a pre-migration backup of one database, requested as
            # `dagster job launch` would.
            request = defs.resolve_job_def("request_backup").execute_in_process(
                instance=instance,
                run_config={
                    "ops": {"backup_request": {"config": {"database": "db001", "backup_type": "pre-migration"}}}
                },
            )
            assert request.success
            yield {
                "instance": instance,
                "defs": defs,
                "processes": processes,
                "discord": discord,
                "keys": keys,
                "daily_id": f"daily_{tick:%Y%m%d_%H%M%S}",
                "cron": cron_at(tick),
                "premigration_request": request.run_id,
                "missing": missing,
            }
        finally:
            processes.stop()
            instance.dispose()


def finished_runs(deployment) -> list[dg.DagsterRun]:
    """The night's batch runs and the requested backup run, once all have finished."""
    instance, processes = deployment["instance"], deployment["processes"]
    settings = load_settings()
    # Server A: sources 0 and 1's 12 databases; server B: source 2's 6 and the broken one.
    expected_batches = -(-12 // BATCH_SIZE) + -(-7 // BATCH_SIZE)
    assert len(settings.databases) == DATABASES + 2

    def finished():
        runs = instance.get_runs(dg.RunsFilter(job_name="backup_batch")) + instance.get_runs(
            dg.RunsFilter(tags={"backup/kind": "backup"})
        )
        return runs if len(runs) >= expected_batches + 1 and all(r.is_finished for r in runs) else None

    return wait_for(finished, RUN_TIMEOUT_S, "the night's runs", check=processes.check_alive)


def catalog_for(key: str) -> BackupCatalog:
    settings = load_settings()
    db = settings.database(key)
    return BackupCatalog(open_storage(settings.storage), db.storage_prefix, db.name_prefix)


def test_definitions_do_not_grow_with_the_databases(deployment):
    repo = deployment["defs"].get_repository_def()
    assert sorted(s.name for s in repo.sensor_defs) == [
        "backup_batch_sensor",
        "backup_freshness_sensor",
        "backup_incident_sensor",
        "backup_request_sensor",
        "backup_retention_sensor",
        "dead_run_sensor",
        "discord_on_backup_success",
        "discord_on_run_failure",
    ]
    # One schedule per distinct cron: the night's databases' and billing's own.
    assert sorted(s.cron_schedule for s in repo.schedule_defs) == sorted(["30 2 * * *", deployment["cron"]])
    assert {job.name for job in repo.get_all_jobs()} == {
        "request_backup",
        "restore_job",
        "retention_job",
        "backup_batch",
        "__ASSET_JOB",
    }
    # What a user sees per database stays: its own asset group, partitions and settings from the file.
    for key in (deployment["keys"][0], deployment["keys"][-1], "billing"):
        names = DefinitionNames(load_settings().database(key))
        for asset in ("database_dump", "offsite_backup", "restore_verification", "backup_retention"):
            assert repo.asset_graph.get(dg.AssetKey([key, asset])).group_name == f"{key}_backups"
        assert repo.asset_graph.get(dg.AssetKey([key, "database_dump"])).partitions_def.name == names.partitions
    billing = load_settings().database("billing")
    assert (billing.retention_days, billing.keep_last, billing.storage_prefix) == (14, 3, "db-backups/billing")


def test_one_failing_database_fails_alone_and_every_other_is_verified_on_its_own_assets(deployment):
    instance, keys, daily_id = deployment["instance"], deployment["keys"], deployment["daily_id"]
    runs = finished_runs(deployment)
    batches = [r for r in runs if r.job_name == "backup_batch"]
    [tick_request] = instance.get_runs(dg.RunsFilter(job_name="request_backup", tags={"backup/type": "daily"}))
    assert tick_request.tags["dagster/schedule_name"] == schedule_name(deployment["cron"])
    # Every database of the tick in exactly one batch, each batch of one server; billing's cron is not due.
    assert sorted(k for r in batches for k in batch_keys(r.run_config)) == sorted(keys + ["broken"])
    for run in batches:
        assert run.tags[REQUESTED_BY_TAG] == tick_request.run_id and run.tags["backup/id"] == daily_id
        assert len(batch_keys(run.run_config)) <= BATCH_SIZE
    [failed] = [r for r in batches if r.status != dg.DagsterRunStatus.SUCCESS]
    assert "broken" in batch_keys(failed.run_config) and failed.tags[SERVER_TAG] == SERVER_B
    assert len(batch_keys(failed.run_config)) > 1, "the broken database should share its batch with others"

    # Every other database, those of the failed batch among them: stored, verified, holding its source's rows,
    # and recorded on its own assets in the backup's partition.
    for key in keys:
        [entry] = [e for e in catalog_for(key).complete() if str(e.name.id) == daily_id]
        assert entry.verified
        assert catalog_for(key).manifest(entry.name).tables == SEED_COUNTS
        for asset in ("database_dump", "offsite_backup", "restore_verification"):
            # The partition's own record (another test of this module may have stored a later pre-migration one).
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey([key, asset]), asset_partitions=[daily_id]), limit=1
            ).records
            assert records and records[0].run_id in {r.run_id for r in batches}, (key, asset)
    assert not [e for e in catalog_for("broken").complete()]
    assert instance.get_latest_materialization_event(dg.AssetKey(["broken", "restore_verification"])) is None

    # One failure alert, naming the broken database and why; a notice for each database backed up.
    discord = deployment["discord"]
    expected = DATABASES + 1  # the night's, and the pre-migration backup's
    deadline = time.monotonic() + 180
    while True:  # the sensors post within a few ticks; other messages (health warnings) may come between
        messages = discord.wait_for_messages(expected + 1, timeout=5)
        notices = [m for m in messages if m.startswith(":white_check_mark:")]
        if len(notices) >= expected or time.monotonic() > deadline:
            break
    failures = [m for m in messages if m.startswith(":x:")]
    assert len(failures) == 1 and deployment["missing"] in failures[0] and "does not exist" in failures[0]
    assert len(notices) == expected, [m.splitlines()[0] for m in messages]


def test_a_server_never_has_more_than_its_budget_of_runs_at_once(deployment):
    instance = deployment["instance"]
    runs = finished_runs(deployment)
    windows = run_windows(instance, runs)
    by_run = {r.run_id: r for r in runs}
    for server in (SERVER_A, SERVER_B):
        mine = [w for w in windows if by_run[w.run_id].tags.get(SERVER_TAG) == server]
        assert mine and max_concurrent(mine) <= SERVER_MAX_RUNS, (server, max_concurrent(mine))
        lanes = {by_run[w.run_id].tags[LANE_TAG] for w in mine}
        assert lanes <= {f"{server}#{lane}" for lane in range(SERVER_MAX_RUNS)}
    # Server A's four batches were all queued at the tick, and waited for a lane.
    a = [w for w in windows if by_run[w.run_id].tags.get(SERVER_TAG) == SERVER_A]
    assert max_concurrent(a) == SERVER_MAX_RUNS
    assert max(w.queued for w in a) < max(w.launched for w in a)


def test_a_requested_backup_runs_on_its_own_in_a_lane_of_its_server(deployment):
    runs = finished_runs(deployment)
    [premigration] = [r for r in runs if r.tags.get(REQUESTED_BY_TAG) == deployment["premigration_request"]]
    assert premigration.status == dg.DagsterRunStatus.SUCCESS
    assert premigration.tags[DATABASE_TAG] == "db001" and premigration.tags["backup/type"] == "pre-migration"
    assert premigration.tags[SERVER_TAG] == SERVER_A and premigration.tags[LANE_TAG].startswith(f"{SERVER_A}#")
    [entry] = [e for e in catalog_for("db001").complete() if str(e.name.id) == premigration.tags["dagster/partition"]]
    assert entry.verified
