"""Stopping a restore: a cancelled run or a signal stops it before the swap (its work database dropped, its
target as it was); from the swap on, a stop waits until the swap is done."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable

from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.databases import drop_database
from backup_pipeline.core.postgres.maintenance import admin_connection
from backup_pipeline.core.restore.plan import Log
from backup_pipeline.core.restore.processes import end_restores_into

# Asked while a restore runs: why it must stop (the run was canceled, ...), or None to go on.
StopCheck = Callable[[], "str | None"]
STOP_POLL_S = 0.5


class RestoreStopped(BackupError):
    """A restore stopped before its swap because it was asked to: its work database is gone, its target as it was."""


def stop_if_asked(should_stop: StopCheck | None, target_db: str) -> None:
    reason = should_stop() if should_stop else None
    if reason:
        raise RestoreStopped(f"the restore stopped before it began ({reason}): {target_db} was not touched")


class StopWatch:
    """Asks `should_stop` every STOP_POLL_S while the backup goes into the work database. On a stop it ends
    pg_restore (SIGTERM) and drops the work database WITH (FORCE), so a download or pg_restore still to come fails
    at once and the restore unwinds; `pass_point_of_no_return` asks once more, right before the swap, and from
    then on a stop is ignored (a swap begun is finished)."""

    def __init__(self, server: PostgresTarget, target_db: str, work_db: str, should_stop: StopCheck | None):
        self.server, self.target_db, self.work_db, self.should_stop = server, target_db, work_db, should_stop
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._committed = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="restore-stop-watch", daemon=True)

    def __enter__(self) -> StopWatch:
        if self.should_stop is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _ask(self) -> str | None:
        try:
            return self.should_stop() if self.should_stop else None
        except Exception:  # a status that cannot be read now is asked again at the next poll and before the swap
            return None

    def _watch(self) -> None:
        while not self._done.wait(STOP_POLL_S):
            reason = self._ask()
            if not reason:
                continue
            with self._lock:
                if self._committed:
                    return
                self.reason = reason
            end_restores_into(self.work_db)
            with contextlib.suppress(BackupError), admin_connection(self.server, outside=self.target_db) as conn:
                drop_database(conn, self.work_db)
            return

    def pass_point_of_no_return(self) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = self._ask()
            if self.reason:
                raise RestoreStopped(f"stopped right before the swap ({self.reason})")
            self._committed = True


@contextlib.contextmanager
def signals_held(log: Log):
    """SIGINT and SIGTERM wait while a swap runs (it is one transaction, then the old database's drop): a swap
    begun is finished, and the log says the stop came too late."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            log("a stop arrived once the swap had begun: the restore finished it (a swap is never left half done)")
