"""`backup-db --database KEY` with several databases: each verb's run touches that database's assets only.

With several databases there are no per-database jobs; the command's runs select the database's own assets
and carry its tag, so the run queue's per-database limit and the alerts know which database it was.
"""

from __future__ import annotations

import json
import os

import dagster as dg

from tests.conftest import PROJECT_ROOT
from tests.support.cli import OUR_VARS, call_cli
from tests.support.seed import SEED_COUNTS

DATABASES_FILE = """\
databases:
  - key: alpha
    url_env: ALPHA_DATABASE_URL
    name_prefix: alpha
  - key: beta
    url_env: BETA_DATABASE_URL
    name_prefix: beta
"""


def test_backup_verify_and_prune_of_one_database_among_several(seeded_db, dagster_home, tmp_path, clean_env):
    config_file = tmp_path / "backups.yaml"
    config_file.write_text(DATABASES_FILE)
    env = {k: v for k, v in os.environ.items() if not OUR_VARS.match(k)}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        BACKUP_CONFIG_FILE=str(config_file),
        ALPHA_DATABASE_URL=seeded_db,
        BETA_DATABASE_URL=seeded_db,
        BACKUP_LOCAL_DIR=str(tmp_path / "backups"),
    )

    def backup_db(*argv: str) -> dict:
        done = call_cli(["--database", "beta", *argv, "--json"], env, PROJECT_ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    stored = backup_db("backup")
    assert (
        stored["name"].startswith("beta_manual_")
        and stored["verified"] is True
        and stored["tables"] == len(SEED_COUNTS)
    )
    assert sorted(p.name for p in (tmp_path / "backups" / "db-backups").iterdir() if p.name.startswith("alpha")) == []
    verified = backup_db("verify", stored["name"])
    assert verified["rows"] == sum(SEED_COUNTS.values())
    pruned = backup_db("prune", "--dry-run")
    assert [d["name"] for d in pruned["decisions"]] == [stored["name"]]

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = {r.run_id: r for r in instance.get_runs()}
    for run_id, kind, assets in (
        (stored["run_id"], "backup", {"database_dump", "offsite_backup", "restore_verification"}),
        (verified["run_id"], "verify", {"restore_verification"}),
        (pruned["run_id"], "prune", {"backup_retention"}),
    ):
        run = runs[run_id]
        assert (run.tags["backup/database"], run.tags["backup/kind"]) == ("beta", kind)
        assert {tuple(key.path) for key in run.asset_selection} == {("beta", asset) for asset in assets}
