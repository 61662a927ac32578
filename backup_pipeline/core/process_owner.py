"""Which process on which machine runs something, and whether that process is still alive.

A run executed by `backup-db` in a process of its own records this identity; when the process is gone (killed
with SIGKILL, out of memory, the machine rebooted), nothing else would ever end the run. The identity is the
host name, the pid, and on Linux the process's start time (in clock ticks since boot), so that a pid the
kernel has since given to another process is not mistaken for the run's.
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

    @classmethod
    def current(cls) -> ProcessOwner:
        return cls(host=this_host(), pid=os.getpid(), started=_start_ticks(os.getpid()))

    def is_alive(self) -> bool:
        """Whether the process still runs. Only answerable on its own host (callers check the host first)."""
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


def this_host() -> str:
    return socket.gethostname()


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
