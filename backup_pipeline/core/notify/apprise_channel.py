"""Every other channel (Slack, Teams, Telegram, e-mail, Mattermost, ntfy, webhooks, ...) through apprise, one
URL per destination (https://github.com/caronc/apprise/wiki: `slack://…`, `mailtos://…`, `json://…`).

The URLs carry their services' tokens, so they are secrets: this module names a URL by its position and
scheme only, and apprise's own log lines (which may quote a URL) are captured and redacted before they are
logged. Messages are plain text with a title, which every service shows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from backup_pipeline.core.notify.channel import Channel, log
from backup_pipeline.core.notify.events import Severity
from backup_pipeline.core.notify.text import PLAIN, Rendered

# apprise's per-service defaults (4 s to connect, 4 s to read, no retries) keep a send within seconds.
_APPRISE_LOGGER = "apprise"
_capture_lock = threading.Lock()


def scheme_of(url: str) -> str:
    return url.partition("://")[0].lower() or "?"


class AppriseChannel(Channel):
    markup = PLAIN

    def __init__(self, url: str, position: int = 1):
        self.url = url
        self.position = position

    def describe(self) -> str:
        return f"notification URL {self.position} ({scheme_of(self.url)}://)"

    def deliver(self, message: Rendered, severity: Severity, redact: Callable[[str], str], log=log) -> bool:
        import apprise  # imported when a message is sent: loading its plugins takes a moment

        title = redact(message.headline)
        body = redact("\n".join(message.lines)) or title
        notify_type = {
            Severity.ERROR: apprise.NotifyType.FAILURE,
            Severity.WARNING: apprise.NotifyType.WARNING,
            Severity.OK: apprise.NotifyType.SUCCESS,
        }[severity]
        with _captured_apprise_log() as captured:
            destination = apprise.Apprise()
            if not destination.add(self.url):
                log.warning(
                    f"notification not sent to {self.describe()}: apprise does not understand this URL "
                    "(check its scheme and fields: https://github.com/caronc/apprise/wiki)"
                )
                return False
            try:
                delivered = bool(
                    destination.notify(
                        body=body, title=title, notify_type=notify_type, body_format=apprise.NotifyFormat.TEXT
                    )
                )
            except Exception as error:  # a plugin's bug must not hurt what we report on
                log.warning(f"notification not sent to {self.describe()}: {type(error).__name__}")
                return False
        if not delivered:
            said = [redact(line) for line in captured() if line.strip()][-2:]
            log.warning(f"notification not sent to {self.describe()}" + (f": {' / '.join(said)}" if said else ""))
        return delivered


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class _captured_apprise_log:
    """apprise's log lines, kept from every other handler (they may quote a URL with its token)."""

    def __enter__(self) -> Callable[[], list[str]]:
        _capture_lock.acquire()
        self.logger = logging.getLogger(_APPRISE_LOGGER)
        self.saved = (self.logger.propagate, self.logger.level, self.logger.handlers[:])
        self.capture = _Capture()
        self.logger.handlers = [self.capture]
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        return lambda: list(self.capture.lines)

    def __exit__(self, *exc) -> None:
        self.logger.propagate, level, self.logger.handlers = self.saved
        self.logger.setLevel(level)
        _capture_lock.release()
