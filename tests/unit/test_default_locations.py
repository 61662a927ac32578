"""Where backups and runs go when BACKUP_LOCAL_DIR and DAGSTER_HOME are unset: the same place whatever the
current folder, and never away from the backups an earlier version left in the current folder."""

from __future__ import annotations

from pathlib import Path

from backup_pipeline.cli.locations import DAGSTER_HOME_ENV, LOCAL_DIR_ENV, choose_defaults, where_line

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def chosen(environ: dict, cwd: Path) -> dict[str, Path]:
    return {c.variable: c.path for c in choose_defaults(environ, cwd)}


def test_outside_a_project_every_folder_gets_the_per_user_folder(tmp_path):
    environ = {"XDG_DATA_HOME": str(tmp_path / "data")}
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    expected = {
        LOCAL_DIR_ENV: tmp_path / "data" / "backup_pipeline" / "backups",
        DAGSTER_HOME_ENV: tmp_path / "data" / "backup_pipeline" / "dagster_home",
    }
    assert chosen(environ, tmp_path / "a" / "deep") == expected
    assert chosen(environ, tmp_path / "b") == expected


def test_inside_the_project_its_own_folders_wherever_below_it(tmp_path):
    project = tmp_path / "app"
    (project / "migrations" / "versions").mkdir(parents=True)
    (project / "workspace.yaml").write_text((PROJECT_ROOT / "workspace.yaml").read_text())
    expected = {LOCAL_DIR_ENV: project / "backups", DAGSTER_HOME_ENV: project / ".dagster_home"}
    assert chosen({}, project) == expected
    assert chosen({}, project / "migrations" / "versions") == expected
    # Another project's workspace.yaml is not ours.
    other = tmp_path / "other"
    other.mkdir()
    (other / "workspace.yaml").write_text("load_from:\n  - python_module: something_else\n")
    assert chosen({"XDG_DATA_HOME": str(tmp_path / "data")}, other)[LOCAL_DIR_ENV] == (
        tmp_path / "data" / "backup_pipeline" / "backups"
    )


def test_a_set_variable_is_never_replaced(tmp_path):
    assert chosen({LOCAL_DIR_ENV: "/srv/backups", DAGSTER_HOME_ENV: "/srv/dagster"}, tmp_path) == {}
    assert set(chosen({LOCAL_DIR_ENV: "/srv/backups"}, tmp_path)) == {DAGSTER_HOME_ENV}


def test_backups_an_earlier_version_left_in_the_current_folder_stay_in_use_and_it_is_said(tmp_path):
    environ = {"XDG_DATA_HOME": str(tmp_path / "data")}
    old = tmp_path / "cron"
    (old / "backups" / "db-backups").mkdir(parents=True)
    (old / "backups" / "db-backups" / "app_daily_20260101_060000.dump.json").write_text("{}")
    (old / ".dagster_home").mkdir()
    (old / ".dagster_home" / "dagster.yaml").write_text("")
    choices = {c.variable: c for c in choose_defaults(environ, old)}
    assert choices[LOCAL_DIR_ENV].path == old / "backups" and choices[LOCAL_DIR_ENV].legacy
    assert choices[DAGSTER_HOME_ENV].path == old / ".dagster_home"
    line = where_line("list", f"local folder {old / 'backups'}", True, list(choices.values()))
    assert f"set BACKUP_LOCAL_DIR={old / 'backups'} to keep using it" in line
    assert f"set DAGSTER_HOME={old / '.dagster_home'}" in line

    # A `backups` folder holding none of our backups is somebody else's: not taken.
    unrelated = tmp_path / "photos"
    (unrelated / "backups").mkdir(parents=True)
    (unrelated / "backups" / "2019.jpg").write_text("")
    assert chosen(environ, unrelated)[LOCAL_DIR_ENV] == tmp_path / "data" / "backup_pipeline" / "backups"


def test_the_first_line_names_the_folders_and_why(tmp_path):
    environ = {"XDG_DATA_HOME": str(tmp_path / "data")}
    line = where_line("status", "local folder X", True, choose_defaults(environ, tmp_path))
    assert line == (
        f"backup-db status: backups in local folder X, runs in the Dagster instance "
        f"{tmp_path / 'data' / 'backup_pipeline' / 'dagster_home'} (BACKUP_LOCAL_DIR and DAGSTER_HOME unset: the "
        f"per-user folder {tmp_path / 'data' / 'backup_pipeline'})"
    )
