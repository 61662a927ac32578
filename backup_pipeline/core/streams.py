"""File-like wrappers that hash and report progress while bytes stream through."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

ProgressCallback = Callable[[int], None]
CHUNK_BYTES = 1024 * 1024


class HashingReader:
    """Reads from `raw`, keeping a running sha256 and byte count; reports progress every few seconds."""

    def __init__(self, raw, on_progress: ProgressCallback | None = None, every_s: float = 5.0):
        self._raw = raw
        self._hash = hashlib.sha256()
        self.bytes_read = 0
        self._on_progress = on_progress
        self._every_s = every_s
        self._last_report = time.monotonic()

    def read(self, size: int = -1) -> bytes:
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
