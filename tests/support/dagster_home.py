"""Temporary DAGSTER_HOME folders with the project's dagster.yaml and their SQLite storage already made.

Making an instance's storage (run, event log and schedule databases, each brought to Dagster's newest schema)
takes one to three seconds; copying a folder where that was done once takes milliseconds. Each test process
(each pytest-xdist worker) makes its own template the first time a test asks for a home, in a folder of its own
that is removed when the process ends, and every test gets a copy, so no two tests share a home.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGSTER_YAML = PROJECT_ROOT / "dagster.yaml"

_template: Path | None = None


def _make_template() -> Path:
    import dagster as dg

    folder = Path(tempfile.mkdtemp(prefix="bp-dagster-home-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    home = folder / "home"
    home.mkdir()
    shutil.copy(DAGSTER_YAML, home / DAGSTER_YAML.name)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        # Each storage makes its database on first use.
        instance.get_runs(limit=1)
        instance.get_dynamic_partitions("backups")
        instance.all_instigator_state()
    finally:
        instance.dispose()
    return home


def new_dagster_home(folder: Path) -> Path:
    """`folder` (made if missing) as a DAGSTER_HOME of its own: the project's dagster.yaml, storage
    made, no runs."""
    global _template
    if _template is None or not _template.exists():
        _template = _make_template()
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(_template, folder, dirs_exist_ok=True)
    return folder
