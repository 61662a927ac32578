"""Backup ids, object names and definition names: parsing, and which objects are ours."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.names import BackupId, BackupName, backup_name_prefix, check_safe_name, classify_key
from backup_pipeline.defs.names import ASSET_JOB, DefinitionNames, RunTarget, asset_url, run_url, schedule_name


def test_backup_id_round_trips_through_its_text():
    backup_id = BackupId.new("pre-migration", now=datetime(2026, 1, 13, 15, 0, 0, 123456, tzinfo=UTC))
    assert str(backup_id) == "pre-migration_20260113_150000"
    assert BackupId.parse(str(backup_id)) == backup_id


@pytest.mark.parametrize(
    "text, message",
    [
        ("weekly_20260113_150000", "is not a backup id"),
        ("manual_20261341_150000", "has an impossible date or time"),
        ("manual_2026011_150000", "is not a backup id"),
    ],
)
def test_bad_backup_ids_are_refused(text, message):
    with pytest.raises(ConfigurationError, match=message):
        BackupId.parse(text)


@pytest.mark.parametrize(
    "text", ["app_manual_20260113_150000", "app_manual_20260113_150000.dump", "manual_20260113_150000"]
)
def test_a_backup_is_named_with_or_without_prefix_and_suffix(text):
    assert str(BackupName.parse(text, "app")) == "app_manual_20260113_150000"


def test_another_databases_backup_is_not_one_of_ours():
    with pytest.raises(ConfigurationError, match="is not a backup of this database"):
        BackupName.parse("shop_manual_20260113_150000", "app")


@pytest.mark.parametrize(
    "key, expected",
    [
        ("db-backups/app_daily_20260113_060000.dump", ("app_daily_20260113_060000", "dump")),
        ("db-backups/app_daily_20260113_060000.dump.json", ("app_daily_20260113_060000", "manifest")),
        ("db-backups/app_daily_20260113_060000.dump.verified.json", ("app_daily_20260113_060000", "verified")),
        # A database whose name starts with ours, a stray file, another folder: none is ours.
        ("db-backups/app_v2_daily_20260113_060000.dump", None),
        ("db-backups/app_daily_20260113_060000.dump.json.bak", None),
        ("other/app_daily_20260113_060000.dump", None),
        ("db-backups/app_daily_20261313_060000.dump", None),
    ],
)
def test_only_our_own_object_names_are_classified_as_ours(key, expected):
    found = classify_key(key, "db-backups", "app")
    assert (None if found is None else (str(found[0]), found[1])) == expected


def test_the_name_prefix_is_the_configured_one_else_the_database_name():
    assert backup_name_prefix("billing", "app") == "billing"
    assert backup_name_prefix(None, "app") == "app"
    with pytest.raises(ConfigurationError, match="BACKUP_NAME_PREFIX 'my app' is not usable in object names"):
        backup_name_prefix("my app", "app")


@pytest.mark.parametrize("text", ["../etc/passwd", "a/b", "x\x00y", ""])
def test_unsafe_names_are_refused(text):
    with pytest.raises(ConfigurationError, match="is not a backup name"):
        check_safe_name(text)


def test_one_database_has_plain_definition_names_and_several_share_jobs_and_carry_their_key_in_assets():
    plain, billing = DefinitionNames(DatabaseSettings()), DefinitionNames(DatabaseSettings(key="billing"))
    assert (plain.backup_job, plain.restore_op, plain.prune_op, schedule_name(plain.db.schedule_cron, True)) == (
        "backup_job",
        "restore_backup",
        "backup_retention",
        "daily_backup_schedule",
    )
    assert plain.run_target("verify") == RunTarget("verify_job")
    assert billing.run_target("verify") == RunTarget(ASSET_JOB, [["billing", "restore_verification"]])
    assert billing.named_jobs() == {} and set(plain.named_jobs()) == {"backup_job", "verify_job", "prune_job"}
    # Several databases: the jobs, ops and sensors are shared; a run selects the database's own assets.
    assert (billing.restore_job, billing.restore_op, billing.prune_op, billing.request_sensor) == (
        "restore_job",
        "restore_backup",
        "backup_retention",
        "backup_request_sensor",
    )
    assert not billing.has_named_jobs
    assert billing.backup_selection == [
        ["billing", "database_dump"],
        ["billing", "offsite_backup"],
        ["billing", "restore_verification"],
    ]
    assert (billing.partitions, billing.group, billing.pool) == (
        "billing_backups",
        "billing_backups",
        "backup_db_billing",
    )


def test_databases_sharing_a_cron_share_a_schedule_named_for_it():
    assert schedule_name("0 6 * * *") == "daily_backup_schedule"
    assert schedule_name("30 2 * * 1-5") == "backup_schedule_30_2_x_x_1_5"
    # The one database of a DATABASE_URL setup keeps the daily schedule's name whatever its cron.
    assert schedule_name("30 2 * * *", only_default_database=True) == "daily_backup_schedule"


def test_links_to_the_ui():
    assert run_url("http://dagster.internal:3000", "abc") == "http://dagster.internal:3000/runs/abc"
    assert asset_url("http://x", ["billing", "restore_verification"]) == "http://x/assets/billing/restore_verification"
