"""One alert per incident: the backups of several databases on a server that is down are told as one message
listing them, then one recovery message once they all have a backup again. Real PostgreSQL (and a port where
no server listens, as a stopped one), a real Dagster instance, the backup runs and the incident sensor in
process, the Discord stand-in."""

from __future__ import annotations

import socket
import time

import dagster as dg

from backup_pipeline.core.names import BackupId
from backup_pipeline.core.notify.discord import DISCORD_MARKUP
from backup_pipeline.core.notify.text import render
from backup_pipeline.defs.alerts.batches import batch_events
from backup_pipeline.defs.alerts.incidents import groups
from backup_pipeline.defs.batch_config import batch_run_config
from backup_pipeline.defs.names import BACKUP_ID_TAG, BACKUP_TYPE_TAG, BATCH_JOB, INCIDENT_SENSOR, DefinitionNames
from tests.support.discord_stub import discord_stub  # noqa: F401 (fixture)
from tests.support.pipeline import load_defs


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


def _backup(instance: dg.DagsterInstance, key: str) -> dg.ExecuteInProcessResult:
    from backup_pipeline.core.enrolled import load_all_settings as load_settings

    defs = load_defs()
    names = DefinitionNames(load_settings().database(key))
    backup_id = str(BackupId.new("manual"))
    instance.add_dynamic_partitions(names.partitions, [backup_id])
    return defs.resolve_job_def(names.backup_job).execute_in_process(
        instance=instance,
        partition_key=backup_id,
        asset_selection=[dg.AssetKey(path) for path in names.backup_selection],
        tags={"backup/database": key, "backup/kind": "backup"},
        raise_on_error=False,
    )


def _tick(instance: dg.DagsterInstance, cursor: str | None) -> str | None:
    sensor = load_defs().get_sensor_def(INCIDENT_SENSOR)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, sensor_name=INCIDENT_SENSOR)
    sensor.evaluate_tick(context)
    return context.cursor


def test_a_down_server_is_one_message_listing_its_databases_then_one_recovery(
    clean_env, make_database, dagster_home, tmp_path, discord_stub
):
    urls = [make_database(prefix="bpinc") for _ in range(3)]
    down = _closed_port()
    config = "databases:\n" + "".join(
        f"  - key: inc{i}\n    url_env: INC{i}_URL\n    name_prefix: inc{i}\n" for i in range(3)
    )
    (tmp_path / "backups.yaml").write_text(config)
    for name, value in {
        "BACKUP_CONFIG_FILE": str(tmp_path / "backups.yaml"),
        "BACKUP_LOCAL_DIR": str(tmp_path / "backups"),
        "DAGSTER_HOME": str(dagster_home),
        "DISCORD_WEBHOOK_URL": discord_stub.webhook_url,
        "BACKUP_ALERT_GROUP_SECONDS": "2",
        "BACKUP_VERIFY_ON": "source",
        **{f"INC{i}_URL": url.replace(url.split("/")[2], f"127.0.0.1:{down}") for i, url in enumerate(urls)},
    }.items():
        clean_env.setenv(name, value)

    with dg.DagsterInstance.get() as instance:
        cursor = _tick(instance, None)
        failed = [_backup(instance, f"inc{i}") for i in range(3)]
        assert not any(result.success for result in failed)
        # The failure sensor leaves these to the incident sensor.
        assert all(groups(load_defs_settings(), instance, instance.get_run_by_id(r.run_id)) for r in failed)
        time.sleep(2.5)  # the window (covered step by step in tests/unit/test_incidents.py) has closed
        cursor = _tick(instance, cursor)
        [grouped] = discord_stub.messages
        assert "3 backups failed: server unreachable" in grouped and f"127.0.0.1:{down}" in grouped
        for url in urls:
            assert f"`{url.rsplit('/', 1)[1]}`" in grouped

        for i, url in enumerate(urls):  # the server is back
            clean_env.setenv(f"INC{i}_URL", url)
        assert all(_backup(instance, f"inc{i}").success for i in range(3))
        cursor = _tick(instance, cursor)
        cursor = _tick(instance, cursor)
    recoveries = [m for m in discord_stub.messages if "Recovered" in m]
    assert len(recoveries) == 1 and all(url.rsplit("/", 1)[1] in recoveries[0] for url in urls)
    assert len([m for m in discord_stub.messages if "failed" in m]) == 1


