"""Where backups and runs live when BACKUP_LOCAL_DIR and DAGSTER_HOME are not set, whatever folder a command
runs in.

Relative defaults (`./backups`, `./.dagster_home`) made a cron job or a shell in another folder start a new,
empty folder and instance and then report that no backup exists. Instead, for each variable left unset:

1. a folder of that name in the current folder that already holds our backups (`./backups` with a manifest in
   it) or an instance (`./.dagster_home`), as earlier versions made them: kept, so nobody's backups are
   orphaned by an upgrade, and every command says it chose it and how to make the choice explicit;
2. else the project folder, the nearest folder at or above the current one with the project's workspace.yaml
   or pyproject.toml (`backups/` and `.dagster_home/` in it, where `dagster dev` in that folder puts them too);
3. else one folder per user: `$XDG_DATA_HOME/backup_pipeline` (`~/.local/share/backup_pipeline`), beside the
   client tools `backup-db install-client` puts there.

The choice is exported into this process's environment, so the runs the command starts (and their processes)
use the same folders. Every command says where it looks in its first line (on stderr).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

LOCAL_DIR_ENV = "BACKUP_LOCAL_DIR"
DAGSTER_HOME_ENV = "DAGSTER_HOME"
# Names inside the project folder (as README's quick start and `dagster dev` have always used them).
PROJECT_BACKUPS = "backups"
PROJECT_HOME = ".dagster_home"
# Names inside the per-user folder.
USER_BACKUPS = "backups"
USER_HOME = "dagster_home"
USER_FOLDER = "backup_pipeline"
_PROJECT_NAME = re.compile(r"""^name\s*=\s*["']backup[_-]pipeline["']""", re.MULTILINE)


@dataclass(frozen=True)
class Chosen:
    """One default: the variable it stands for, the folder chosen, where that folder comes from, and whether it
    is a folder of an earlier version's in the current folder."""

    variable: str
    path: Path
    source: str
    legacy: bool = False

    @property
    def reason(self) -> str:
        if self.legacy:
            return (
                f"{self.variable} unset: ./{self.path.name} in the current folder already holds them; set "
                f"{self.variable}={self.path} to keep using it from anywhere, or move it to {self.source}"
            )
        return f"{self.variable} unset: {self.source}"


def project_folder(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding this project's workspace.yaml or pyproject.toml."""
    for folder in (start, *start.parents):
        workspace = folder / "workspace.yaml"
        pyproject = folder / "pyproject.toml"
        if workspace.is_file() and "backup_pipeline" in _read(workspace):
            return folder
        if pyproject.is_file() and _PROJECT_NAME.search(_read(pyproject)):
            return folder
    return None


def user_folder(environ=None) -> Path:
    environ = os.environ if environ is None else environ
    data_home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser() / USER_FOLDER


def choose_defaults(environ=None, cwd: Path | None = None) -> list[Chosen]:
    """The folders standing in for BACKUP_LOCAL_DIR and DAGSTER_HOME, for those of them that are unset."""
    environ = os.environ if environ is None else environ
    cwd = (cwd or Path.cwd()).resolve()
    project = project_folder(cwd)
    chosen = []
    for variable, legacy, in_project, in_user, holds_ours in (
        (LOCAL_DIR_ENV, PROJECT_BACKUPS, PROJECT_BACKUPS, USER_BACKUPS, _holds_backups),
        (DAGSTER_HOME_ENV, PROJECT_HOME, PROJECT_HOME, USER_HOME, _holds_instance),
    ):
        if environ.get(variable):
            continue
        here = cwd / legacy
        if project is not None:
            default, source = project / in_project, f"the project folder {project}"
        else:
            default, source = user_folder(environ) / in_user, f"the per-user folder {user_folder(environ)}"
        if here != default and holds_ours(here):
            chosen.append(Chosen(variable, here, f"{default} ({source})", legacy=True))
        else:
            chosen.append(Chosen(variable, default, source))
    return chosen


def apply_defaults(environ=None, cwd: Path | None = None) -> list[Chosen]:
    """Chooses the defaults and exports them, so this command and the runs it starts agree."""
    environ = os.environ if environ is None else environ
    chosen = choose_defaults(environ, cwd)
    for choice in chosen:
        environ[choice.variable] = str(choice.path)
    return chosen


def where_line(verb: str, storage_text: str, uses_local_dir: bool, chosen: list[Chosen]) -> str:
    """The first line of every command: where its backups are, where its runs are recorded, and why there."""
    by_variable = {c.variable: c for c in chosen}
    local = by_variable.get(LOCAL_DIR_ENV) if uses_local_dir else None
    home = by_variable.get(DAGSTER_HOME_ENV)
    home_path = home.path if home else Path(os.environ.get(DAGSTER_HOME_ENV, "")).expanduser().resolve()
    backups = f"backups in {storage_text}"
    runs = f"runs in the Dagster instance {home_path}"
    if local and home and not (local.legacy or home.legacy) and local.source == home.source:
        return f"backup-db {verb}: {backups}, {runs} ({LOCAL_DIR_ENV} and {DAGSTER_HOME_ENV} unset: {local.source})"
    if local:
        backups += f" ({local.reason})"
    elif uses_local_dir:
        backups += f" ({LOCAL_DIR_ENV})"
    runs += f" ({home.reason})" if home else f" ({DAGSTER_HOME_ENV})"
    return f"backup-db {verb}: {backups}; {runs}"


def _holds_backups(folder: Path) -> bool:
    """Whether `folder` holds a backup of ours (a manifest) at any depth: a `backups` folder of something else
    is not taken for ours."""
    if not folder.is_dir():
        return False
    return next(iter(folder.rglob("*.dump.json")), None) is not None


def _holds_instance(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in ("dagster.yaml", "storage", "history"))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[:20000]
    except OSError:
        return ""
