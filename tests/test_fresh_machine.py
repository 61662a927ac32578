"""A fresh machine with Python and no PostgreSQL: README's test command uses the bundled server, and README's
quick start (install without the test extras, `backup-db demo`) runs the whole flow, after which the `dg` and
`dagster` commands README uses work.

"No PostgreSQL" is made for the tests by BACKUP_TEST_NO_LOCAL_SERVER=1 (tests/support/postgres_server.py):
127.0.0.1:5432 and the installed server binaries are then ignored, as on a machine that has neither.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import CONFIG_VARS, PROJECT_ROOT
from tests.support.postgres_server import NO_LOCAL_SERVER_ENV
from tests.support.processes import start_process, stop_process

# A few real tests of the suite: a backup with nothing configured, restored by hand; gzip levels verified.
SUBSET = ["tests/test_dump_options.py", "-k", "nothing_configured or gzip_levels"]


def _fresh_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS and k != "TEST_DATABASE_URL"}
    return {**env, **extra}


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _servers_in(folder: Path, seen: dict[Path, tuple[int, str]]) -> None:
    """Records each throwaway server's (postmaster PID, PG_VERSION) found under `folder`."""
    for pid_file in folder.glob("backup-*-pg-*/data/postmaster.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().splitlines()[0])
            seen[pid_file.parents[1]] = (pid, (pid_file.parent / "PG_VERSION").read_text().strip())


def test_the_test_command_uses_the_bundled_server_when_none_is_reachable_and_stops_it():
    # The server runs as the postgres user when we are root: its folder's parents must be traversable.
    tmp = Path(tempfile.mkdtemp(prefix="bp-fresh-tests-"))
    tmp.chmod(0o755)
    seen: dict[Path, tuple[int, str]] = {}
    process = start_process(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "1", *SUBSET],
        cwd=PROJECT_ROOT,
        env=_fresh_env(**{NO_LOCAL_SERVER_ENV: "1", "TMPDIR": str(tmp)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            _servers_in(tmp, seen)
            time.sleep(0.1)
        stop_process(process)
        output = process.stdout.read()
        assert process.returncode == 0, output[-3000:]
        assert re.search(r"^3 passed", output, re.M), output[-3000:]
        # One server per test worker (pytest-xdist; one worker here: the subset is one module), each the bundled PostgreSQL 18 (it is the suite's 18 as
        # well) on its own loopback port.
        assert seen and {version for _, version in seen.values()} == {"18"}, seen
        for folder, (pid, _) in seen.items():
            assert folder.name.startswith("backup-test-pg-")
            # Stopped and removed at the end of the session.
            assert not _alive(pid) and not folder.exists(), folder
    finally:
        stop_process(process)
        for pid, _ in seen.values():
            if _alive(pid):  # only if the run above failed half-way: the postmaster we saw, nothing else
                os.kill(pid, signal.SIGINT)
        shutil.rmtree(tmp, ignore_errors=True)


def _quick_start_command() -> str:
    """The first command of README's quick start, exactly as written."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    return re.search(r"```bash\n(.*?)\n```", section, re.S).group(1).strip()


@pytest.mark.slow
# pip's install alone is about 40 s of CPU: beside three other workers the test takes 200 s on 2 cores, too
# near the suite's 300 s limit for hangs (its commands have limits of their own).
@pytest.mark.timeout(600)
def test_the_quick_start_on_a_fresh_copy_runs_the_demo_and_the_dagster_commands(tmp_path):
    """README's quick start in a copy of the project with a new virtualenv: installs without the test extras,
    runs the demo with no DATABASE_URL, and leaves `dg check defs`, `dg list defs`, `dagster job list` working."""
    command = _quick_start_command()
    assert command.startswith("python3 -m venv .venv") and "backup-db demo" in command
    project = tmp_path / "project"
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if (PROJECT_ROOT / name).is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, project / name)
    server_tmp = Path(tempfile.mkdtemp(prefix="bp-fresh-demo-"))
    server_tmp.chmod(0o755)
    # No settings of ours, no virtualenv of the suite on PATH: a new user's shell.
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(sys.executable).parent != Path(p))
    env = {**_fresh_env(PATH=path, TMPDIR=str(server_tmp)), "HOME": str(tmp_path)}
    env.pop("VIRTUAL_ENV", None)
    env.pop("DAGSTER_HOME", None)
    try:
        demo = subprocess.run(command, shell=True, cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "Done: backed up, verified and restored" in demo.stdout, demo.stdout[-3000:]
        assert list(server_tmp.glob("backup-demo-pg-*")) == []  # the demo server is stopped and removed
        venv = project / ".venv" / "bin"
        no_pytest = subprocess.run([venv / "python", "-c", "import pytest"], capture_output=True, env=env)
        assert no_pytest.returncode != 0, "installing the product must not install the test extras"

        def run(*argv: str) -> str:
            result = subprocess.run(
                [venv / argv[0], *argv[1:]], cwd=project, env=env, capture_output=True, text=True, timeout=300
            )
            assert result.returncode == 0, " ".join(argv) + "\n" + result.stdout[-3000:] + result.stderr[-3000:]
            return result.stdout + result.stderr

        assert "All definitions loaded successfully" in run("dg", "check", "defs")
        listed = run("dg", "list", "defs")
        assert all(name in listed for name in ("backup_job", "daily_backup_schedule", "backup_request_sensor"))
        assert "Job: backup_job" in run("dagster", "job", "list", "-w", "workspace.yaml")
    finally:
        shutil.rmtree(server_tmp, ignore_errors=True)
