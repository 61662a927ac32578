"""Heartbeat pings of a backup run: start, then success or fail, to a monitoring service that alerts when the
pings stop coming (a dead-man's switch outside this deployment: it notices a daemon that died too).

Three conventions, chosen by the URL (or BACKUP_HEARTBEAT_STYLE):
- healthchecks.io (and self-hosted Healthchecks): URL/start, URL, URL/fail, with the run id as `rid` so
  it measures each run's duration; the failure's first line is the body of the fail ping;
- Uptime Kuma push monitors (…/api/push/<token>): no start; ?status=up, or ?status=down&msg=…;
- Cronitor telemetry (cronitor.link): ?state=run, ?state=complete, ?state=fail&message=….

The URL is a secret (the UUID or token in it is its only credential): it is never logged, and what a ping
sends is redacted. A ping never raises and never waits more than a few seconds: a monitoring service being
down must not fail the backup it watches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import requests

HEARTBEAT_STYLES = ("healthchecks", "uptime-kuma", "cronitor")
TIMEOUT_S = (3.0, 5.0)
ATTEMPTS = 2
MAX_BODY_CHARS = 1000

log = logging.getLogger("backup_pipeline.notify")


def heartbeat_style(url: str, style: str | None = None) -> str:
    if style:
        return style
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if "/api/push/" in parts.path:
        return "uptime-kuma"
    if host.endswith("cronitor.link") or host.endswith("cronitor.io"):
        return "cronitor"
    return "healthchecks"


@dataclass(frozen=True)
class Heartbeat:
    url: str
    style: str = "healthchecks"
    run_id: str | None = None
    redact: Callable[[str], str] = lambda text: text

    @classmethod
    def for_url(cls, url: str | None, style: str | None, run_id: str | None, redact) -> Heartbeat | None:
        return cls(url, heartbeat_style(url, style), run_id, redact) if url else None

    def describe(self) -> str:
        """Safe to log: the style and host, never the path or query that carry the credential."""
        return f"the {self.style} heartbeat at {urlsplit(self.url).hostname or '?'}"

    def start(self, log=log) -> bool:
        return self._ping("start", "", log)

    def success(self, message: str = "", log=log) -> bool:
        return self._ping("success", message, log)

    def fail(self, message: str, log=log) -> bool:
        return self._ping("fail", message, log)

    def request(self, signal: str, message: str) -> tuple[str, str, str | None] | None:
        """(method, URL, body) of a ping, or None when the style has no such ping (Uptime Kuma has no start)."""
        message = self.redact(message)[:MAX_BODY_CHARS]
        base, _, query = self.url.partition("?")
        if self.style == "healthchecks":
            suffix = {"start": "/start", "success": "", "fail": "/fail"}[signal]
            extra = {"rid": self.run_id} if self.run_id else {}
            return "POST", _with_query(base.rstrip("/") + suffix, query, extra), message or None
        if self.style == "uptime-kuma":
            if signal == "start":
                return None
            status = "up" if signal == "success" else "down"
            return "GET", _with_query(base, query, {"status": status, "msg": message or "OK"}), None
        state = {"start": "run", "success": "complete", "fail": "fail"}[signal]
        extra = {"state": state, **({"message": message} if message else {})}
        return "GET", _with_query(base, query, extra), None

    def _ping(self, signal: str, message: str, log) -> bool:
        planned = self.request(signal, message)
        if planned is None:
            return True
        method, url, body = planned
        problem = ""
        for _ in range(ATTEMPTS):
            try:
                response = requests.request(method, url, data=body.encode() if body else None, timeout=TIMEOUT_S)
            except requests.Timeout as error:
                # A monitor that does not answer is not asked again: each ping would hold the backup longer.
                problem = f"{type(error).__name__} (no answer within {TIMEOUT_S[1]:g} s)"
                break
            except requests.RequestException as error:
                problem = f"{type(error).__name__} (no answer)"  # str(error) would quote the URL
                continue
            if response.status_code < 300:
                log.info(f"heartbeat {signal} sent to {self.describe()}")
                return True
            problem = f"HTTP {response.status_code}"
            if response.status_code < 500:
                break
        log.warning(f"heartbeat {signal} not sent to {self.describe()}: {problem}")
        return False


def _with_query(base: str, query: str, extra: dict[str, str]) -> str:
    joined = "&".join(part for part in (query, urlencode(extra)) if part)
    return f"{base}?{joined}" if joined else base
