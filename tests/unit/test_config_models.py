"""The configuration models (core/config.py): typed, frozen, every mistake named with its variable or line."""

from __future__ import annotations

import pydantic
import pytest

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.errors import ConfigurationError


def test_values_are_typed_and_settings_cannot_be_changed_afterwards():
    settings = load_settings(
        {"BACKUP_RETENTION_DAYS": " 14 ", "BACKUP_FRESHNESS_HOURS": "30", "BACKUP_S3_PREFIX": "/a/b/"}
    )
    db = settings.database()
    assert (db.retention_days, db.freshness_hours, db.storage_prefix) == (14, 30.0, "a/b")
    with pytest.raises(pydantic.ValidationError):
        db.retention_days = 1
    assert {db: "usable as a key"}[db]


def test_empty_variables_count_as_unset():
    assert (
        load_settings(
            {"BACKUP_RETENTION_DAYS": "", "BACKUP_S3_BUCKET": "", "DO_SPACES_BUCKET": "spaces"}
        ).storage.bucket
        == "spaces"
    )


def test_every_bad_variable_is_named_at_once():
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"BACKUP_RETENTION_DAYS": "0", "BACKUP_KEEP_LAST": "many"})
    assert str(caught.value).splitlines() == [
        "BACKUP_RETENTION_DAYS must be a whole number from 1 to 36500, got 0",
        "BACKUP_KEEP_LAST must be a whole number from 0 to 100000, got 'many'",
    ]


def test_rules_across_fields_are_checked():
    with pytest.raises(ConfigurationError, match="BACKUP_DUMP_JOBS=4 needs BACKUP_DUMP_FORMAT=directory"):
        load_settings({"BACKUP_DUMP_JOBS": "4"})
    assert load_settings({"BACKUP_DUMP_JOBS": "4", "BACKUP_DUMP_FORMAT": "Directory"}).database().dump_jobs == 4
    with pytest.raises(ConfigurationError, match="DISCORD_BACKUP_CHANNEL_ID is set but DISCORD_BOT_TOKEN is not"):
        load_settings({"DISCORD_BACKUP_CHANNEL_ID": "123"})


def test_settings_hold_the_names_of_secret_variables_never_their_values():
    settings = load_settings(
        {
            "BACKUP_S3_BUCKET": "team-backups",
            "AWS_SECRET_ACCESS_KEY": "s3cret",
            "DISCORD_WEBHOOK_URL": "https://discord.test/api/webhooks/1/wh-tok-9f3e",
        }
    )
    assert "s3cret" not in repr(settings) and "wh-tok-9f3e" not in repr(settings)
    assert settings.storage.secret_access_key_env == "AWS_SECRET_ACCESS_KEY"
    assert settings.storage.secret_variables() == ("AWS_SECRET_ACCESS_KEY",)
    assert settings.discord.configured


def test_the_databases_file_reports_problems_in_defaults_and_entries_by_line(tmp_path):
    path = tmp_path / "backups.yaml"
    path.write_text("defaults:\n  keep_last: -3\ndatabases:\n  - key: 1st\n    url_env: A_URL\n  - 7\n")
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"BACKUP_CONFIG_FILE": str(path)})
    assert str(caught.value).splitlines()[1:] == [
        f"  {path} line 2: keep_last must be a whole number from 0 to 100000, got -3",
        f"  {path} line 4: key '1st' must start with a letter and hold only letters, digits and '_' (at most 41 "
        "characters); it names the Dagster assets and jobs of that database",
        f"  {path} line 6: a database entry must be a mapping of fields such as 'key: billing'",
    ]


def test_file_databases_inherit_the_environment_and_the_file_defaults(tmp_path):
    path = tmp_path / "backups.yaml"
    path.write_text("defaults:\n  schedule: '15 4 * * *'\ndatabases:\n  - key: app\n    url_env: APP_URL\n")
    [db] = load_settings({"BACKUP_CONFIG_FILE": str(path), "BACKUP_RETENTION_DAYS": "9"}).databases
    assert db == DatabaseSettings(key="app", url_env="APP_URL", schedule_cron="15 4 * * *", retention_days=9)
