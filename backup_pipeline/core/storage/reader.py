"""Reading an object whole over a connection that may drop: resumed at the byte where it stopped.

Shared by every backend: each gives `open_at(offset)` (a stream from `offset`) and the errors that mean the
connection dropped; the reader does the rest.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from backup_pipeline.core.errors import BackupError

# A download that drops or ends short is opened again from where it stopped (a ranged GET): this many times in
# a row without a byte gained before it is given up. boto3 retries the request, never a body cut mid-way.
DOWNLOAD_ATTEMPTS = 5
DOWNLOAD_RETRY_PAUSE_S = 0.5


class DownloadCutShort(BackupError):
    """A download ended before the object's last byte and could not be resumed: says nothing about the object."""


class ResumingReader:
    """An object read from its first byte to its last: when the connection drops or the body ends before `size`
    bytes, it is opened again at the byte where it stopped, so the caller (a checksum) sees every byte once, in
    order. `open_at(offset)` returns (a stream from `offset`, the object's size as that answer gives it);
    `size` is what the caller knows the object to hold (its manifest), trusted over a Content-Length."""

    def __init__(
        self,
        key: str,
        where: str,
        open_at: Callable[[int], tuple[object, int | None]],
        size: int | None,
        dropped: tuple[type[BaseException], ...],
        attempts: int = DOWNLOAD_ATTEMPTS,
        pause_s: float = DOWNLOAD_RETRY_PAUSE_S,
    ):
        self.key, self._where, self._open_at, self.size = key, where, open_at, size
        self._dropped, self._attempts, self._pause_s = dropped, attempts, pause_s
        self.position = 0
        self._failures = 0  # in a row, without a byte gained
        self._stream = None
        self._aborted: BackupError | None = None
        self._open()

    def abort(self, error: BackupError) -> None:
        """Ends the download from another thread (a watchdog): it is never opened again, and every read from now
        on raises `error`. The stream is not closed here: closing a buffered stream waits for the read that
        hangs in it. The hanging read ends with the client's read timeout, on the thread it hangs in."""
        self._aborted = error

    def _open(self) -> None:
        stream, size = self._open_at(self.position)
        self._stream = stream
        if self.size is None and size is not None:
            self.size = size

    def read(self, size: int = -1) -> bytes:
        while True:
            if self._aborted is not None:
                raise self._aborted
            try:
                if self._stream is None:
                    self._open()
                data = self._stream.read() if size is None or size < 0 else self._stream.read(size)
            except (*self._dropped, AttributeError, ValueError) as error:
                if self._aborted is not None:  # closed under the read by abort()
                    raise self._aborted from None
                if not isinstance(error, self._dropped):
                    raise
                self._lost(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'dropped'}")
                continue
            if data:
                self.position += len(data)
                self._failures = 0
                return data
            if self._aborted is not None:
                raise self._aborted
            if self.size is None or self.position >= self.size:
                return b""
            self._lost("the body ended early")

    def _lost(self, cause: str) -> None:
        """The stream stopped short: closed, to be opened again from `position`, unless the attempts are spent."""
        self.close()
        self._failures += 1
        if self._failures >= self._attempts:
            total = self.size if self.size is not None else "?"
            raise DownloadCutShort(
                f"the download was cut short after {self.position} of {total} bytes; the stored object was not "
                f"checked (reading {self.key} from {self._where}, {self._attempts} attempts in a row without a "
                f"byte gained, the last: {cause}). Check the network to storage and run it again"
            )
        time.sleep(self._pause_s * self._failures)

    def close(self) -> None:
        if self._aborted is not None:
            self._stream = None  # a read may still hang in it (see abort)
            return
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
            self._stream = None

    def readable(self) -> bool:
        return True
