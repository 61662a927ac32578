"""A stand-in for Discord: a real HTTP server on a free loopback port that records what it is sent.

    stub.url               API root, for DISCORD_API_BASE_URL (bot mode posts to {url}/channels/<id>/messages)
    stub.webhook_url       a webhook URL, for DISCORD_WEBHOOK_URL
    stub.messages          the content of every message it accepted, in order
    stub.requests          every request it received (including the ones it refused), as RecordedRequest
    stub.set_responses([500, (429, 0.2), 200])
                           answers for the next requests, in order: a status, or (429, retry_after seconds);
                           once used up it accepts everything (200, like Discord with ?wait=true)
    stub.wait_for_messages(n, timeout)

Use the `discord_stub` fixture (import it into your test module), or DiscordStub() as a context manager.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

WEBHOOK_PATH = "/webhooks/112233445566778899/stub-webhook-token"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict | None
    status: int
    at: float = field(default_factory=time.time)  # wall clock, comparable with run timestamps

    @property
    def content(self) -> str | None:
        return (self.body or {}).get("content")


class DiscordStub:
    def __init__(self):
        self.requests: list[RecordedRequest] = []
        self._responses: list[int | tuple[int, float]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.webhook_url = f"{self.url}{WEBHOOK_PATH}"
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------------------------
    def start(self) -> DiscordStub:
        self._thread = threading.Thread(target=self._server.serve_forever, name="discord-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DiscordStub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_responses(self, responses: list[int | tuple[int, float]]) -> None:
        with self._lock:
            self._responses = list(responses)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._responses = []

    # -- what it received ----------------------------------------------------------------------------------
    @property
    def messages(self) -> list[str]:
        with self._lock:
            return [r.content or "" for r in self.requests if r.status < 300]

    def wait_for_messages(self, count: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(1 for r in self.requests if r.status < 300) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
        return self.messages

    # -- serving -------------------------------------------------------------------------------------------
    def _next_response(self) -> tuple[int, dict]:
        with self._lock:
            answer = self._responses.pop(0) if self._responses else 200
        if isinstance(answer, tuple):
            status, retry_after = answer
            return status, {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        if answer >= 300:
            return answer, {"message": f"stub answered {answer}", "code": 0}
        return answer, {"id": "1", "type": 0}

    def _record(self, request: RecordedRequest) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def _handler_class(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                status, answer = stub._next_response()
                # Recorded before answering: once the client has its answer, the test can see the request.
                stub._record(RecordedRequest("POST", self.path, dict(self.headers.items()), body, status))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", str(answer["retry_after"]))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output clean
                pass

        return Handler


@pytest.fixture
def discord_stub():
    with DiscordStub() as stub:
        yield stub
