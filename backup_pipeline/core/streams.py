"""File-like wrappers that hash and report progress while bytes stream through, and the stall watchdog."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from backup_pipeline.core.errors import BackupError

ProgressCallback = Callable[[int], None]
CHUNK_BYTES = 1024 * 1024


class HashingReader:
    """Reads from `raw`, keeping a running sha256 and byte count; reports progress every few seconds."""

    def __init__(
        self, raw, on_progress: ProgressCallback | None = None, every_s: float = 5.0, watch: StallWatch | None = None
    ):
        self._raw = raw
        self._watch = watch
        self._hash = hashlib.sha256()
        self.bytes_read = 0
        self._on_progress = on_progress
        self._every_s = every_s
        self._last_report = time.monotonic()

    def read(self, size: int = -1) -> bytes:
        if self._watch is None:
            data = self._raw.read() if size is None or size < 0 else self._read_full(size)
        else:
            with self._watch.reading():
                data = self._raw.read() if size is None or size < 0 else self._read_full(size)
        if data:
            self._hash.update(data)
            self.bytes_read += len(data)
            now = time.monotonic()
            if self._on_progress and now - self._last_report >= self._every_s:
                self._last_report = now
                self._on_progress(self.bytes_read)
        return data

    def _read_full(self, size: int) -> bytes:
        # A pipe hands over only what it holds (up to its 64 KiB-1 MiB buffer) per read, and s3transfer takes
        # a short read for the end of the stream (whole dump in one PUT, in memory) or of a part (parts under
        # S3's 5 MiB minimum): return `size` bytes unless the stream ended.
        chunks, remaining = [], size
        while remaining > 0:
            chunk = self._raw.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
            if self._watch is not None:
                self._watch.moved()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def readable(self) -> bool:
        return True

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"


def counted(count: int, noun: str) -> str:
    """`1 table`, `0 rows`, `4,120,334 rows`: a count with its noun, singular only for exactly one."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


class StalledError(BackupError):
    """A dump, an upload, a download or a restore made no progress for BACKUP_STALL_SECONDS and was stopped."""


# What each side of a watched stream failed to do, for the message.
STALLED_SIDES = {
    "dump": "the dump stalled: pg_dump wrote no bytes",
    "upload": "the upload stalled: storage accepted no bytes",
    "download": "the download stalled: storage sent no bytes",
    "pg_restore": "the restore stalled: pg_restore took no bytes and its sessions did no work",
    "staging": "the restore stalled: the staging folder took no bytes",
}
BACKUP_STOPPED = "the backup was stopped and nothing was stored"


class StallWatch:
    """Which side of a streamed backup has stopped moving bytes, if one has.

    The uploader pulls bytes through HashingReader: while it waits inside a read, the dump owes the next
    bytes; between reads, the upload does (it is sending what it has, or waiting for storage to accept it).
    Whichever side has moved nothing for `limit_s` seconds is the stalled one. A restore is watched the same
    way: the download is its source, pg_restore (or the staging folder) its sink.
    """

    def __init__(
        self,
        limit_s: float,
        clock: Callable[[], float] = time.monotonic,
        source: str = "dump",
        sink: str = "upload",
        outcome: str = BACKUP_STOPPED,
    ):
        self.limit_s = limit_s
        self._clock = clock
        # The side a read waits for, the side that takes the bytes (keys of STALLED_SIDES), what a stall ends.
        self.source, self.sink, self.outcome = source, sink, outcome
        self._last_moved = clock()
        self._in_read = False
        self.stalled: str | None = None  # the source or the sink, once declared
        self.cause: str | None = None  # what the stalled side waited for, when the server could say (a lock)

    def moved(self) -> None:
        self._last_moved = self._clock()

    def reading(self):
        watch = self

        class _Reading:
            def __enter__(self):
                watch._in_read = True

            def __exit__(self, *exc):
                watch._in_read = False
                watch.moved()
                if watch.stalled == watch.source:
                    # The source was stopped, so the read ended; the bytes so far must not pass for a whole stream.
                    raise watch.error()

        return _Reading()

    def stalled_side(self) -> str | None:
        if self._clock() - self._last_moved < self.limit_s:
            return None
        return self.source if self._in_read else self.sink

    def error(self) -> StalledError:
        what = STALLED_SIDES[self.stalled or self.sink]
        if self.cause:
            what += f" for {self.limit_s:g} s (BACKUP_STALL_SECONDS): it waited for {self.cause}"
        else:
            what += f" for {self.limit_s:g} s (BACKUP_STALL_SECONDS)"
        return StalledError(
            f"{what}, so {self.outcome}. Check the database server (locks, load) and the network to storage, or "
            "raise BACKUP_STALL_SECONDS if such pauses are normal here"
        )


def run_watched(
    work: Callable[[], None],
    watch: StallWatch,
    stop: Callable[[], str | None],
    poll_s: float = 0.5,
    still_working: Callable[[str], bool] | None = None,
    settle_s: float | None = None,
) -> None:
    """Runs `work` (a streamed upload) on a thread of its own while watching it; on a stall, calls `stop` (ends
    pg_dump, returning what it waited for if the server could say) and raises StalledError naming the stalled
    side, without waiting for an upload that hangs. `still_working(side)`: asked before a side is declared
    stalled, True when it works without moving bytes (a restore building an index): the watch starts over.
    `settle_s`: how long the worker is given to end once stopped (default: at once for a stopped source, whose
    reads fail; briefly for a sink, which may hang in a socket)."""
    outcome: dict = {}

    def target() -> None:
        try:
            work()
        except BaseException as error:  # handed to the watching thread
            outcome["error"] = error

    worker = threading.Thread(target=target, name="backup-upload", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(poll_s)
        side = watch.stalled_side() if worker.is_alive() else None
        if side is not None and still_working is not None and still_working(side):
            watch.moved()
            continue
        if side is not None:
            watch.stalled = side
            cause = stop()
            watch.cause = cause if isinstance(cause, str) else None
            # A stalled dump ends the upload at once (its read fails); a stalled upload may hang in a socket
            # until boto3's own timeouts: it is left to them, on a daemon thread.
            if settle_s is None:
                settle_s = 5 * poll_s if side == watch.sink else max(poll_s * 10, 10)
            worker.join(settle_s)
            raise watch.error()
    if "error" in outcome:
        if watch.stalled:
            raise watch.error() from None
        raise outcome["error"]
