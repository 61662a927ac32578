"""The stall watchdog names the side that stopped moving bytes: the dump (a read waits) or the upload."""

import io
import threading
import time

import pytest

from backup_pipeline.core.streams import HashingReader, StalledError, StallWatch, run_watched


class _Pipe:
    """A source that hands over some bytes, then blocks like a pipe whose writer went quiet, until closed."""

    def __init__(self, data: bytes):
        self.data, self.closed = io.BytesIO(data), threading.Event()

    def read(self, size=-1):
        chunk = self.data.read(size)
        if chunk:
            return chunk
        self.closed.wait(30)
        return b""


def test_a_quiet_source_is_a_stalled_dump_and_stopping_it_fails_the_upload():
    pipe = _Pipe(b"PGDMP" * 100)
    watch = StallWatch(0.5)
    reader = HashingReader(pipe, watch=watch)
    started = time.monotonic()

    def upload():
        while reader.read(64):
            pass
        pytest.fail("the cut-short stream passed for a whole dump")

    with pytest.raises(StalledError, match="the dump stalled: pg_dump wrote no bytes for 0.5 s"):
        run_watched(upload, watch, stop=pipe.closed.set, poll_s=0.1)
    assert time.monotonic() - started < 3


def test_an_upload_that_takes_no_bytes_is_a_stalled_upload():
    reader = HashingReader(io.BytesIO(b"x" * 1000), watch=(watch := StallWatch(0.5)))
    stopped = threading.Event()

    def hanging_upload():
        reader.read(10)
        stopped.wait(30)  # storage accepts nothing more

    with pytest.raises(StalledError, match="the upload stalled: storage accepted no bytes for 0.5 s"):
        run_watched(hanging_upload, watch, stop=stopped.set, poll_s=0.1)
    assert stopped.is_set()


def test_a_moving_stream_is_never_stopped():
    watch = StallWatch(0.5)
    reader = HashingReader(io.BytesIO(b"y" * 4096), watch=watch)

    def slow_upload():
        while reader.read(512):
            time.sleep(0.1)

    run_watched(slow_upload, watch, stop=lambda: pytest.fail("stopped a moving stream"), poll_s=0.05)
    assert watch.stalled is None and reader.bytes_read == 4096
