"""Bad input, wherever it comes in (environment, run config, command line), is refused with a message that names
what is wrong and what to do, and nothing is lost or changed: the bucket holds the same bytes, no database is
created or dropped, no backup is written.

The command line's own list (unknown names, unsafe names, bad targets, --confirm, --type, DATABASE_URL,
--timeout 0) is tested with the command line; these are the rest.
"""

import os

import dagster as dg
import pytest

from backup_pipeline.cli.main import main
from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.names import BackupId
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.storage import open_storage
from tests.support.hardening import (
    bucket_state,
    clean_environment,
    create_database,
    database_names,
    drop_databases,
    s3_backup_env,
)
from tests.support.pipeline import failure_message, load_defs, run_backup

KEY_TEXT = "not-a-key-but-a-secret-phrase"


@pytest.fixture(scope="module")
def site(pg_admin_url, moto_server, tmp_path_factory):
    """A database with one stored backup; every case must leave both exactly as they were."""
    root = tmp_path_factory.mktemp("bad_input")
    dbname = create_database(pg_admin_url, "bpbad")
    bucket = f"bp-bad-{os.urandom(4).hex()}"
    client = moto_server.client()
    client.create_bucket(Bucket=bucket)
    env = s3_backup_env(pg_admin_url, dbname, moto_server, bucket, root)
    try:
        with clean_environment(env):
            catalog = BackupCatalog(open_storage(load_settings().storage), "db-backups", dbname)
            backup_id = BackupId.new("manual")
            take_backup(PostgresTarget.from_url(env["DATABASE_URL"]), catalog, backup_id, log=lambda _: None)
            dg.DagsterInstance.get().add_dynamic_partitions("backups", [str(backup_id)])
            yield {
                "dbname": dbname,
                "bucket": bucket,
                "client": client,
                "name": f"{dbname}_{backup_id}",
                "id": str(backup_id),
                "admin": pg_admin_url,
                "root": root,
            }
    finally:
        drop_databases(pg_admin_url, [dbname])


@pytest.fixture
def unchanged(site):
    """Asserts, after the test, that the bucket and the databases the case names are as they were."""
    before = bucket_state(site["client"], site["bucket"])
    databases = database_names(site["admin"])
    yield
    assert bucket_state(site["client"], site["bucket"]) == before
    # Other tests share the server (and make scratch databases of their own): look at the names used here.
    after = database_names(site["admin"])
    assert {d for d in after - databases if d.startswith("bad_")} == set()
    assert site["dbname"] in after


# --------------------------------------------------------------------------- configuration (environment variables)

CONFIGURATION = [
    ({"BACKUP_S3_MAX_ATTEMPTS": "0"}, "BACKUP_S3_MAX_ATTEMPTS must be a whole number from 1 to 20, got 0"),
    ({"BACKUP_S3_MAX_ATTEMPTS": "lots"}, "BACKUP_S3_MAX_ATTEMPTS must be a whole number from 1 to 20, got 'lots'"),
    ({"BACKUP_RETENTION_DAYS": "0"}, "BACKUP_RETENTION_DAYS must be a whole number from 1 to 36500, got 0"),
    ({"BACKUP_FRESHNESS_HOURS": "soon"}, "BACKUP_FRESHNESS_HOURS must be a number from 1 to 8784, got 'soon'"),
    ({"BACKUP_S3_PREFIX": "db-backups/../other"}, "BACKUP_S3_PREFIX 'db-backups/../other' must be a plain key prefix"),
    (
        {"BACKUP_S3_BUCKET": "", "DO_SPACES_BUCKET": "Team_Backups"},
        "DO_SPACES_BUCKET 'Team_Backups' is not a valid bucket",
    ),
    ({"BACKUP_S3_REGION": "", "DO_SPACES_REGION": "fra 1"}, "DO_SPACES_REGION 'fra 1' is not a region name"),
    (
        {"BACKUP_S3_ENDPOINT_URL": "ftp://files.example.com"},
        "BACKUP_S3_ENDPOINT_URL 'ftp://files.example.com' is not a URL",
    ),
    ({"DAGSTER_WEBSERVER_URL": "localhost:3000"}, "DAGSTER_WEBSERVER_URL 'localhost:3000' is not a URL"),
    (
        {"BACKUP_ENCRYPTION_KEY_FILE": "/nonexistent/backup.key"},
        "BACKUP_ENCRYPTION_KEY_FILE '/nonexistent/backup.key' is not a file",
    ),
    ({"BACKUP_ENCRYPTION_KEY": KEY_TEXT, "BACKUP_ENCRYPTION_KEY_FILE": "/etc/hostname"}, "set only one of them"),
    ({"BACKUP_SCHEDULE_CRON": "0 6 * *"}, "BACKUP_SCHEDULE_CRON '0 6 * *' is not a cron expression"),
]


