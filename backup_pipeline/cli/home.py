"""The Dagster instance the command line records its runs in: $DAGSTER_HOME, by default ./.dagster_home.

A missing home is created, with the project's dagster.yaml (queued runs, one backup per database at a
time) copied in when it has none, so the first `backup-db backup` on a fresh checkout just works.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

DEFAULT_HOME = ".dagster_home"
INSTANCE_CONFIG = "dagster.yaml"


def project_instance_config() -> Path | None:
    """The project's dagster.yaml: in the current folder, else beside the package (a source checkout)."""
    for candidate in (Path.cwd() / INSTANCE_CONFIG, Path(__file__).resolve().parents[2] / INSTANCE_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def prepare_dagster_home(note: Callable[[str], None]) -> Path:
    """Resolves (and if needed creates) DAGSTER_HOME, and exports it for Dagster and the run's process."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).expanduser().resolve()
    if not home.is_dir():
        home.mkdir(parents=True)
        note(f"created the Dagster instance folder {home} (set DAGSTER_HOME to use another)")
    config = home / INSTANCE_CONFIG
    if not config.exists():
        source = project_instance_config()
        if source is not None:
            shutil.copyfile(source, config)
            note(f"copied {source} into {home}")
    os.environ["DAGSTER_HOME"] = str(home)
    return home
