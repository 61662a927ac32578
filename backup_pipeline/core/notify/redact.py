"""The redaction every message, log line and metadata value about notifications passes through.

Our own error messages carry no secrets by design; redaction is the second line of defence for text we do
not control (a library's exception that quotes a connection string, a crashed run's error, a notification
service's answer quoting its URL). Notification and heartbeat URLs are secrets whole: apprise URLs carry
tokens in any part (a Telegram bot token is the "host" of tgram://), a healthchecks.io ping URL's UUID is
its only credential.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from backup_pipeline.core.config import Settings

MASK = "***"
# Shorter values would mask ordinary words all over a message; no real secret is that short.
MIN_SECRET_CHARS = 4
# A part of a notification URL this long is masked wherever it appears (tokens, keys, UUIDs, passwords).
MIN_URL_PART_CHARS = 8
ALWAYS_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "DO_SPACES_SECRET",
    "PGPASSWORD",
    "DISCORD_BOT_TOKEN",
    "DISCORD_WEBHOOK_URL",
    "BACKUP_ENCRYPTION_KEY",
)

_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE)
_KEYWORD_SECRET = re.compile(
    r"\b(password|passwd|secret|token|secret_access_key|aws_secret_access_key)(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)",
    re.IGNORECASE,
)
_WEBHOOK_TOKEN = re.compile(r"(/webhooks/\d+/)[\w-]+")
_BOT_TOKEN = re.compile(r"\b(Bot\s+)[\w.-]{20,}")
# Host names and addresses are not secrets, and masking one would garble messages naming a server.
_HOST_NAME = re.compile(r"^(localhost|[\w-]+(\.[\w-]+)+)$")


def url_secrets(url: str | None) -> list[str]:
    """The values to mask for a URL that is a secret: the URL itself and each long part of it (with its
    query, as apprise and services echo parts of it), except host names."""
    if not url:
        return []
    _, _, rest = url.partition("://")
    parts = [part for part in re.split(r"[/@:?&=#,]", rest) if len(part) >= MIN_URL_PART_CHARS]
    return [url, rest, *(part for part in parts if not _HOST_NAME.match(part))]


class Redactor:
    """Masks known secret values and anything shaped like a credential."""

    def __init__(self, secrets: Iterable[str]):
        values = {s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}
        values |= {quote(s, safe="") for s in values}
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted(values, key=len, reverse=True)

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> Redactor:
        env = os.environ if environ is None else environ
        names = set(ALWAYS_SECRET_ENV)
        names |= set(settings.storage.secret_variables())
        names |= {n for n in (settings.discord.webhook_url_env, settings.discord.bot_token_env) if n}
        secrets = [env.get(n, "") for n in names]
        for db in settings.databases:
            for url_env in (db.url_env, db.verify_url_env):
                secrets.append(_password_of(env.get(url_env) if url_env else None))
            for url in (*db.notify_urls, db.heartbeat_url, db.metrics_pushgateway_url):
                secrets += url_secrets(url)
        return cls(secrets)

    @classmethod
    def for_database(cls, db, environ: Mapping[str, str] | None = None) -> Redactor:
        """Redaction for what one database's run sends out (its heartbeat): the database's own secrets and
        the deployment-wide ones, without the whole configuration at hand."""
        env = os.environ if environ is None else environ
        secrets = [env.get(n, "") for n in ALWAYS_SECRET_ENV]
        for url_env in (db.url_env, db.verify_url_env):
            secrets.append(_password_of(env.get(url_env) if url_env else None))
        for url in (*db.notify_urls, db.heartbeat_url, db.metrics_pushgateway_url):
            secrets += url_secrets(url)
        return cls(secrets)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        text = _URL_PASSWORD.sub(rf"\1{MASK}@", text)
        text = _KEYWORD_SECRET.sub(rf"\1\2{MASK}", text)
        text = _WEBHOOK_TOKEN.sub(rf"\1{MASK}", text)
        return _BOT_TOKEN.sub(rf"\1{MASK}", text)


def _password_of(url: str | None) -> str:
    if not url:
        return ""
    from backup_pipeline.core.errors import BackupError
    from backup_pipeline.core.postgres import PostgresTarget

    try:
        return PostgresTarget.from_url(url).password or ""
    except BackupError:
        return ""
