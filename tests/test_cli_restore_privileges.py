"""`backup-db restore` with owners and privileges: roles the target lacks and replication state are refused
before a run exists, a role map reaches the run, and what the restore did is printed."""

from __future__ import annotations

import json
import secrets

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from tests.support.cli import make_world
from tests.support.seed import SEED_SQL

TAG = secrets.token_hex(3)
APP = f"bp_cliapp_{TAG}"
SEED = (
    f"CREATE ROLE {APP} LOGIN;"
    + SEED_SQL
    + f"GRANT USAGE ON SCHEMA app TO {APP}; GRANT SELECT, INSERT ON app.users TO {APP};"
    + "CREATE PUBLICATION cli_pub FOR TABLE app.users;"
)


@pytest.fixture(scope="module")
def world(pg_admin_url, pg18_admin_url, moto_server, tmp_path_factory):
    if pg18_admin_url == pg_admin_url:
        pytest.skip("needs a second cluster: the machine's server is the PostgreSQL 18")
    world = make_world(pg_admin_url, moto_server, tmp_path_factory.mktemp("cli_privileges"), seed_sql=SEED)
    yield world
    world.drop_databases()
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(APP)))


def restore_runs(world) -> list:
    with world.instance() as instance:
        return instance.get_runs(dg.RunsFilter(job_name="restore_job"))


def test_cli_refuses_missing_roles_and_replication_before_a_run_then_applies_a_role_map(world, pg18_admin_url):
    backup, _ = world.call_json("backup", "--type", "manual", timeout=240)
    name = backup["name"]
    target, mapped = f"bpcli_moved_{TAG}", f"bp_clinew_{TAG}"
    try:
        refused = world.call(
            "restore", name, "--target-db", target, "--target-url", pg18_admin_url, "--confirm", "RESTORE"
        )
        assert refused.returncode != 0
        assert APP in refused.stderr and "--role-map" in refused.stderr and "Nothing was created" in refused.stderr
        # Over the source itself: its publication must be dealt with.
        refused = world.call("restore", name, "--target-db", world.db_name, "--replace", "--confirm", "RESTORE")
        assert refused.returncode != 0 and "publication cli_pub" in refused.stderr and "--replication" in refused.stderr
        assert restore_runs(world) == []

        with psycopg.connect(pg18_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(mapped)))
        result = world.call(
            "restore", name, "--target-db", target, "--target-url", pg18_admin_url, "--role-map", f"{APP}={mapped}",
            "--confirm", "RESTORE", "--json", timeout=240,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        outcome = json.loads(result.stdout)
        assert outcome["not_applied"] == [] and any(f"{APP} -> {mapped}" in n for n in outcome["notes"])
        config = restore_runs(world)[0].run_config["ops"]["restore_backup"]["config"]
        assert config["role_map"] == [f"{APP}={mapped}"]
        with psycopg.connect(pg18_admin_url.rsplit("/", 1)[0] + f"/{target}", autocommit=True) as conn:
            acl = conn.execute("SELECT relacl::text FROM pg_class WHERE oid = 'app.users'::regclass").fetchone()[0]
        assert f"{mapped}=ar/" in acl and APP not in acl
    finally:
        with psycopg.connect(pg18_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(mapped)))
