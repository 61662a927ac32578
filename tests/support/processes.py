"""Starting and stopping test servers: free loopback ports, own process groups, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process(argv: list[str], **kwargs) -> subprocess.Popen:
    """Starts `argv` in its own process group, so stop_process ends it and every child it made."""
    return subprocess.Popen(argv, start_new_session=True, **kwargs)


def start_daemon(project_root, log) -> subprocess.Popen:
    """`dagster-daemon run -w workspace.yaml` with this process's environment (its DAGSTER_HOME), logging to
    the file `log`; stop it with stop_process."""
    import sys
    from pathlib import Path

    return start_process(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=project_root,
        stdout=open(log, "wb"),  # noqa: SIM115 - the daemon writes to it until it is stopped
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def wait_for_http(url: str, process: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode} before answering at {url}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing answered at {url} within {timeout} s")