@pytest.mark.parametrize(
    "values, expected",
    CONFIGURATION,
    ids=[next(iter(v)) if len(v) == 1 else "+".join(k for k in v if v[k]) for v, _ in CONFIGURATION],
)
def test_bad_configuration_is_refused_before_anything_runs(values, expected, site, unchanged, monkeypatch, capsys):
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=expected.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        load_settings()
    # The command line says the same and exits 2 before any run exists.
    runs_before = len(dg.DagsterInstance.get().get_run_records())
    assert main(["backup", "--no-wait"]) == 2
    error = capsys.readouterr().err
    assert expected in error and "Traceback" not in error
    assert KEY_TEXT not in error
    assert len(dg.DagsterInstance.get().get_run_records()) == runs_before


# ------------------------------------------------------------------------ configuration found wrong when a run starts

AT_RUN_TIME = [
    ({"BACKUP_NAME_PREFIX": "my app"}, "BACKUP_NAME_PREFIX 'my app' is not usable in object names"),
    ({"BACKUP_PG_BIN_DIR": "/nonexistent/bin"}, "BACKUP_PG_BIN_DIR '/nonexistent/bin' holds no pg_dump"),
    ({"BACKUP_ENCRYPTION_KEY": KEY_TEXT}, "BACKUP_ENCRYPTION_KEY is not a usable encryption key"),
    ({"BACKUP_S3_BUCKET": "", "BACKUP_LOCAL_DIR": "/etc/hostname"}, "cannot use the backup folder /etc/hostname"),
]


@pytest.mark.parametrize("values, expected", AT_RUN_TIME, ids=[next(iter(v)) for v, _ in AT_RUN_TIME])
def test_bad_configuration_fails_the_run_before_dumping(values, expected, site, unchanged, monkeypatch):
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    result, backup_id = run_backup(dg.DagsterInstance.get(), "manual")
    message = failure_message(result)
    assert not result.success
    assert expected in message and "Traceback" not in message
    assert KEY_TEXT not in message


# ------------------------------------------------------------------------------------------------------ run config


def _restore_config(**config):
    return {"ops": {"restore_backup": {"config": {"confirm": "RESTORE", **config}}}}


RUN_CONFIG = [
    (
        "restore_job",
        lambda s: _restore_config(backup_name=s["name"], target_db="bad_x", confirm="restore"),
        "a restore needs confirm: RESTORE in its run config",
    ),
    (
        "restore_job",
        lambda s: _restore_config(backup_name=s["name"], target_db="bad_x", jobs=0),
        "jobs (--jobs) must be from 1 to 64, got 0",
    ),
    (
        "restore_job",
        lambda s: _restore_config(backup_name=s["name"], target_db="bad_x", jobs=500),
        "jobs (--jobs) must be from 1 to 64, got 500",
    ),
    (
        "restore_job",
        lambda s: _restore_config(backup_name=s["name"], target_db="template1"),
        "refusing to restore into 'template1': it is a system database",
    ),
    (
        "restore_job",
        # The shape of this tool's scratch databases, which a sweep drops once no run holds them.
        lambda s: _restore_config(backup_name=s["name"], target_db="bp_restore_20260101000000_0123abcd"),
        "refusing to restore into 'bp_restore_20260101000000_0123abcd': names of the form bp_<purpose>",
    ),
    (
        "restore_job",
        lambda s: _restore_config(backup_name=s["name"], target_db='x"; DROP DATABASE postgres; --'),
        "may hold only letters, digits",
    ),
    (
        "restore_job",
        lambda s: _restore_config(backup_name="../../etc/passwd", target_db="bad_x"),
        "is not a backup name: a name has no '/'",
    ),
    (
        "restore_job",
        lambda s: _restore_config(backup_name="billing_manual_20260113_150000", target_db="bad_x"),
        "'billing_manual_20260113_150000' is not a backup of this database",
    ),
    (
        "restore_job",
        lambda s: _restore_config(backup_name=s["dbname"] + "_manual_20261340_250000", target_db="bad_x"),
        "has an impossible date or time in it",
    ),
    (
        "restore_job",
        lambda s: _restore_config(backup_name=s["name"], target_db="bad_x", target_url_env="NO_SUCH_URL"),
        'Received unexpected config entry "target_url_env"',
    ),
    (
        "restore_job",
        lambda s: _restore_config(backup_name=s["name"], target_db="bad_never_made", replace=True),
        "--replace was given but database 'bad_never_made' does not exist",
    ),
    (
        "restore_job",
        lambda s: _restore_config(
            backup_name=s["name"], target_db="bad_x", target_url="postgresql://u:hunter22@127.0.0.1/postgres"
        ),
        'Received unexpected config entry "target_url"',
    ),
    (
        "restore_job",
        lambda s: _restore_config(
            backup_name=s["name"], target_db="bad_x", target_password_env="AWS_SECRET_ACCESS_KEY"
        ),
        'Received unexpected config entry "target_password_env"',
    ),
    (
        "restore_job",
        lambda s: _restore_config(backup_name=s["name"], target_db="bad_x", target="attacker_host"),
        "no restore target 'attacker_host' is configured: use one of default",
    ),
    (
        "restore_job",
        lambda s: {"ops": {"restore_backup": {"config": {"backup_name": s["name"], "target_database": "x"}}}},
        'Received unexpected config entry "target_database"',
    ),
    (
        "request_backup",
        lambda s: {"ops": {"backup_request": {"config": {"backup_type": "weekly"}}}},
        "unknown backup type 'weekly': use one of daily, pre-migration, manual",
    ),
    (
        "prune_job",
        lambda s: {"ops": {"backup_retention": {"config": {"dry_run": "yes"}}}},
        'Invalid scalar at path root:ops:backup_retention:config:dry_run. Value "yes"',
    ),
    ("backup_job", lambda s: "latest", "'latest' is not a backup id: expected <type>_<YYYYMMDD_HHMMSS>"),
]


