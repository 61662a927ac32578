"""A pg_dump directory-format archive stored as one tar object, streamed both ways.

`pg_dump --format=directory --jobs=N` must write into a folder. While it runs, every file it has finished
(no pg_dump process holds it open any more) is streamed into the tar and deleted from the folder, so the
upload overlaps the dump and the staging folder only holds files still being written. toc.dat, written
when pg_dump closes the archive, comes last. Restoring reverses it: the object is unpacked into a
temporary folder on the way in (checksummed), then `pg_restore --jobs=N` reads the folder.
"""

from __future__ import annotations

import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

from backup_pipeline.core.streams import CHUNK_BYTES

POLL_S = 0.2
TOC_FILE = "toc.dat"
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE


class DirectoryTarStream:
    """A file-like reader of a tar of `folder`, produced while `process` (pg_dump) writes into it."""

    def __init__(self, folder: Path, process: subprocess.Popen, poll_s: float = POLL_S):
        self._folder = Path(folder).resolve()
        self._process = process
        self._poll_s = poll_s
        self._chunks = self._generate()
        self._pending = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join([bytes(self._pending), *self._chunks])
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._pending = memoryview(chunk)
        data, self._pending = self._pending[:size], self._pending[size:]
        return bytes(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._chunks.close()

    def _generate(self) -> Iterator[bytes]:
        written = 0
        while True:
            finished = self._process.poll() is not None
            ready = finished_files(self._folder, self._process.pid, finished)
            for path in ready:
                for chunk in _tar_member(path, path.relative_to(self._folder).as_posix()):
                    written += len(chunk)
                    yield chunk
                path.unlink()
            if finished and not ready:
                break
            if not ready:
                time.sleep(self._poll_s)
        end = 2 * _BLOCK
        yield b"\0" * (end + (-(written + end) % _RECORD))


def finished_files(folder: Path, pid: int, process_finished: bool) -> list[Path]:
    """Files pg_dump is done with: once it exited, all of them (toc.dat last); before, those no process of it holds open."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if process_finished:
        return sorted(files, key=lambda p: p.name == TOC_FILE)
    if not files:
        return []
    open_now = _open_files(pid)
    if open_now is None:  # cannot see pg_dump's open files here: wait for it to finish
        return []
    return [p for p in files if p.name != TOC_FILE and str(p) not in open_now]


def _open_files(pid: int) -> set[str] | None:
    """Paths held open by `pid` and its worker processes; None where that cannot be seen."""
    import psutil

    try:
        processes = [psutil.Process(pid)]
        processes += processes[0].children()
    except psutil.NoSuchProcess:
        return set()  # exited meanwhile: its files are closed
    except psutil.Error:
        return None
    paths: set[str] = set()
    for process in processes:
        try:
            paths.update(opened.path for opened in process.open_files())
        except psutil.NoSuchProcess:
            continue  # exited meanwhile: its files are closed
        except psutil.Error:
            return None
    return paths


def _tar_member(path: Path, name: str) -> Iterator[bytes]:
    info = tarfile.TarInfo(name)
    stat = path.stat()
    info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o600
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    sent = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            sent += len(chunk)
            yield chunk
    if sent != info.size:  # the file changed after pg_dump closed it: never store a torn archive
        raise OSError(f"{path} changed size while it was archived ({info.size} -> {sent} bytes)")
    if sent % _BLOCK:
        yield b"\0" * (_BLOCK - sent % _BLOCK)


def unpack(reader, folder: Path) -> None:
    """Unpacks the tar streamed by `reader` into `folder` (plain files only), then reads `reader` to its end."""
    with tarfile.open(fileobj=reader, mode="r|", bufsize=CHUNK_BYTES, copybufsize=CHUNK_BYTES) as archive:
        archive.extractall(folder, filter="data")
    while reader.read(CHUNK_BYTES):  # the tar's trailing padding, so the checksum covers the whole object
        pass
