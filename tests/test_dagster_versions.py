"""`backup-db` works on the oldest and on the newest Dagster releases that pyproject.toml admits.

For each end of the range a virtual environment holds exactly those releases of the Dagster packages we depend
on (dagster, dagster-webserver, dagster-graphql at their lower bounds, dagster-aws and dagster-postgres at
theirs; at the other end, the newest that pip resolves under the upper bounds), everything else as pip
resolves it, and the project itself, editable, so it is always the code under test. A real `backup-db backup`
(pg_dump, store in a local folder, restore into a scratch database to verify) and `backup-db list` then run
against the test PostgreSQL server.

The environments are made with uv (a test extra: it resolves and installs from its cache in seconds where pip
takes a minute of CPU) and kept under .compat-venvs/ (git-ignored), one per set of versions and dependency list;
the test skips, saying so, only when PyPI cannot be reached to resolve or build one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.cli import OUR_VARS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENVS = PROJECT_ROOT / ".compat-venvs"
DAGSTER_PACKAGES = ("dagster", "dagster-webserver", "dagster-graphql", "dagster-aws", "dagster-postgres")
INDEX_URL = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def dependencies() -> list[Requirement]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def dagster_requirements() -> dict[str, Requirement]:
    found = {r.name: r for r in dependencies() if r.name in DAGSTER_PACKAGES}
    assert set(found) == set(DAGSTER_PACKAGES), f"pyproject.toml lacks {set(DAGSTER_PACKAGES) - set(found)}"
    for requirement in found.values():
        operators = {spec.operator for spec in requirement.specifier}
        assert {">=", "<"} <= operators, f"{requirement} needs a lower and an upper bound"
    return found


def oldest_pins() -> dict[str, str]:
    """Each Dagster package at its lower bound: what pip would pick with a lowest-versions resolution."""
    return {
        name: next(spec.version for spec in requirement.specifier if spec.operator == ">=")
        for name, requirement in dagster_requirements().items()
    }


def uv(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`uv ARGS` from the test extras, on PIP_INDEX_URL's index when that is set."""
    index = ["--index-url", INDEX_URL] if "PIP_INDEX_URL" in os.environ else []
    return subprocess.run(
        [sys.executable, "-m", "uv", *args, *index], input=stdin, capture_output=True, text=True, timeout=timeout
    )


def newest_pins() -> dict[str, str]:
    """The newest versions that resolve for the Dagster packages under the bounds (asks the index)."""
    wanted = "\n".join(str(requirement) for requirement in dagster_requirements().values())
    report = uv("pip", "compile", "--quiet", "--no-header", "--no-annotate", "-", stdin=wanted)
    assert report.returncode == 0, report.stderr
    resolved = dict(line.split("==", 1) for line in report.stdout.split() if "==" in line)
    return {name: resolved[name] for name in DAGSTER_PACKAGES}


def index_reachable() -> bool:
    try:
        urllib.request.urlopen(f"{INDEX_URL}/dagster/", timeout=15)
        return True
    except OSError:
        return False


def compat_venv(label: str, pins: dict[str, str]) -> Path:
    """A virtual environment with `pins` and the project (editable); built once per pins and dependency list."""
    wanted = [f"{name}=={version}" for name, version in sorted(pins.items())]
    key = json.dumps([sys.version_info[:2], wanted, [str(r) for r in dependencies()]])
    venv = VENVS / f"{label}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    ready = venv / "ready"
    if ready.exists():
        return venv
    if not index_reachable():
        pytest.skip(f"PyPI ({INDEX_URL}) cannot be reached to build the {label} Dagster environment")
    shutil.rmtree(venv, ignore_errors=True)
    made = uv("venv", "--quiet", "--python", sys.executable, str(venv))
    assert made.returncode == 0, made.stderr
    python = str(venv / "bin" / "python")
    # Not compiled here (uv leaves that out): the test's processes compile what they import, once (venv_env).
    install = uv("pip", "install", "--quiet", "--python", python, *wanted, "-e", str(PROJECT_ROOT), timeout=900)
    assert install.returncode == 0, f"installing {wanted} failed:\n{install.stderr[-3000:]}"
    ready.write_text("\n".join(wanted) + "\n")
    return venv


@pytest.mark.parametrize("label", ["oldest", "newest"])
def test_backup_and_list_work_at_each_end_of_the_dagster_range(label, seeded_db, tmp_path):
    if label == "newest" and not index_reachable():
        pytest.skip(f"PyPI ({INDEX_URL}) cannot be reached to learn the newest Dagster releases")
    pins = oldest_pins() if label == "oldest" else newest_pins()
    venv = compat_venv(label, pins)
    # Byte code written, whatever the shell says (PYTHONDONTWRITEBYTECODE): otherwise each process of this test
    # compiles Dagster again, 4 s of CPU each.
    venv_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    installed = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import dagster, dagster_aws; print(dagster.__version__, dagster_aws.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=venv_env,
    ).stdout.split()
    assert [Version(v) for v in installed] == [Version(pins["dagster"]), Version(pins["dagster-aws"])]

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in venv_env.items() if not OUR_VARS.match(k) and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(
        {
            "DATABASE_URL": seeded_db,
            "BACKUP_LOCAL_DIR": str(tmp_path / "backups"),
            "DAGSTER_HOME": str(home),
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    cli = str(venv / "bin" / "backup-db")
    backup = subprocess.run(
        [cli, "backup", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert backup.returncode == 0, f"dagster {pins['dagster']}: {backup.stderr[-3000:]}"
    stored = json.loads(backup.stdout)
    assert stored["verified"] is True and stored["rows"] > 0
    # The run is in the instance, as that Dagster release records it (what its UI would show).
    probe = f"import dagster as dg; r = dg.DagsterInstance.get().get_run_by_id({stored['run_id']!r}); print(r.job_name, r.status.value)"
    recorded = subprocess.run([str(venv / "bin" / "python"), "-c", probe], env=env, capture_output=True, text=True)
    assert recorded.stdout.split() == ["backup_job", "SUCCESS"], recorded.stderr[-2000:]

    listed = subprocess.run([cli, "list", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert [(b["name"], b["verified"]) for b in json.loads(listed.stdout)] == [(stored["name"], True)]