@pytest.mark.parametrize(
    "job, make_config, expected", RUN_CONFIG, ids=[f"{job}:{expected[:40]}" for job, _, expected in RUN_CONFIG]
)
def test_bad_run_config_fails_clearly(job, make_config, expected, site, unchanged):
    instance = dg.DagsterInstance.get()
    config = make_config(site)
    job_def = load_defs().resolve_job_def(job)
    try:
        if job == "backup_job":  # a partition someone added by hand in the UI
            instance.add_dynamic_partitions("backups", [config])
            result = job_def.execute_in_process(instance=instance, partition_key=config, raise_on_error=False)
        else:
            result = job_def.execute_in_process(instance=instance, run_config=config, raise_on_error=False)
        message = failure_message(result)
        assert not result.success
    except dg.DagsterInvalidConfigError as error:  # Dagster checks the config's shape before a run exists
        message = str(error)
    assert expected in message, message
    assert "hunter22" not in message
    if job == "backup_job":
        instance.delete_dynamic_partition("backups", config)


# --------------------------------------------------------------------------------------------------- command line

COMMAND_LINE = [
    (
        ["restore", "{name}", "--target-db", "bad_x", "--jobs", "0", "--confirm", "RESTORE"],
        "jobs (--jobs) must be from 1 to 64, got 0",
    ),
    (
        ["restore", "{name}", "--target-db", "bad_x", "--jobs", "two", "--confirm", "RESTORE"],
        "invalid int value: 'two'",
    ),
    (
        ["restore", "{name}", "--target-db", "bad_x", "--target-url", "mysql://root@db/app", "--confirm", "RESTORE"],
        "--target-url is not a PostgreSQL URL",
    ),
    (["backup", "--timeout", "soon"], "'soon' is not a number of seconds"),
    (["backup", "--timeout", "-5"], "must be more than 0 seconds"),
    (["list", "--type", "weekly"], "invalid choice: 'weekly'"),
    (["--database", "billing", "list"], "--database billing: only one database is configured (DATABASE_URL's)"),
    (["info", "{dbname}_manual_2026"], "is not a backup id"),
    (["prune", "--dry-run", "--timeout", "0"], "must be more than 0 seconds"),
    (["vacuum"], "invalid choice: 'vacuum'"),
]


@pytest.mark.parametrize(
    "argv, expected", COMMAND_LINE, ids=[" ".join(a[:3]) + f" ({e[:20]})" for a, e in COMMAND_LINE]
)
def test_bad_command_line_exits_2_with_a_clear_message(argv, expected, site, unchanged, capsys):
    argv = [a.format(**site) for a in argv]
    runs_before = len(dg.DagsterInstance.get().get_run_records())
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    error = capsys.readouterr().err
    assert code == 2
    assert expected in error, error
    assert "Traceback" not in error
    assert len(dg.DagsterInstance.get().get_run_records()) == runs_before  # refused before any run existed
