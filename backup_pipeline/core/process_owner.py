"""Which process on which machine runs something, and whether that process is still alive.

A run executed by `backup-db` in a process of its own records this identity; when the process is gone (killed
with SIGKILL, out of memory, the machine rebooted), nothing else would ever end the run. The identity is the
host name, the pid, and on Linux the process's start time (in clock ticks since boot), so that a pid the
kernel has since given to another process is not mistaken for the run's, and its PID namespace: containers that
share a host name (`--network host`, a fixed `hostname:`) each number their processes from 1, so a pid from
another container says nothing here; such a process is taken to be alive, never failed on a guess.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessOwner:
    host: str
    pid: int
    started: str | None = None  # start time in clock ticks since boot (Linux), None where unknown
    # `<boot id>/<pid namespace>` (Linux), None where unknown: which pids this pid is comparable with.
    namespace: str | None = None

    @classmethod
    def current(cls) -> ProcessOwner:
        return cls(host=this_host(), pid=os.getpid(), started=_start_ticks(os.getpid()), namespace=this_namespace())

    def is_alive(self) -> bool:
        """Whether the process still runs. Only answerable on its own host (callers check the host first); a
        process of another PID namespace since this boot cannot be looked up from here, so it counts as alive."""
        if self._other_namespace():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, under another user
        state, started = _stat(self.pid)
        if state == "Z":
            return False  # killed, not yet reaped by its parent: it runs no more
        return self.started is None or started is None or started == self.started

    def _other_namespace(self) -> bool:
        here = this_namespace()
        if self.namespace is None or here is None or self.namespace == here:
            return False
        # Another boot (the machine restarted): every process of the old one is gone, whatever its namespace.
        return self.namespace.split("/", 1)[0] == here.split("/", 1)[0]


def this_host() -> str:
    return socket.gethostname()


def this_namespace() -> str | None:
    """`<boot id>/<pid namespace>` of this process (Linux), None where the system does not tell."""
    try:
        boot = (PROC / "sys/kernel/random/boot_id").read_text().strip()
        pid_ns = os.readlink(PROC / "self/ns/pid")
    except OSError:
        return None
    return f"{boot}/{pid_ns}"


def _stat(pid: int) -> tuple[str | None, str | None]:
    """(state, start time) from /proc/<pid>/stat; (None, None) where there is no /proc."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None, None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], fields[19]  # state is field 3, starttime field 22


def _start_ticks(pid: int) -> str | None:
    return _stat(pid)[1]
