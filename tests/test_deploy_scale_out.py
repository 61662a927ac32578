"""Many databases on the production profile, run for real: Dagster's storage in a fresh PostgreSQL database,
the image's code server, webserver and daemon on loopback, two dozen databases from a config file.

The real scheduler fires one tick for every database sharing a cron; the batch sensor answers it with
backup_batch runs, a few databases of one server each; the run queue lets at most server_max_runs of them
through at once per server (deploy/dagster.yaml's lane limit). One database's server answers that it does
not exist: its step fails, alone, with one alert naming it, while the others of its batch are backed up,
verified and recorded on their own assets. A pre-migration backup requested meanwhile runs on its own, in a
lane of its server.

A `servers:` entry enrols the test server's databases matching a pattern: one exists when the processes
start, the other is created once the code server has loaded the definitions, so only the enrolment sensor's
look finds it; the look has the webserver reload the code location, and the tick backs up both. Three
databases of a server that is down (a loopback port nothing listens on) fail in one batch for the same
cause: one alert lists them, none has a message of its own.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import urllib.request
from datetime import UTC, datetime

import dagster as dg
import pytest

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.enrolled import load_all_settings as load_settings
from backup_pipeline.core.enrolment import database_key
from backup_pipeline.core.storage import open_storage
from backup_pipeline.defs.batch_config import batch_keys
from backup_pipeline.defs.names import (
    CODE_LOCATION_NAME,
    DATABASE_TAG,
    ENROLMENT_SENSOR,
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
from tests.support.processes import free_port
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
# Startup of the code server, webserver and daemon, and the reload the enrolment sensor's first look asks for,
# before the tick (all done 16-33 s after the start on a 2-core machine, idle or shared); the tick is the
# first whole minute after.
TICK_LEAD_S = 75
# The same PostgreSQL reached by two names is two servers to the pipeline (host:port): source 2 and the
# broken database are on "localhost", the rest on "127.0.0.1".
SERVER_A, SERVER_B = "127.0.0.1:5432", "localhost:5432"
BROKEN_URL_ENV = "SCALE_BROKEN_URL"
# The servers: entry enrolling the test server's databases whose names match its pattern (on server A).
FLEET_KEY = "fleet"
FLEET_URL_ENV = "SCALE_FLEET_SERVER_URL"
# Databases of a server that is down, all on the night's cron: as many as make one batch.
DOWN_KEYS = [f"down{index}" for index in range(BATCH_SIZE)]
DOWN_URL_ENV = "SCALE_DOWN_{}_URL"
# Short, so the down server's alert comes soon after its batch fails; long enough to take in the batch's
# three failures, which end together.
ALERT_GROUP_S = 10


def extra_entries(cron: str, fleet_pattern: str) -> str:
    """The broken database and those of the down server (on the night's cron), billing on a cron of its own,
    the server entry enrolling the fleet's databases (on the night's cron), and the file's defaults."""
    down = "".join(
        f"""\
  - key: {key}
    url_env: {DOWN_URL_ENV.format(index)}
    schedule: "{cron}"
"""
        for index, key in enumerate(DOWN_KEYS)
    )
    return f"""\
  - key: broken
    url_env: {BROKEN_URL_ENV}
    schedule: "{cron}"
{down}  - key: billing
    url_env: SCALE_SOURCE_0_URL
    name_prefix: billing
    schedule: "30 2 * * *"
    retention_days: 14
    keep_last: 3
    storage_prefix: db-backups/billing
servers:
  - key: {FLEET_KEY}
    url_env: {FLEET_URL_ENV}
    include: ["{fleet_pattern}"]
    schedule: "{cron}"
defaults:
  server_max_runs: {SERVER_MAX_RUNS}
  batch_size: {BATCH_SIZE}
  verify_on: source
"""


