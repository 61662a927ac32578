"""The Dagster instance the command line records its runs in: $DAGSTER_HOME, by default the project's or the
user's (locations.py), never a folder that depends on where the command runs.

A missing home is created, with the project's dagster.yaml (queued runs, one backup per database at a
time) copied in when it has none, so the first `backup-db backup` on a fresh checkout just works.

Several commands may start at once on a new home (a script backing up before each of its migrations, a CI
matrix). Dagster creates the instance's SQLite storage on first use and stamps its schema version; two
processes doing that together leave two version stamps ("more than one head"), and every later command fails.
So the first creation happens under an exclusive lock on a file in the home (filelock), once per Dagster version.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from backup_pipeline.cli.locations import DAGSTER_HOME_ENV, choose_defaults

INSTANCE_CONFIG = "dagster.yaml"
INIT_LOCK = ".backup-db-init.lock"
# Written once the instance's storage exists, holding the Dagster version that created or last opened it.
READY_MARKER = ".backup-db-instance-ready"


def project_instance_config() -> Path | None:
    """The project's dagster.yaml: in the current folder, else beside the package (a source checkout)."""
    for candidate in (Path.cwd() / INSTANCE_CONFIG, Path(__file__).resolve().parents[2] / INSTANCE_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def prepare_dagster_home(note: Callable[[str], None]) -> Path:
    """Resolves (and if needed creates) DAGSTER_HOME, exports it for Dagster and the run's process, and makes
    sure its instance storage exists; safe when several commands do it at once."""
    home = dagster_home_path()
    try:
        home.mkdir(parents=True)
        note(f"created the Dagster instance folder {home} (set DAGSTER_HOME to use another)")
    except FileExistsError:
        if not home.is_dir():
            raise
    os.environ["DAGSTER_HOME"] = str(home)
    ensure_instance_ready(home, note)
    return home


def dagster_home_path() -> Path:
    """$DAGSTER_HOME, else the default locations.py chooses (the same for every command, wherever it runs)."""
    configured = os.environ.get(DAGSTER_HOME_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return next(c.path for c in choose_defaults() if c.variable == DAGSTER_HOME_ENV)


def existing_dagster_home() -> Path | None:
    """The instance folder when it already exists (nothing is created): a read-only verb (`status`, `list`)
    asks it about runs only when there is one."""
    home = dagster_home_path()
    if not home.is_dir():
        return None
    os.environ[DAGSTER_HOME_ENV] = str(home)
    ensure_instance_ready(home)
    return home


def ensure_instance_ready(home: Path, note: Callable[[str], None] = lambda _: None) -> None:
    """Copies in the project's dagster.yaml when the home has none and creates the instance's storage, one
    command at a time; a no-op once done (for this Dagster version)."""
    import dagster as dg

    marker = home / READY_MARKER
    if _read(marker) == dg.__version__:
        return
    # flock underneath: released by the kernel when its holder dies, however it dies.
    with FileLock(home / INIT_LOCK, mode=0o600):
        if _read(marker) == dg.__version__:
            return  # another command did it while we waited
        config = home / INSTANCE_CONFIG
        if not config.exists():
            source = project_instance_config()
            if source is not None:
                shutil.copyfile(source, config)
                note(f"copied {source} into {home}")
        with dg.DagsterInstance.get() as instance:
            instance.get_run_records(limit=1)  # the storage exists and answers
        marker.write_text(dg.__version__)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
