"""A real HTTP server on a free loopback port that records every request it receives: the receiving end of
apprise's json:// and form:// URLs, a healthchecks.io stand-in, a Pushgateway stand-in.

    recorder.url                  http://127.0.0.1:PORT
    recorder.requests             every request, in order (method, path, query, headers, body bytes)
    recorder.set_responses([500]) answers for the next requests; once used up it answers 200
    recorder.wait_for(n, timeout)

Use the `http_recorder` fixture (import it into your test module); each use gets its own server.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class Received:
    method: str
    target: str  # path and query as sent
    headers: dict[str, str]
    body: bytes
    status: int
    at: float = field(default_factory=time.monotonic)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query).items()}

    def json(self) -> dict:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}


class HttpRecorder:
    def __init__(self):
        self.requests: list[Received] = []
        self._responses: list[int] = []
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-recorder", daemon=True)

    def __enter__(self) -> HttpRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def set_responses(self, statuses: list[int]) -> None:
        with self._changed:
            self._responses = list(statuses)

    def accepted(self) -> list[Received]:
        with self._changed:
            return [r for r in self.requests if r.status < 300]

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            return list(self.requests)

    def _handler_class(self):
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with recorder._changed:
                    status = recorder._responses.pop(0) if recorder._responses else 200
                    recorder.requests.append(
                        Received(self.command, self.path, dict(self.headers.items()), body, status)
                    )
                    recorder._changed.notify_all()
                answer = b"OK" if status < 300 else b"stand-in refused"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _serve

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def http_recorder():
    with HttpRecorder() as recorder:
        yield recorder


@pytest.fixture
def second_http_recorder():
    with HttpRecorder() as recorder:
        yield recorder
