"""Backup health checks through Dagster: each fails on a crafted history and passes on a normal one, as WARN
asset check results recorded on the instance, with the Discord warning's text; they block nothing."""

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.health import HEALTH_CHECKS
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import TIMESTAMP_FORMAT
from backup_pipeline.core.notify.discord import DISCORD_MARKUP
from backup_pipeline.core.notify.text import render
from backup_pipeline.defs.alerts.run_sensors import health_warning_event
from backup_pipeline.defs.alerts.runs import asset_check_evaluations
from tests.support.pipeline import failure_message, run_backup


@pytest.fixture
def world(local_env, clean_env, tmp_path):
    clean_env.setenv("BACKUP_NAME_PREFIX", "app")
    # Verification restores into a scratch database of the source server: where it runs plays no part here, and
    # ten backups each starting a local server would cost the suite about 15 s of CPU.
    clean_env.setenv("BACKUP_VERIFY_ON", "source")
    instance = dg.DagsterInstance.get()
    first, backup_id = run_backup(instance, "manual")
    assert first.success, failure_message(first)
    folder = tmp_path / "backups" / "db-backups"
    manifest = Manifest.from_json((folder / f"app_{backup_id}.dump.json").read_bytes())
    return instance, folder, manifest


def _craft_previous(folder, real: Manifest, **changes) -> str:
    """A verified backup just before now, whose manifest says what the crafted case needs."""
    time.sleep(1.1)  # after every real backup so far, before the next
    backup_id = f"manual_{(datetime.now(UTC) - timedelta(seconds=1)).strftime(TIMESTAMP_FORMAT)}"
    name = f"app_{backup_id}"
    at = datetime.strptime(backup_id.split("_", 1)[1], TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    crafted = replace(
        real, name=name, backup_id=backup_id, created_at=at.isoformat(), key=f"db-backups/{name}.dump", **changes
    )
    (folder / f"{name}.dump").write_bytes((folder / f"{real.name}.dump").read_bytes())
    (folder / f"{name}.dump.json").write_bytes(crafted.to_json())
    (folder / f"{name}.dump.verified.json").write_bytes((folder / f"{real.name}.dump.verified.json").read_bytes())
    time.sleep(1.1)
    return name


def _checks(instance, result) -> dict:
    recorded = {e.check_name: e for e in asset_check_evaluations(instance, result.run_id)}
    return {name: recorded[name] for name in HEALTH_CHECKS}


def test_a_normal_backup_passes_every_health_check(world):
    instance, folder, real = world
    previous = _craft_previous(folder, real)
    result, _ = run_backup(instance, "manual")
    assert result.success, failure_message(result)
    checks = _checks(instance, result)
    assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items()}
    assert all(c.severity == dg.AssetCheckSeverity.WARN for c in checks.values())
    assert previous in checks["no_table_disappeared"].description
    settings = load_settings()
    assert health_warning_event(instance, instance.get_run_by_id(result.run_id), settings, settings.database()) is None


@pytest.mark.parametrize(
    ("case", "check", "says"),
    [
        ("table gone", "no_table_disappeared", "1 table(s) of app_manual_"),
        ("rows dropped", "rows_not_dropped", "66.7 % fewer than"),
        ("dump halved", "dump_not_halved", "33% of app_manual_"),
        ("no tables", "tables_present", "no tables at all, where app_manual_"),
    ],
)
def test_each_health_check_fails_on_its_crafted_case_and_blocks_nothing(
    world, case, check, says, make_database, clean_env
):
    instance, folder, real = world
    changes = {
        "table gone": {"tables": {**real.tables, "public.dropped_by_mistake": 5}},
        "rows dropped": {"tables": {k: v * 3 for k, v in real.tables.items()}},
        "dump halved": {"size_bytes": real.size_bytes * 3},
        "no tables": {},
    }[case]
    _craft_previous(folder, real, **changes)
    if case == "no tables":
        clean_env.setenv("DATABASE_URL", make_database(seed_sql=None))  # emptied by a bad migration

    result, backup_id = run_backup(instance, "manual")

    assert result.success, failure_message(result)  # a warning: the backup is stored and verified all the same
    assert (folder / f"app_{backup_id}.dump.verified.json").exists()
    checks = _checks(instance, result)
    assert not checks[check].passed and says in checks[check].description, checks[check].description
    assert checks[check].severity == dg.AssetCheckSeverity.WARN
    if case != "no tables":  # an empty database also loses its tables and rows: the others fail with it
        assert [n for n, c in checks.items() if not c.passed] == [check]
    settings = load_settings()
    event = health_warning_event(instance, instance.get_run_by_id(result.run_id), settings, settings.database())
    warning = render(event, DISCORD_MARKUP).text()
    assert warning.startswith(":warning: **Backup health warning**") and f"- {check}: " in warning
