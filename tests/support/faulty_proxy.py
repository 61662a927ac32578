"""A loopback HTTP proxy in front of moto's S3 server that can misbehave on cue.

It listens on a free port and forwards each request to the upstream server, unless a fault matches the
request's S3 operation (UploadPart, PutObject, HeadBucket, ...): then it answers with an HTTP error status
and an S3 error document, stalls without answering, or cuts the connection; or it forwards the request and
spoils the answer: a listing that leaves out one key ("hide"), a body cut off after some bytes with the
connection dropped ("cut_body"), a body that stops after some bytes and then sends nothing for `stall_s`
("stall_body"), or a body cut short with its Content-Length rewritten to match ("short_body"). Faults fire a set number of
times (or forever), so "fail twice, then recover" and "never recover" are both one line. Every request is
recorded with what the proxy did with it.
"""

from __future__ import annotations

import http.client
import re
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

STATUS_TEXT = {500: "Internal Server Error", 503: "Service Unavailable", 403: "Forbidden", 429: "Too Many Requests"}
ERROR_CODES = {500: "InternalError", 503: "SlowDown", 403: "AccessDenied"}


def s3_operation(method: str, target: str) -> str:
    """The S3 API operation of a path-style request, e.g. "UploadPart"."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    has_key = len([p for p in parts.path.split("/") if p]) >= 2
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPart"
        return "PutObject" if has_key else "CreateBucket"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        if "delete" in query:
            return "DeleteObjects"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        return "DeleteObject" if has_key else "DeleteBucket"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "GET":
        if "uploads" in query:
            return "ListMultipartUploads"
        return "GetObject" if has_key else "ListObjects"
    return method


@dataclass
class Fault:
    operation: str  # S3 operation to act on, or "*" for every request
    kind: str  # "status", "stall", "cut", "hide", "cut_body", "stall_body", "short_body" or "pass" (untouched)
    status: int = 500
    times: int | None = None  # None: forever
    stall_s: float = 30.0
    hide: tuple[str, ...] = ()  # "hide": the keys left out of listings
    keep_bytes: int = 0  # "cut_body", "short_body": the bytes of the body sent
    path_suffix: str = ""  # only requests whose path ends so (".dump": the dumps, not their manifests)
    fired: int = 0

    def matches(self, operation: str, target: str = "") -> bool:
        return (
            (self.operation in ("*", operation))
            and urlsplit(target).path.endswith(self.path_suffix)
            and (self.times is None or self.fired < self.times)
        )


@dataclass
class Exchange:
    operation: str
    method: str
    target: str
    action: str  # "forwarded", "status 500", "stalled", "cut", or the spoiling fault's kind
    status: int | None = None
    ranged: bool = False  # the request asked for a byte range


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client hanging up mid-exchange is part of the game here


class FaultyProxy:
    def __init__(self, upstream: str):
        parsed = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parsed.hostname, parsed.port
        self.faults: list[Fault] = []
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                proxy._serve_connection(self.rfile, self.wfile, self.connection)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    # -- controlling it --------------------------------------------------------------------------------------

    def add(self, operation: str, kind: str = "status", **options) -> Fault:
        fault = Fault(operation=operation, kind=kind, **options)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.exchanges.clear()

    def count(self, operation: str, action: str | None = None, ranged: bool | None = None) -> int:
        with self._lock:
            return sum(
                1
                for e in self.exchanges
                if e.operation == operation
                and (action is None or e.action == action)
                and (ranged is None or e.ranged == ranged)
            )

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- serving ---------------------------------------------------------------------------------------------

    def _fault_for(self, operation: str, target: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(operation, target):
                    fault.fired += 1
                    return fault
        return None

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def _serve_connection(self, rfile, wfile, connection: socket.socket) -> None:
        while not self._stop.is_set():
            request = _read_request(rfile, wfile)
            if request is None:
                return
            method, target, headers, body = request
            operation = s3_operation(method, target)
            fault = self._fault_for(operation, target)
            if fault is None:
                status = self._forward(method, target, headers, body, wfile)
                self._record(Exchange(operation, method, target, "forwarded", status, _ranged(headers)))
                continue
            if fault.kind in SPOILED:
                status = self._forward(method, target, headers, body, wfile, fault)
                self._record(Exchange(operation, method, target, fault.kind, status, _ranged(headers)))
                if fault.kind == "stall_body":
                    self._stop.wait(fault.stall_s)
                if fault.kind in ("cut_body", "stall_body"):
                    connection.shutdown(socket.SHUT_RDWR)
                    connection.close()
                    return
                continue
            if fault.kind == "status":
                self._record(Exchange(operation, method, target, f"status {fault.status}", fault.status))
                _write_error(wfile, fault.status, method)
            elif fault.kind == "stall":
                self._record(Exchange(operation, method, target, "stalled"))
                self._stop.wait(fault.stall_s)
                connection.close()
                return
            else:
                self._record(Exchange(operation, method, target, "cut"))
                connection.shutdown(socket.SHUT_RDWR)
                connection.close()
                return

    def _forward(self, method, target, headers, body, wfile, fault: Fault | None = None) -> int:
        upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            upstream.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in ("expect", "connection"):
                    upstream.putheader(name, value)
            upstream.endheaders(body if body else None)
            response = upstream.getresponse()
            payload = response.read()
            length = response.getheader("Content-Length", "0") if method == "HEAD" else str(len(payload))
            if fault is not None and response.status in (200, 206):
                payload, length = _spoil(fault, payload, length)
            out = [f"HTTP/1.1 {response.status} {response.reason}\r\n".encode("latin-1")]
            for name, value in response.getheaders():
                if name.lower() in ("transfer-encoding", "connection", "content-length"):
                    continue
                out.append(f"{name}: {value}\r\n".encode("latin-1"))
            out.append(f"Content-Length: {length}\r\n\r\n".encode("latin-1"))
            wfile.write(b"".join(out) + (b"" if method == "HEAD" else payload))
            wfile.flush()
            return response.status
        finally:
            upstream.close()


def _ranged(headers) -> bool:
    return any(name.lower() == "range" for name, _ in headers)


SPOILED = ("hide", "cut_body", "stall_body", "short_body", "pass")


def _spoil(fault: Fault, payload: bytes, length: str) -> tuple[bytes, str]:
    """(the body sent, the Content-Length announced) of a forwarded answer the fault spoils."""
    if fault.kind == "hide":
        listing = payload
        for key in fault.hide:
            hidden = re.escape(f"<Key>{key}</Key>".encode())
            listing = re.sub(
                rb"<Contents>(?:(?!</Contents>).)*?" + hidden + rb".*?</Contents>", b"", listing, flags=re.S
            )
        return listing, str(len(listing))
    if fault.kind in ("cut_body", "stall_body"):  # the whole length announced, part of the body sent
        return payload[: fault.keep_bytes], length
    if fault.kind == "pass":
        return payload, length
    return payload[: fault.keep_bytes], str(min(fault.keep_bytes, len(payload)))


def _read_request(rfile, wfile):
    """(method, target, headers, body) of the next request on the connection, or None when it closed."""
    try:
        line = rfile.readline(65537)
    except OSError:
        return None
    if not line or not line.strip():
        return None
    method, target, _version = line.decode("latin-1").split(" ", 2)
    headers = []
    while True:
        raw = rfile.readline(65537)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    lookup = {n.lower(): v for n, v in headers}
    if lookup.get("expect", "").lower() == "100-continue":
        # Answered here, so the client never waits out its 100-continue timeout.
        wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        wfile.flush()
    if "chunked" in lookup.get("transfer-encoding", "").lower():
        raise RuntimeError("the faulty proxy does not relay chunked request bodies")
    length = int(lookup.get("content-length", "0") or 0)
    body = rfile.read(length) if length else b""
    return method, target, headers, body


def _write_error(wfile, status: int, method: str) -> None:
    code = ERROR_CODES.get(status, "InternalError")
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>injected fault</Message><RequestId>faulty-proxy</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Error')}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nDate: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}\r\n\r\n"
    ).encode()
    wfile.write(head + (b"" if method == "HEAD" else body))
    wfile.flush()
