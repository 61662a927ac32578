"""The stall watchdog of a restore (BACKUP_STALL_SECONDS): bytes that stop moving, sessions that stop working."""

from __future__ import annotations

import contextlib
import subprocess
import time

from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.sessions import (
    cancel_backends,
    lock_waits,
    session_tag,
    sessions_named,
    tagged_sessions,
)
from backup_pipeline.core.restore.plan import RESTORE_STOPPED
from backup_pipeline.core.streams import StalledError, StallWatch, run_watched

# How often a waiting restore looks at what pg_restore's sessions do on the server.
WATCH_POLL_S = 0.5


class RestoreWatchdog:
    """The stall watchdog of one restore (BACKUP_STALL_SECONDS), shared by its streamed and staged forms.

    pg_restore's sessions carry a name of their own (`target`), so the server can be asked what they do. A
    restore makes progress while bytes move or while one of its sessions works (an index build takes no bytes);
    it has stalled when the download sends nothing for the limit, or when pg_restore takes nothing and its
    sessions do no work (waiting for a lock is no work) for the limit. Then its statements are cancelled on the
    server, pg_restore is stopped, the download is ended, and the error names what it waited for.
    """

    def __init__(self, target: PostgresTarget, limit_s: float):
        self.tag = session_tag("pg_restore")
        self.target = tagged_sessions(target, self.tag)  # for pg_restore (and psql)
        self._monitor_target = target  # the watchdog's own sessions are not among those it watches
        self.limit_s = limit_s

    def stream_watch(self, sink: str) -> StallWatch:
        return StallWatch(self.limit_s, source="download", sink=sink, outcome=RESTORE_STOPPED)

    def run(self, work, watch: StallWatch, process, body) -> None:
        """`work` (bytes from `body` into `process` or a staging file), stopped on a stall."""
        run_watched(
            work,
            watch,
            stop=lambda: self._stop(process, body, watch.error()),
            poll_s=WATCH_POLL_S,
            still_working=lambda side: side == "pg_restore" and self._sessions_working(),
            # A stalled download may hang in its socket until the client's read timeout: not waited for.
            settle_s=2 * WATCH_POLL_S,
        )

    def wait(self, process, name: str) -> int:
        """pg_restore's exit code, waited for while its sessions are watched: one waiting for a lock for the
        limit is cancelled, pg_restore stopped, and StalledError raised naming the lock and its holder."""
        waiting_since = None
        monitor = None
        try:
            while process.poll() is None:
                try:
                    monitor = monitor or self._monitor_target.connect()
                    waits = lock_waits(monitor, sessions_named(monitor, self.tag))
                except Exception:  # the server cannot be asked now: pg_restore is waited for all the same
                    waits = []
                now = time.monotonic()
                waiting_since = (waiting_since or now) if waits else None
                if waiting_since is not None and now - waiting_since >= self.limit_s:
                    self._stop(process, None, None, monitor)
                    raise StalledError(
                        f"pg_restore of {name} stalled for {self.limit_s:g} s (BACKUP_STALL_SECONDS): it waited for "
                        f"{waits[0]}, so {RESTORE_STOPPED}. End or wait for that session, or raise "
                        "BACKUP_STALL_SECONDS if such waits are normal here"
                    )
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(WATCH_POLL_S)
            return process.wait()
        finally:
            if monitor is not None:
                monitor.close()

    def _sessions_working(self) -> bool:
        """Whether one of pg_restore's sessions runs a statement that is not waiting for a lock; True when the
        server cannot be asked (no restore is stopped on a guess)."""
        try:
            with self._monitor_target.connect() as monitor:
                rows = monitor.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND state = 'active' "
                    "AND wait_event_type IS DISTINCT FROM 'Lock'",
                    (self.tag,),
                ).fetchall()
        except Exception:
            return True
        return bool(rows)

    def _stop(self, process, body, error, monitor=None) -> str | None:
        """Cancels pg_restore's statements on the server, stops it, ends the download; what it waited for."""
        waits: list[str] = []
        try:
            own = monitor is None
            monitor = monitor or self._monitor_target.connect()
            try:
                pids = sessions_named(monitor, self.tag)
                waits = lock_waits(monitor, pids)
                cancel_backends(monitor, pids)
            finally:
                if own:
                    monitor.close()
        except Exception:  # the server cannot be asked: pg_restore is stopped all the same
            pass
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()
        if body is not None and error is not None and hasattr(body, "abort"):
            body.abort(error)
        return "; ".join(dict.fromkeys(waits)) or None
