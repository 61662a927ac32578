"""Configuration read from the environment: what users set is what the pipeline uses."""

import os
import stat

import pytest

from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.storage import LocalStorageSettings


def test_do_spaces_names_of_the_original_workflows_are_accepted():
    settings = load_settings(
        {
            "DO_SPACES_BUCKET": "team-backups",
            "DO_SPACES_REGION": "fra1",
            "DO_SPACES_KEY": "k",
            "DO_SPACES_SECRET": "s",
        }
    )
    storage = settings.storage
    assert storage.bucket == "team-backups"
    assert storage.endpoint_url == "https://fra1.digitaloceanspaces.com"
    assert (storage.access_key_id_env, storage.secret_access_key_env) == ("DO_SPACES_KEY", "DO_SPACES_SECRET")


def test_defaults_match_the_documented_table():
    db = load_settings({}).database()
    assert (db.storage_prefix, db.retention_days, db.keep_last, db.schedule_cron) == ("db-backups", 30, 7, "0 6 * * *")
    assert isinstance(load_settings({}).storage, LocalStorageSettings)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"BACKUP_RETENTION_DAYS": "thirty"}, "BACKUP_RETENTION_DAYS must be a whole number"),
        ({"BACKUP_KEEP_LAST": "-1"}, "BACKUP_KEEP_LAST must be a whole number from 0 to 100000, got -1"),
        # Past the bounds a value is a typo; a million days would overflow date arithmetic.
        (
            {"BACKUP_RETENTION_DAYS": "1000000"},
            "BACKUP_RETENTION_DAYS must be a whole number from 1 to 36500, got 1000000",
        ),
        ({"BACKUP_RETENTION_DAYS": "9" * 400}, "BACKUP_RETENTION_DAYS must be a whole number from 1 to 36500, got 999"),
        ({"BACKUP_KEEP_LAST": "100001"}, "BACKUP_KEEP_LAST must be a whole number from 0 to 100000"),
        ({"BACKUP_FRESHNESS_HOURS": "1e308"}, "BACKUP_FRESHNESS_HOURS must be a number from 1 to 8784, got 1e\\+308"),
        ({"BACKUP_FRESHNESS_HOURS": "nan"}, "BACKUP_FRESHNESS_HOURS must be a number from 1 to 8784, got nan"),
        ({"BACKUP_S3_MAX_ATTEMPTS": "1000"}, "BACKUP_S3_MAX_ATTEMPTS must be a whole number from 1 to 20, got 1000"),
        ({"BACKUP_DUMP_JOBS": "100000"}, "BACKUP_DUMP_JOBS must be a whole number from 1 to"),
        ({"BACKUP_S3_BUCKET": "Bad_Bucket"}, "BACKUP_S3_BUCKET 'Bad_Bucket' is not a valid bucket name"),
        ({"BACKUP_S3_ENDPOINT_URL": "minio:9000"}, "BACKUP_S3_ENDPOINT_URL 'minio:9000' is not a URL"),
        ({"BACKUP_SCHEDULE_CRON": "every day"}, "BACKUP_SCHEDULE_CRON 'every day' is not a cron expression"),
    ],
)
def test_bad_settings_name_the_variable(env, expected):
    with pytest.raises(ConfigurationError, match=expected):
        load_settings(env)


def test_libpq_options_reach_pg_dump_and_the_password_does_not():
    target = PostgresTarget.from_url(
        "postgresql://app:s%3Acret@db.internal:6432/shop?sslmode=require&application_name=nightly"
    )
    conninfo = target.conninfo_without_password()
    assert "sslmode=require" in conninfo and "port=6432" in conninfo and "dbname=shop" in conninfo
    assert "s:cret" not in conninfo and "password" not in conninfo
    assert target.describe() == "app@db.internal:6432/shop"
    with target.child_env() as env:
        path = env["PGPASSFILE"]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert open(path).read() == "*:*:*:*:s\\:cret\n"
        assert "s:cret" not in " ".join(f"{k}={v}" for k, v in env.items() if k != "PGPASSFILE")
    assert not os.path.exists(path)


@pytest.mark.parametrize(
    "url, expected",
    [
        (None, "DATABASE_URL is not set"),
        ("mysql://root@localhost/app", "DATABASE_URL is not a PostgreSQL URL"),
        ("postgresql://user:pw@host:port/app", "has port 'port', which is not a number"),
        ("postgresql://user:pw@host/app?sslmode", "could not be parsed"),
        ("postgresql://user@host:5432", "names no database"),
    ],
)
def test_bad_database_urls_are_explained_without_the_password(url, expected):
    with pytest.raises(ConfigurationError, match=expected) as error:
        PostgresTarget.from_url(url)
    assert "pw" not in str(error.value)
