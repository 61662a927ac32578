"""Which process on which machine runs something, and whether that process is still alive.

A run executed by `backup-db` in a process of its own records this identity; when the process is gone (killed
with SIGKILL, out of memory, the machine rebooted), nothing else would ever end the run. The identity is the
host name, the pid, and the process's start time (in clock ticks since boot, from psutil), so that a pid the
kernel has since given to another process is not mistaken for the run's, and its PID namespace: containers that
share a host name (`--network host`, a fixed `hostname:`) each number their processes from 1, so a pid from
another container says nothing here; such a process is taken to be alive, never failed on a guess.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

# psutil has no word on PID namespaces or boot ids: these two are read as the kernel gives them (Linux only).
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
PID_NAMESPACE = Path("/proc/self/ns/pid")


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
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return False  # killed, not yet reaped by its parent: it runs no more
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True  # exists, under another user
        started = _start_ticks(self.pid)
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
        boot = BOOT_ID.read_text().strip()
        pid_ns = os.readlink(PID_NAMESPACE)
    except OSError:
        return None
    return f"{boot}/{pid_ns}"


def _start_ticks(pid: int) -> str | None:
    """When `pid` started, in clock ticks since boot (the kernel's own count, which no change of the wall clock
    moves: psutil's start time less its boot time, both on the wall clock); None where it cannot be told."""
    try:
        since_boot = psutil.Process(pid).create_time() - psutil.boot_time()
    except (psutil.Error, OSError):
        return None
    return str(round(since_boot * os.sysconf("SC_CLK_TCK")))
