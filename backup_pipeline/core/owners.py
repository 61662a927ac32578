"""Temporary files that name the process owning them, and proof of whether that process still lives.

Password files, partial uploads into the local folder and partial downloads carry their owner's pid in their
name and stay locked (flock) by the owner while it lives. A killed process releases its locks, so a file whose
named owner is gone and whose lock is free was left behind by a crash and may be removed; a file of a process
that is alive (or whose lock is held, as from another PID namespace sharing the folder) is never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from pathlib import Path

from backup_pipeline.core.process_owner import ProcessOwner, this_host

# A folder (a directory-format download) cannot hold a lock: it counts as abandoned only when its owner is gone
# and nothing was written into it for this long.
FOLDER_IDLE_S = 15 * 60


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a zombie, killed but not yet reaped, does not)."""
    return pid > 0 and ProcessOwner(host=this_host(), pid=pid).is_alive()


def hold(fd: int) -> None:
    """Marks an open file as owned by this process until it is closed (or the process dies). Where the file
    system has no flock, the pid in the name is the only proof, which a sweep then never takes as enough."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _lock_free(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases the probe's own lock


def abandoned(path: Path, pid: int) -> bool:
    """Whether `path`, owned by `pid`, was left behind: its owner is gone and it is not in use."""
    if pid == os.getpid() or pid_alive(pid):
        return False
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if path.is_symlink():
        return False
    if path.is_dir():
        newest = max([info.st_mtime, *(p.stat().st_mtime for p in path.rglob("*") if not p.is_symlink())])
        return time.time() - newest >= FOLDER_IDLE_S
    return _lock_free(path)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
