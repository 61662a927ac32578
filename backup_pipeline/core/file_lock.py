"""An exclusive lock on a file, held by a `with` block: for work that two commands on one machine must not do
at once (creating a Dagster instance's storage, failing a run whose process died).

`fcntl.flock` is released by the kernel when its holder dies, however it dies, so a killed command never
leaves the lock behind for the next one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on POSIX: no lock (the product targets Linux and macOS)
    fcntl = None


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Waits for, then holds, the lock on `path` (created if missing) until the block ends."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
