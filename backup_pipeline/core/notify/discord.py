"""Discord: a webhook, or a bot token and a channel, with Discord's markdown and emoji.

Alerting must never hurt what it reports on: every failure here (no answer, 5xx, a rate limit longer than
we are willing to wait) is logged and swallowed, and the whole attempt, retries and waits included, stays
within a few seconds. The webhook URL and the bot token are secrets: they are read from the environment
when a message is sent and appear in no log line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import requests

from backup_pipeline.core.config import DiscordSettings
from backup_pipeline.core.notify.channel import Channel, log
from backup_pipeline.core.notify.events import EventKind, Severity
from backup_pipeline.core.notify.text import Markup, Rendered

MAX_MESSAGE_CHARS = 2000
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 5.0
# Rate limits (429) are honoured up to this much waiting in all; a longer retry_after gives up.
MAX_TOTAL_WAIT_S = 5.0
MAX_ATTEMPTS = 3
SERVER_ERROR_BACKOFF_S = 0.5
USER_AGENT = "DiscordBot (backup_pipeline, 0.1)"

_ICONS = {
    EventKind.FAILURE: ":x:",
    EventKind.RETENTION_REFUSED: ":warning:",
    EventKind.HEALTH_WARNING: ":warning:",
    EventKind.SUCCESS: ":white_check_mark:",
    EventKind.STALE: ":rotating_light:",
    EventKind.RECOVERED: ":white_check_mark:",
    EventKind.INCIDENT: ":x:",
    EventKind.INCIDENT_OVER: ":white_check_mark:",
    EventKind.DATABASES_GONE: ":file_cabinet:",
}
DISCORD_MARKUP = Markup(icon=_ICONS.get, strong=lambda text: f"**{text}**", code=lambda text: f"`{text}`")


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Discord rejects content over 2,000 characters; keep the head, which carries what matters."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


class DiscordChannel(Channel):
    markup = DISCORD_MARKUP

    def __init__(self, settings: DiscordSettings, environ: Mapping[str, str] | None = None):
        self.settings = settings
        self.environ = environ

    @property
    def configured(self) -> bool:
        return self.settings.configured

    def describe(self) -> str:
        if self.settings.webhook_url_env:
            return f"the Discord webhook in {self.settings.webhook_url_env}"
        return f"Discord channel {self.settings.channel_id}"

    def deliver(self, message: Rendered, severity: Severity, redact: Callable[[str], str], log=log) -> bool:
        return self.post(redact(message.text()), log=log)

    def post(self, content: str, log=log) -> bool:
        """Sends one message as it is; True when Discord accepted it. Never raises."""
        if not self.configured:
            return False
        try:
            url, headers = self._endpoint()
        except KeyError as missing:
            log.warning(f"Discord alert not sent: {missing.args[0]} is no longer set in the environment")
            return False
        body = {"content": truncate(content), "allowed_mentions": {"parse": []}}
        deadline = time.monotonic() + MAX_TOTAL_WAIT_S
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = requests.post(url, json=body, headers=headers, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
            except requests.RequestException as error:
                # str(error) would quote the URL, and a webhook URL carries its token.
                log.warning(f"Discord alert not sent to {self.describe()}: {type(error).__name__} (no answer)")
                return False
            if response.status_code < 300:
                return True
            wait = self._retry_wait(response)
            if wait is None or attempt == MAX_ATTEMPTS or time.monotonic() + wait > deadline:
                log.warning(
                    f"Discord alert not sent to {self.describe()}: HTTP {response.status_code} "
                    f"{_short_reason(response)} after {attempt} attempt(s)"
                )
                return False
            log.info(f"Discord answered HTTP {response.status_code}; retrying in {wait:.1f} s")
            time.sleep(wait)
        return False

    def _endpoint(self) -> tuple[str, dict[str, str]]:
        env = os.environ if self.environ is None else self.environ
        headers = {"User-Agent": USER_AGENT}
        if self.settings.webhook_url_env:
            url = env[self.settings.webhook_url_env]
            # wait=true makes Discord confirm the message was stored instead of queueing it blindly.
            return url + ("&" if "?" in url else "?") + "wait=true", headers
        token = env[self.settings.bot_token_env]
        headers["Authorization"] = f"Bot {token}"
        return f"{self.settings.api_base_url}/channels/{self.settings.channel_id}/messages", headers

    @staticmethod
    def _retry_wait(response: requests.Response) -> float | None:
        """Seconds to wait before trying again, or None when trying again cannot help."""
        if response.status_code == 429:
            return max(_retry_after(response), 0.0)
        if response.status_code >= 500:
            return SERVER_ERROR_BACKOFF_S
        return None


def _retry_after(response: requests.Response) -> float:
    """Discord puts retry_after (seconds) in the JSON body; proxies may only send the Retry-After header."""
    for read in (lambda: response.json().get("retry_after"), lambda: response.headers.get("Retry-After")):
        try:
            return float(read())
        except (ValueError, TypeError, AttributeError):
            continue
    return 1.0


def _short_reason(response: requests.Response) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return f"({str(message)[:120]})" if message else f"({response.reason})" if response.reason else ""