@pytest.fixture(scope="module")
def deployment(pg_admin_url, tmp_path_factory):
    """Seeded sources, Dagster storage in PostgreSQL, the image's processes serving 18 databases (a broken one,
    three of a down server and the fleet's two enrolled ones besides) whose daily cron fires a minute or so
    from now, Discord's stand-in, and a pre-migration backup of one database requested once the night's runs
    are going."""
    tmp = tmp_path_factory.mktemp("scale")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    tick = next_minute_after(TICK_LEAD_S)
    keys = database_keys(DATABASES)
    # This run's own pattern: the server is shared, and another run's fleet databases are none of ours.
    fleet = f"bp15_fleet_{secrets.token_hex(3)}"
    config_file = tmp / "backups.yaml"
    config_file.write_text(
        databases_file(keys, SOURCES, cron_at(tick), extra=extra_entries(cron_at(tick), f"{fleet}_*"))
    )
    # Nothing listens there once free_port has closed its probe: a server that is down.
    down_port = free_port()
    # Chosen now: the code server's enrolment sensor asks the webserver, started after it, to reload.
    webserver_port = free_port()
    with (
        pytest.MonkeyPatch.context() as env,
        DiscordStub() as discord,
        contextlib.ExitStack() as created_later,
        fresh_database(pg_admin_url, "bp15_dagster") as dagster_url,
        fresh_database(pg_admin_url, "bp15_src0", SEED_SQL) as source0,
        fresh_database(pg_admin_url, "bp15_src1", SEED_SQL) as source1,
        fresh_database(pg_admin_url, "bp15_src2", SEED_SQL) as source2,
        fresh_database(pg_admin_url, fleet, SEED_SQL) as fleet_before,
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
            FLEET_URL_ENV: pg_admin_url,
            **{
                DOWN_URL_ENV.format(i): f"postgresql://postgres@127.0.0.1:{down_port}/bp15_{key}"
                for i, key in enumerate(DOWN_KEYS)
            },
            "BACKUP_LOCAL_DIR": str(tmp / "backups"),
            "DISCORD_WEBHOOK_URL": discord.webhook_url,
            "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{webserver_port}",
            "BACKUP_ALERT_GROUP_SECONDS": str(ALERT_GROUP_S),
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
            webserver_port=webserver_port,
        )
        try:
            processes.start_code_server()
            # The code server answers once it has loaded the definitions: a database created now is in none of
            # them, and only the enrolment sensor's look (from the daemon's first tick) can find it.
            processes.wait_for_code_server()
            fleet_after = created_later.enter_context(fresh_database(pg_admin_url, fleet, SEED_SQL))
            # The webserver first: the daemon's first look at the fleet's server asks it to reload.
            processes.start_services(webserver_first=True)
            fleet_keys = [database_key(FLEET_KEY, url.rsplit("/", 1)[1]) for url in (fleet_before, fleet_after)]
            webserver_url = f"http://127.0.0.1:{webserver_port}"
            # The reload must come before the tick, or the tick backs up the definitions loaded at the start.
            wait_for(
                lambda: asset_group(webserver_url, [fleet_keys[1], "database_dump"]),
                max(1.0, (tick - datetime.now(UTC)).total_seconds()),
                f"the code location reloaded with {fleet_keys[1]} before the tick at {tick:%H:%M}",
                check=processes.check_alive,
            )
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
                "fleet_keys": fleet_keys,
                "down_server": f"127.0.0.1:{down_port}",
                "webserver_url": webserver_url,
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
    # Server A: sources 0 and 1's 12 databases and the fleet's 2; server B: source 2's 6 and the broken one;
    # the down server: its own.
    expected_batches = -(-14 // BATCH_SIZE) + -(-7 // BATCH_SIZE) + -(-len(DOWN_KEYS) // BATCH_SIZE)
    assert len(settings.databases) == DATABASES + 2 + len(DOWN_KEYS) + len(deployment["fleet_keys"])

    def finished():
        runs = instance.get_runs(dg.RunsFilter(job_name="backup_batch"))
        return runs if len(runs) >= expected_batches + 1 and all(r.is_finished for r in runs) else None

    return wait_for(finished, RUN_TIMEOUT_S, "the night's runs", check=processes.check_alive)


def catalog_for(key: str) -> BackupCatalog:
    settings = load_settings()
    db = settings.database(key)
    return BackupCatalog(open_storage(settings.storage), db.storage_prefix, db.name_prefix)


def webserver_query(webserver_url: str, query: str, variables: dict) -> dict:
    """The answer of the webserver's GraphQL API (what the UI shows) to `query`."""
    request = urllib.request.Request(
        f"{webserver_url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read()).get("data") or {}


def asset_group(webserver_url: str, path: list[str]) -> str | None:
    """The group of the asset at `path` in the code location the webserver has loaded; None when it has none."""
    node = webserver_query(
        webserver_url,
        "query ($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode { groupName } } }",
        {"path": path},
    ).get("assetNodeOrError")
    return (node or {}).get("groupName")


def enrolment_sensor_ticks(webserver_url: str) -> list[dict]:
    """The enrolment sensor's ticks, newest first: status, and why it skipped."""
    selector = {"repositoryLocationName": CODE_LOCATION_NAME, "repositoryName": "__repository__"}
    sensor = webserver_query(
        webserver_url,
        "query ($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { ... on Sensor {"
        " sensorState { ticks(limit: 10) { status skipReason timestamp } } } } }",
        {"selector": {**selector, "sensorName": ENROLMENT_SENSOR}},
    )["sensorOrError"]
    return sensor["sensorState"]["ticks"]


def night_messages(deployment) -> list[str]:
    """What Discord got once the night's alerts are in: a notice for each database backed up, the broken
    database's failure and the down server's alert (its window closes ALERT_GROUP_S after its batch)."""
    discord = deployment["discord"]
    notices_due = DATABASES + 1 + len(deployment["fleet_keys"])  # the night's, and the pre-migration backup's
    deadline = time.monotonic() + 180
    while True:  # the sensors post within a few ticks; other messages (health warnings) may come between
        messages = discord.wait_for_messages(notices_due + 2, timeout=5)
        notices = [m for m in messages if m.startswith(":white_check_mark:")]
        failures = [m for m in messages if m.startswith(":x:")]
        if (len(notices) >= notices_due and len(failures) >= 2) or time.monotonic() > deadline:
            return messages


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
        "server_enrolment_sensor",
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
    [tick_request] = instance.get_runs(dg.RunsFilter(job_name="request_backup", tags={"backup/type": "daily"}))
    assert tick_request.tags["dagster/schedule_name"] == schedule_name(deployment["cron"])
    batches = [r for r in runs if r.tags.get(REQUESTED_BY_TAG) == tick_request.run_id]
    # Every database of the tick in exactly one batch, each batch of one server; billing's cron is not due.
    night = keys + ["broken", *DOWN_KEYS, *deployment["fleet_keys"]]
    assert sorted(k for r in batches for k in batch_keys(r.run_config)) == sorted(night)
    for run in batches:
        assert run.tags[REQUESTED_BY_TAG] == tick_request.run_id and run.tags["backup/id"] == daily_id
        assert len(batch_keys(run.run_config)) <= BATCH_SIZE
    # Two batches failed: the broken database's, and the down server's (test_a_down_server_...).
    failed = {r.tags[SERVER_TAG]: r for r in batches if r.status != dg.DagsterRunStatus.SUCCESS}
    assert sorted(failed) == sorted([SERVER_B, deployment["down_server"]])
    assert "broken" in batch_keys(failed[SERVER_B].run_config)
    assert len(batch_keys(failed[SERVER_B].run_config)) > 1, "the broken database should share its batch with others"

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

    # One failure alert naming the broken database and why (the other is the down server's); a notice for
    # each database backed up.
    messages = night_messages(deployment)
    notices = [m for m in messages if m.startswith(":white_check_mark:")]
    [own] = [m for m in messages if m.startswith(":x:") and deployment["missing"] in m]
    assert "does not exist" in own and "server unreachable" not in own
    assert len(notices) == DATABASES + 1 + len(deployment["fleet_keys"]), [m.splitlines()[0] for m in messages]


def test_a_database_created_on_an_enrolled_server_after_the_load_is_backed_up_at_the_tick(deployment):
    """The fleet's second database was created after the code server had loaded the definitions: the
    enrolment sensor's look found it and had the webserver reload the code location, so the tick backed up
    both, each recorded on its own assets."""
    instance, daily_id, (before, after) = deployment["instance"], deployment["daily_id"], deployment["fleet_keys"]
    runs = finished_runs(deployment)
    batches = {r.run_id for r in runs if r.job_name == "backup_batch"}
    ticks = enrolment_sensor_ticks(deployment["webserver_url"])
    assert any("reload requested" in (t["skipReason"] or "") for t in ticks), ticks
    for asset in ("database_dump", "offsite_backup", "restore_verification", "backup_retention"):
        assert asset_group(deployment["webserver_url"], [after, asset]) == f"{after}_backups"
    for key in (before, after):
        assert load_settings().database(key).schedule_cron == deployment["cron"]
        [entry] = [e for e in catalog_for(key).complete() if str(e.name.id) == daily_id]
        assert entry.verified and catalog_for(key).manifest(entry.name).tables == SEED_COUNTS
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey([key, "restore_verification"]), asset_partitions=[daily_id]),
            limit=1,
        ).records
        assert records and records[0].run_id in batches, key