def load_defs_settings():
    from backup_pipeline.core.enrolled import load_all_settings as load_settings

    return load_settings()


def _batch(instance: dg.DagsterInstance, keys: list[str], backup_id: str) -> dg.ExecuteInProcessResult:
    for key in keys:
        instance.add_dynamic_partitions(f"{key}_backups", [backup_id])
    return (
        load_defs()
        .resolve_job_def(BATCH_JOB)
        .execute_in_process(
            instance=instance,
            run_config=batch_run_config(keys),
            tags={BACKUP_ID_TAG: backup_id, BACKUP_TYPE_TAG: "daily"},
            raise_on_error=False,
        )
    )


def test_a_night_batch_on_a_down_server_is_one_message_listing_its_databases_then_one_recovery(
    clean_env, make_database, dagster_home, tmp_path, discord_stub
):
    """The night's databases are backed up in batch runs, several per run: their failures for a down server
    are grouped as those of runs of their own are, and a database of the batch that failed for its own reason
    keeps its own message."""
    urls = [make_database(prefix="bpincb") for _ in range(3)]
    down = _closed_port()
    config = "databases:\n" + "".join(
        f"  - key: nb{i}\n    url_env: NB{i}_URL\n    name_prefix: nb{i}\n" for i in range(4)
    )
    (tmp_path / "backups.yaml").write_text(config)
    missing = urls[0].rsplit("/", 1)[0] + f"/bp_missing_{tmp_path.name[-8:].lower()}"
    for name, value in {
        "BACKUP_CONFIG_FILE": str(tmp_path / "backups.yaml"),
        "BACKUP_LOCAL_DIR": str(tmp_path / "backups"),
        "DAGSTER_HOME": str(dagster_home),
        "DISCORD_WEBHOOK_URL": discord_stub.webhook_url,
        "BACKUP_ALERT_GROUP_SECONDS": "2",
        "BACKUP_VERIFY_ON": "source",
        "NB3_URL": missing,  # a database its (reachable) server does not have: not the down server's incident
        **{f"NB{i}_URL": url.replace(url.split("/")[2], f"127.0.0.1:{down}") for i, url in enumerate(urls)},
    }.items():
        clean_env.setenv(name, value)
    keys = [f"nb{i}" for i in range(4)]

    with dg.DagsterInstance.get() as instance:
        cursor = _tick(instance, None)
        failed = _batch(instance, keys, "daily_20261206_060000")
        assert not failed.success
        run = instance.get_run_by_id(failed.run_id)
        settings = load_defs_settings()
        # The failure sensor tells only the failure that is not the down server's.
        [own] = [render(e, DISCORD_MARKUP).text() for e in batch_events(instance, run, settings, grouped=True)]
        assert "bp_missing_" in own and "does not exist" in own
        time.sleep(2.5)
        cursor = _tick(instance, cursor)
        [grouped] = discord_stub.messages
        assert "3 backups failed: server unreachable" in grouped and f"127.0.0.1:{down}" in grouped
        for url in urls:
            assert f"`{url.rsplit('/', 1)[1]}`" in grouped
        assert "bp_missing_" not in grouped

        for i, url in enumerate(urls):  # the server is back
            clean_env.setenv(f"NB{i}_URL", url)
        assert _batch(instance, keys[:3], "daily_20261207_060000").success
        cursor = _tick(instance, cursor)
        cursor = _tick(instance, cursor)
    recoveries = [m for m in discord_stub.messages if "Recovered" in m]
    assert len(recoveries) == 1 and all(url.rsplit("/", 1)[1] in recoveries[0] for url in urls)
    assert len([m for m in discord_stub.messages if "failed" in m]) == 1
