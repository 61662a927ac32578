"""Our own process for a run, when no daemon will start it: `python -m backup_pipeline.cli.worker`.

It is started before the command has even loaded Dagster, and loads the code while the command looks for
a daemon; then it is told to go (and executes the run in process against the instance) or to stand down
(a daemon will run it). It runs in its own session, so the run carries on after the command stops
following it (--no-wait, --timeout, Ctrl-C). Secrets for the run (a restore target's password) reach it in
its environment, never in its arguments.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

WORKER_LOG_FOLDER = "backup_db_runs"
GO = b"run\n"  # what worker.py waits for


@dataclass
class RunProcess:
    """The process executing a run: whether it still runs, and where its output goes."""

    run_id: str
    pid: int
    log_path: Path
    popen: subprocess.Popen | None = None

    def go(self) -> RunProcess:
        # If it already died (say, the code failed to load), following the run reports its output.
        with contextlib.suppress(BrokenPipeError):
            self.popen.stdin.write(GO)
            self.popen.stdin.close()
        return self

    def stand_down(self) -> None:
        """Not needed after all: it exits when its stdin closes without the word to go."""
        with contextlib.suppress(OSError):
            self.popen.stdin.close()
        for path in (self.log_path, self.log_path.with_suffix(".pid")):
            path.unlink(missing_ok=True)

    def running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def ending(self) -> str:
        code = self.popen.returncode if self.popen is not None else None
        return f"exit code {code}" if code is not None else f"process {self.pid} is gone"

    @classmethod
    def of_run(cls, home: Path, run_id: str) -> RunProcess | None:
        """The process an earlier `backup-db` started for `run_id`, from the pid it left beside the log."""
        folder = home / WORKER_LOG_FOLDER
        try:
            pid = int((folder / f"{run_id}.pid").read_text())
        except (OSError, ValueError):
            return None
        return cls(run_id=run_id, pid=pid, log_path=folder / f"{run_id}.log")


def start_worker(home: Path, spec) -> RunProcess:
    """Starts loading the code for `spec`'s run; call go() or stand_down() on what it returns."""
    run_id = str(uuid.uuid4())
    folder = home / WORKER_LOG_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{run_id}.log"
    argv = [sys.executable, "-m", "backup_pipeline.cli.worker", run_id, json.dumps(spec.public())]
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            argv,
            env={**os.environ, **spec.private_env},
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not ended by the terminal's Ctrl-C: the run outlives our waiting
        )
    log_path.with_suffix(".pid").write_text(str(popen.pid))
    return RunProcess(run_id=run_id, pid=popen.pid, log_path=log_path, popen=popen)
