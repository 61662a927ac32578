"""The words of every message, written once: each channel supplies its markup (Discord's markdown and emoji,
plain text for e-mail and SMS) and gets a headline and the lines below it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from backup_pipeline.core.notify.events import Event, EventKind, first_line
from backup_pipeline.core.streams import human_bytes

_FAILURE_HEADLINES = {
    "backup": "Database backup failed",
    "verify": "Backup verification failed",
    "prune": "Backup retention failed",
    "restore": "Database restore failed",
    "request": "Backup request failed",
}


@dataclass(frozen=True)
class Markup:
    """How a channel marks up text: an icon per event kind, strong text and literal names."""

    icon: Callable[[EventKind], str] = lambda kind: ""
    strong: Callable[[str], str] = lambda text: text
    code: Callable[[str], str] = lambda text: text


PLAIN = Markup()


@dataclass(frozen=True)
class Rendered:
    headline: str  # one line: a title where the channel has one
    lines: tuple[str, ...]  # the rest

    def text(self) -> str:
        return "\n".join((self.headline, *self.lines))


def render(event: Event, markup: Markup = PLAIN) -> Rendered:
    lines = _WRITERS[event.kind](event, markup)
    return Rendered(lines[0], tuple(lines[1:]))


def _prefix(event: Event, markup: Markup, headline: str) -> str:
    icon = markup.icon(event.kind)
    return f"{icon} {markup.strong(headline)}" if icon else markup.strong(headline)


def _of_database(event: Event, markup: Markup) -> str:
    return f" ({markup.code(event.database)})" if event.database else ""


def _backup_line(event: Event, markup: Markup) -> list[str]:
    run = event.run
    if run is None or not run.backup_name:
        return []
    return [f"Backup: {markup.code(run.backup_name)}" + (f" ({run.backup_type})" if run.backup_type else "")]


def _failure(event: Event, markup: Markup) -> list[str]:
    run, error = event.run, event.error
    error_line = first_line(error.message if error else "") or "no error message was recorded (see the run's logs)"
    if event.kind == EventKind.RETENTION_REFUSED:
        subject = markup.code(event.database or run.job)
        lines = [f"{_prefix(event, markup, 'Retention refused to prune')} {subject}: nothing was deleted"]
    else:
        headline = _FAILURE_HEADLINES.get(run.kind, "Dagster run failed")
        lines = [_prefix(event, markup, headline) + _of_database(event, markup)]
    lines.append(f"Job: {markup.code(run.job)}")
    lines += _backup_line(event, markup)
    if run.label:
        lines.append(f"Label: {markup.code(run.label)}")
    if run.target_db:
        lines.append(f"Target database: {markup.code(run.target_db)}")
    lines.append(f"Error: {error_line}")
    if event.link:
        lines.append(f"Logs: {event.link}")
    return lines


def _health_warning(event: Event, markup: Markup) -> list[str]:
    lines = [
        _prefix(event, markup, "Backup health warning")
        + _of_database(event, markup)
        + ": the backup was stored, but compared with the previous verified backup:"
    ]
    lines += _backup_line(event, markup)
    lines += [f"- {check}: {first_line(description)}" for check, description in event.failed_checks]
    lines.append("Retention keeps the last good backup before it until this one is gone.")
    if event.link:
        lines.append(f"Logs: {event.link}")
    return lines


def _success(event: Event, markup: Markup) -> list[str]:
    run, backup = event.run, event.backup
    lines = [_prefix(event, markup, "Database backup complete") + _of_database(event, markup)]
    lines.append(f"Type: {run.backup_type or 'unknown'}")
    if run.label:
        lines.append(f"Label: {markup.code(run.label)}")
    lines.append(f"File: {markup.code(backup.file_name or run.backup_name or 'unknown')}")
    if backup.size_bytes is not None:
        lines.append(f"Size: {human_bytes(backup.size_bytes)}")
    if backup.duration_s is not None:
        lines.append(f"Duration: {backup.duration_s:.1f} s")
    if backup.verified:
        rows_text = f", {backup.rows:,} rows match the dump" if backup.rows is not None else ""
        lines.append(f"Verified: yes (restored into a scratch database{rows_text})")
    else:
        lines.append("Verified: no")
    if event.link:
        lines.append(f"Run: {event.link}")
    return lines


def _stale(event: Event, markup: Markup) -> list[str]:
    f = event.freshness
    headline = f"No verified backup of {markup.code(event.database)} in the last {f.limit_hours:g} hours"
    lines = [_prefix(event, markup, headline)]
    if f.problem:
        lines.append(f"Could not check: {first_line(f.problem)}")
    elif f.newest_name and f.newest_at is not None and f.age_hours is not None:
        lines.append(
            f"Newest verified backup: {markup.code(f.newest_name)} "
            f"({f.newest_at:%Y-%m-%d %H:%M} UTC, {f.age_hours:.1f} h old)"
        )
    else:
        lines.append("There is no verified backup at all.")
    if f.ignored_future:
        lines.append(
            f"Ignored {len(f.ignored_future)} backup(s) stamped in the future (clock skew?): "
            f"{markup.code(f.ignored_future[0])}" + (" …" if len(f.ignored_future) > 1 else "")
        )
    lines.append("Check the daily schedule and the latest backup_job runs; this alert repeats while it lasts.")
    if event.link:
        lines.append(f"Details: {event.link}")
    return lines


def _recovered(event: Event, markup: Markup) -> list[str]:
    f = event.freshness
    headline = _prefix(event, markup, f"Backups of {markup.code(event.database)} are fresh again")
    lines = [f"{headline}: {markup.code(f.newest_name or '')} was verified ({(f.age_hours or 0):.1f} h old)"]
    if event.link:
        lines.append(f"Details: {event.link}")
    return lines


def _listed(names, markup: Markup) -> str:
    return ", ".join(markup.code(name) for name in names)


def _incident(event: Event, markup: Markup) -> list[str]:
    i = event.incident
    lines = [_prefix(event, markup, f"{len(i.databases)} backups failed: {i.cause}") + f" ({i.where})"]
    lines.append(f"Databases: {_listed(i.databases, markup)}")
    lines.append(f"Error: {first_line(i.error) or 'see the runs'}")
    lines.append("One message for them all; another follows when every one of them has a backup again.")
    return lines


def _incident_over(event: Event, markup: Markup) -> list[str]:
    i = event.incident
    return [
        _prefix(event, markup, f"Recovered: {i.cause}") + f" ({i.where})",
        f"Every database of the incident has a backup again: {_listed(i.databases, markup)}",
    ]


def _databases_gone(event: Event, markup: Markup) -> list[str]:
    i = event.incident
    them = "it" if len(i.databases) == 1 else "them"
    return [
        _prefix(event, markup, f"Server {i.where} no longer has {_listed(i.databases, markup)}"),
        f"No more backups are taken of {them}. The stored backups stay where they are (nothing is deleted because "
        "a database went away); list such a database under databases: to prune them by its retention.",
    ]


_WRITERS = {
    EventKind.FAILURE: _failure,
    EventKind.RETENTION_REFUSED: _failure,
    EventKind.HEALTH_WARNING: _health_warning,
    EventKind.SUCCESS: _success,
    EventKind.STALE: _stale,
    EventKind.RECOVERED: _recovered,
    EventKind.INCIDENT: _incident,
    EventKind.INCIDENT_OVER: _incident_over,
    EventKind.DATABASES_GONE: _databases_gone,
}
