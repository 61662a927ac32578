"""Commands run from different folders with neither BACKUP_LOCAL_DIR nor DAGSTER_HOME set find the same backups
and runs, and say where they look; an unknown database key is told the keys there are.

The folder a command runs in is what is tested: each command runs through its entry point with that folder as
the current one and exactly the given environment (call_cli), its run executed to its end as well.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from backup_pipeline.cli.main import main
from tests.support.cli import OUR_VARS, call_cli


def test_commands_from_other_folders_find_the_same_backups_and_runs(seeded_db, tmp_path):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not OUR_VARS.match(k)}
    env.update(DATABASE_URL=seeded_db, XDG_DATA_HOME=str(data), BACKUP_VERIFY_ON="source")
    folders = {name: tmp_path / name for name in ("cron", "shell", "elsewhere")}
    for folder in folders.values():
        folder.mkdir()
    user_folder = data / "backup_pipeline"

    def run(folder: str, *argv: str) -> subprocess.CompletedProcess:
        return call_cli(list(argv), env, folders[folder])

    nothing = run("elsewhere", "list")
    assert nothing.returncode == 0, nothing.stderr
    assert nothing.stderr.splitlines()[0] == (
        f"backup-db list: backups in local folder {user_folder / 'backups'}, runs in the Dagster instance "
        f"{user_folder / 'dagster_home'} (BACKUP_LOCAL_DIR and DAGSTER_HOME unset: the per-user folder {user_folder})"
    )
    assert "BACKUP_LOCAL_DIR" in nothing.stdout and "DAGSTER_HOME" in nothing.stdout
    unknown = run("elsewhere", "status")
    assert unknown.returncode == 1
    assert "no Dagster instance at DAGSTER_HOME yet" in unknown.stdout
    assert not (user_folder / "dagster_home").exists()  # a question creates no instance

    taken = run("cron", "backup", "--json")
    assert taken.returncode == 0, taken.stderr[-3000:]
    backup = json.loads(taken.stdout)
    assert backup["uri"].startswith((user_folder / "backups").as_uri())
    assert not any(folders["cron"].iterdir())  # nothing left in the folder it ran in

    listed = run("shell", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [entry["name"] for entry in json.loads(listed.stdout)] == [backup["name"]]
    followed = run("shell", "follow", backup["run_id"], "--json")
    assert followed.returncode == 0, followed.stderr[-3000:]
    assert json.loads(followed.stdout)["name"] == backup["name"]
    status = run("elsewhere", "status", "--json")
    assert status.returncode == 0, status.stdout
    assert json.loads(status.stdout)["databases"][0]["newest_verified"]["name"] == backup["name"]

    # Backups an earlier version kept in ./backups of the folder a job runs in stay in use, and it is said.
    old = tmp_path / "old_cron"
    shutil.copytree(user_folder / "backups", old / "backups")
    legacy = call_cli(["list", "--json"], env, old)
    assert legacy.returncode == 0, legacy.stderr
    assert [entry["name"] for entry in json.loads(legacy.stdout)] == [backup["name"]]
    first = legacy.stderr.splitlines()[0]
    assert f"backups in local folder {old / 'backups'}" in first
    assert f"set BACKUP_LOCAL_DIR={old / 'backups'} to keep using it" in first


def test_inside_the_project_the_project_folder_wherever_below_it(tmp_path):
    project = tmp_path / "app"
    (project / "db" / "migrations").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "workspace.yaml", project / "workspace.yaml")
    env = {k: v for k, v in os.environ.items() if not OUR_VARS.match(k)}
    env.update(DATABASE_URL="postgresql://postgres@127.0.0.1:5432/app", XDG_DATA_HOME=str(tmp_path / "data"))
    listed = call_cli(["list"], env, project / "db" / "migrations")
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.splitlines()[0] == (
        f"backup-db list: backups in local folder {project / 'backups'}, runs in the Dagster instance "
        f"{project / '.dagster_home'} (BACKUP_LOCAL_DIR and DAGSTER_HOME unset: the project folder {project})"
    )


def test_an_unknown_database_key_is_told_the_keys_and_the_closest(tmp_path, clean_env, capsys):
    config_file = tmp_path / "databases.yaml"
    config_file.write_text(
        "databases:\n"
        "  - key: shop\n    url_env: SHOP_DATABASE_URL\n"
        "  - key: billing\n    url_env: BILLING_DATABASE_URL\n"
    )
    clean_env.setenv("BACKUP_CONFIG_FILE", str(config_file))
    clean_env.setenv("BACKUP_LOCAL_DIR", str(tmp_path / "backups"))
    clean_env.setenv("DAGSTER_HOME", str(tmp_path / "home"))

    for argv in (["backup", "--database", "shpo"], ["--database", "shpo", "list"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "no database 'shpo' is configured" in err
        assert "Did you mean --database shop?" in err and "Its databases: shop, billing" in err
    assert main(["list", "--database", "warehouse"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean" not in err and "Its databases: shop, billing" in err

    # Several databases and none named: the keys to choose from.
    assert main(["list"]) == 2
    assert "name one with --database (shop, billing)" in capsys.readouterr().err

    # One database (DATABASE_URL alone): --database has nothing to choose, and says so.
    clean_env.delenv("BACKUP_CONFIG_FILE")
    clean_env.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/app")
    assert main(["list", "--database", "shop"]) == 2
    err = capsys.readouterr().err
    assert "only one database is configured (DATABASE_URL's)" in err and "BACKUP_CONFIG_FILE" in err
    assert "choose one of default" not in err
