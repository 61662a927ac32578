"""Servers enrolled whole: a `servers:` entry backs up every database on a server, picks up a database created
later at the next look, and says once when one went away, its backups kept. Real PostgreSQL, a real Dagster
instance, the enrolment sensor evaluated in process, backups by the `backup-db` command (another process,
which reads the recorded databases)."""

from __future__ import annotations

import json
import os
import secrets

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from backup_pipeline.defs.names import ENROLMENT_SENSOR
from tests.conftest import PROJECT_ROOT
from tests.support.cli import OUR_VARS, call_cli
from tests.support.discord_stub import discord_stub  # noqa: F401 (fixture)
from tests.support.pipeline import load_defs


@pytest.fixture
def server_databases(pg_admin_url):
    """Creates and drops databases named by the test on the shared server (only its own)."""
    created = []

    def create(name: str) -> str:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            created.append(name)
        with psycopg.connect(pg_admin_url.rsplit("/", 1)[0] + f"/{name}", autocommit=True) as conn:
            conn.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10) g")
        return name

    def drop(name: str) -> None:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    create.drop = drop
    yield create
    for name in created:
        drop(name)


def _tick(instance: dg.DagsterInstance) -> dg.Definitions:
    """One evaluation of the enrolment sensor, on the definitions as loaded now; returns those definitions."""
    defs = load_defs()
    sensor = defs.get_sensor_def(ENROLMENT_SENSOR)
    sensor.evaluate_tick(dg.build_sensor_context(instance=instance, sensor_name=ENROLMENT_SENSOR))
    return defs


def _keys(defs: dg.Definitions) -> set[str]:
    return {key.path[0] for key in defs.resolve_all_asset_keys() if len(key.path) > 1}


def test_a_server_entry_picks_up_a_new_database_and_says_once_when_one_goes(
    clean_env, pg_admin_url, server_databases, dagster_home, tmp_path, discord_stub
):
    tag = f"enr{secrets.token_hex(3)}"
    app = server_databases(f"{tag}_app")
    server_databases(f"{tag}_scratch")
    config_file = tmp_path / "backups.yaml"
    config_file.write_text(
        f"servers:\n  - key: main\n    url_env: MAIN_SERVER_URL\n    include: ['{tag}_*']\n"
        f"    exclude: ['{tag}_scratch']\n    overrides:\n      {app}: {{keep_last: 14}}\n"
    )
    values = {
        "MAIN_SERVER_URL": pg_admin_url,
        "BACKUP_CONFIG_FILE": str(config_file),
        "BACKUP_LOCAL_DIR": str(tmp_path / "backups"),
        "DAGSTER_HOME": str(dagster_home),
        "DISCORD_WEBHOOK_URL": discord_stub.webhook_url,
        "DAGSTER_WEBSERVER_URL": "http://127.0.0.1:9",  # no webserver: nothing to reload here
    }
    for name, value in values.items():
        clean_env.setenv(name, value)
    env = {k: v for k, v in os.environ.items() if not OUR_VARS.match(k)} | values

    def backup_db(*argv: str) -> dict:
        done = call_cli([*argv, "--json"], env, PROJECT_ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    with dg.DagsterInstance.get() as instance:
        defs = _tick(instance)  # the first look records what the server holds
        assert f"main_{app}" in _keys(defs) and f"main_{tag}_scratch" not in _keys(defs)

        new = server_databases(f"{tag}_new")  # created after the first look
        assert f"main_{new}" not in _keys(_tick(instance))
        assert f"main_{new}" in _keys(load_defs())  # the next load, as the reload asked for, has it
        stored = backup_db("--database", f"main_{new}", "backup")
        assert stored["name"].startswith(f"main_{new}_manual_") and stored["verified"] is True

        server_databases.drop(new)
        _tick(instance)
        _tick(instance)
        after = load_defs()
    notices = [m for m in discord_stub.messages if "no longer has" in m]
    assert len(notices) == 1 and new in notices[0] and "stay" in notices[0]
    assert f"main_{new}" not in _keys(after) and f"main_{app}" in _keys(after)
    # Its backup is kept.
    assert (tmp_path / "backups" / "db-backups" / f"{stored['name']}.dump.json").exists()
    assert load_settings_keep_last(f"main_{app}") == 14


def load_settings_keep_last(key: str) -> int:
    from backup_pipeline.core.enrolled import load_all_settings as load_settings

    return load_settings().database(key).keep_last
