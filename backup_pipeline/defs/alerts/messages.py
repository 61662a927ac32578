"""What the alerts say, and the redaction every message passes through before it leaves.

Our own error messages carry no secrets by design; redaction is the second line of defence for text we do
not control (a library's exception that quotes a connection string, a crashed run's error).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from backup_pipeline.core.config import Settings
from backup_pipeline.core.prune import RetentionRefused
from backup_pipeline.core.streams import human_bytes
from backup_pipeline.defs.run_lifecycle import RunError

MASK = "***"
# Shorter values would mask ordinary words all over a message; no real secret is that short.
MIN_SECRET_CHARS = 4
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


@dataclass(frozen=True)
class RunFacts:
    """What a message says about a run: which job, database and backup it concerned."""

    job: str
    run_id: str
    run_url: str | None  # None: no Dagster UI is known, so the message has no link
    kind: str = "other"  # backup, verify, prune, restore, request or other
    database: str | None = None
    backup_name: str | None = None
    backup_type: str | None = None
    target_db: str | None = None
    label: str | None = None


_FAILURE_HEADLINES = {
    "backup": "Database backup failed",
    "verify": "Backup verification failed",
    "prune": "Backup retention failed",
    "restore": "Database restore failed",
    "request": "Backup request failed",
}


def first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def health_warning(facts: RunFacts, failed: list[tuple[str, str]]) -> str:
    """A backup that was stored and verified but looks wrong next to the previous one (core/health.py)."""
    lines = [
        ":warning: **Backup health warning**"
        + (f" (`{facts.database}`)" if facts.database else "")
        + ": the backup was stored, but compared with the previous verified backup:"
    ]
    if facts.backup_name:
        lines.append(f"Backup: `{facts.backup_name}`" + (f" ({facts.backup_type})" if facts.backup_type else ""))
    lines += [f"- {check}: {first_line(description)}" for check, description in failed]
    lines.append("Retention keeps the last good backup before it until this one is gone.")
    if facts.run_url:
        lines.append(f"Logs: {facts.run_url}")
    return "\n".join(lines)


def failure_text(facts: RunFacts, error: RunError) -> str:
    error_line = first_line(error.message) or "no error message was recorded (see the run's logs)"
    if facts.kind == "prune" and error.error_class == RetentionRefused.__name__:
        lines = [f":warning: **Retention refused to prune** `{facts.database or facts.job}`: nothing was deleted"]
    else:
        headline = _FAILURE_HEADLINES.get(facts.kind, "Dagster run failed")
        lines = [f":x: **{headline}**" + (f" (`{facts.database}`)" if facts.database else "")]
    lines.append(f"Job: `{facts.job}`")
    if facts.backup_name:
        lines.append(f"Backup: `{facts.backup_name}`" + (f" ({facts.backup_type})" if facts.backup_type else ""))
    if facts.label:
        lines.append(f"Label: `{facts.label}`")
    if facts.target_db:
        lines.append(f"Target database: `{facts.target_db}`")
    lines.append(f"Error: {error_line}")
    if facts.run_url:
        lines.append(f"Logs: {facts.run_url}")
    return "\n".join(lines)


def success_text(
    facts: RunFacts,
    file_name: str | None,
    size_bytes: int | None,
    duration_s: float | None,
    verified: bool,
    rows: int | None = None,
) -> str:
    lines = [":white_check_mark: **Database backup complete**" + (f" (`{facts.database}`)" if facts.database else "")]
    lines.append(f"Type: {facts.backup_type or 'unknown'}")
    if facts.label:
        lines.append(f"Label: `{facts.label}`")
    lines.append(f"File: `{file_name or facts.backup_name or 'unknown'}`")
    if size_bytes is not None:
        lines.append(f"Size: {human_bytes(size_bytes)}")
    if duration_s is not None:
        lines.append(f"Duration: {duration_s:.1f} s")
    if verified:
        rows_text = f", {rows:,} rows match the dump" if rows is not None else ""
        lines.append(f"Verified: yes (restored into a scratch database{rows_text})")
    else:
        lines.append("Verified: no")
    if facts.run_url:
        lines.append(f"Run: {facts.run_url}")
    return "\n".join(lines)


def stale_text(
    database: str,
    limit_hours: float,
    newest_name: str | None,
    newest_at: datetime | None,
    age_hours: float | None,
    problem: str | None,
    link: str | None,
    ignored_future: tuple[str, ...] = (),
) -> str:
    lines = [f":rotating_light: **No verified backup of `{database}` in the last {limit_hours:g} hours**"]
    if problem:
        lines.append(f"Could not check: {first_line(problem)}")
    elif newest_name and newest_at is not None and age_hours is not None:
        lines.append(f"Newest verified backup: `{newest_name}` ({newest_at:%Y-%m-%d %H:%M} UTC, {age_hours:.1f} h old)")
    else:
        lines.append("There is no verified backup at all.")
    if ignored_future:
        lines.append(
            f"Ignored {len(ignored_future)} backup(s) stamped in the future (clock skew?): `{ignored_future[0]}`"
            + (" …" if len(ignored_future) > 1 else "")
        )
    lines.append("Check the daily schedule and the latest backup_job runs; this alert repeats while it lasts.")
    if link:
        lines.append(f"Details: {link}")
    return "\n".join(lines)


def fresh_again_text(database: str, newest_name: str, age_hours: float, link: str | None) -> str:
    text = (
        f":white_check_mark: **Backups of `{database}` are fresh again**: `{newest_name}` was verified "
        f"({age_hours:.1f} h old)"
    )
    return f"{text}\nDetails: {link}" if link else text