def test_a_down_server_is_one_alert_listing_its_databases(deployment):
    """The down server's three databases failed in one batch, for one cause: the incident sensor posts one
    message listing them; the failure sensor posts none of its own for them."""
    runs = finished_runs(deployment)
    [batch] = [r for r in runs if r.tags.get(SERVER_TAG) == deployment["down_server"]]
    assert batch.status == dg.DagsterRunStatus.FAILURE and sorted(batch_keys(batch.run_config)) == DOWN_KEYS
    messages = night_messages(deployment)
    names = [f"bp15_{key}" for key in DOWN_KEYS]
    about_them = [m for m in messages if any(name in m for name in names)]
    # The dead-man's switch speaks of each database with no verified backup yet, every other database too: its
    # first tick comes at the daemon's start, before any backup. It is no alert of their failure.
    failures = [m for m in about_them if not m.startswith(":rotating_light:")]
    assert all("No verified backup" in m for m in about_them if m not in failures)
    assert len(failures) == 1, failures
    [grouped] = failures
    assert grouped.startswith(":x:") and "3 backups failed: server unreachable" in grouped
    assert deployment["down_server"] in grouped and all(f"`{name}`" in grouped for name in names)
    assert deployment["missing"] not in grouped


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
    # Server A's five batches were all queued at the tick, and waited for a lane.
    a = [w for w in windows if by_run[w.run_id].tags.get(SERVER_TAG) == SERVER_A]
    assert max_concurrent(a) == SERVER_MAX_RUNS
    assert max(w.queued for w in a) < max(w.launched for w in a)


def test_a_requested_backup_runs_on_its_own_in_a_lane_of_its_server(deployment):
    runs = finished_runs(deployment)
    [premigration] = [r for r in runs if r.tags.get(REQUESTED_BY_TAG) == deployment["premigration_request"]]
    assert premigration.status == dg.DagsterRunStatus.SUCCESS
    # A run of its own: backup_batch with this one database (no job of every database's assets to build).
    assert premigration.job_name == "backup_batch" and batch_keys(premigration.run_config) == ["db001"]
    assert premigration.tags[DATABASE_TAG] == "db001" and premigration.tags["backup/type"] == "pre-migration"
    assert premigration.tags[SERVER_TAG] == SERVER_A and premigration.tags[LANE_TAG].startswith(f"{SERVER_A}#")
    [entry] = [e for e in catalog_for("db001").complete() if str(e.name.id) == premigration.tags["backup/id"]]
    assert entry.verified
    # Recorded on db001's own assets, in the backup's partition, as a run of its assets would be.
    instance = deployment["instance"]
    for asset in ("database_dump", "offsite_backup", "restore_verification"):
        [record] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(["db001", asset]), asset_partitions=[str(entry.name.id)]),
            limit=1,
        ).records
        assert record.run_id == premigration.run_id, asset
