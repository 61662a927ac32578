"""What a message says, apart from how any channel shows it: one Event per thing worth telling someone.

An event is a plain value (no markup, no channel): the kind of news, the database, the run and backup it
concerns, sizes and durations, the error, a link. Channels (channel.py and one module per channel) render it
their own way; a sender may hand a channel several events at once (one message about one incident).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class EventKind(StrEnum):
    FAILURE = "failure"  # a run failed
    SUCCESS = "success"  # a backup was stored (and verified)
    HEALTH_WARNING = "health_warning"  # stored and verified, but it looks wrong next to the previous one
    RETENTION_REFUSED = "retention_refused"  # retention deleted nothing: it would have deleted too much
    STALE = "stale"  # the dead-man's switch: no verified backup within the freshness window
    RECOVERED = "recovered"  # backups are fresh again after a stale alert
    INCIDENT = "incident"  # several databases failed for one cause (a server unreachable, storage failing)
    INCIDENT_OVER = "incident_over"  # every database of an incident has a backup again
    DATABASES_GONE = "databases_gone"  # an enrolled server no longer has some databases: no more backups of them


class Severity(StrEnum):
    """How bad the news is: channels that have levels (apprise's notify types, colours) map it to theirs."""

    ERROR = "error"
    WARNING = "warning"
    OK = "ok"


SEVERITY = {
    EventKind.FAILURE: Severity.ERROR,
    EventKind.STALE: Severity.ERROR,
    EventKind.HEALTH_WARNING: Severity.WARNING,
    EventKind.RETENTION_REFUSED: Severity.WARNING,
    EventKind.SUCCESS: Severity.OK,
    EventKind.RECOVERED: Severity.OK,
    EventKind.INCIDENT: Severity.ERROR,
    EventKind.INCIDENT_OVER: Severity.OK,
    EventKind.DATABASES_GONE: Severity.WARNING,
}


@dataclass(frozen=True)
class RunFacts:
    """Which run an event is about: its job, database and backup."""

    job: str
    run_id: str
    run_url: str | None  # None: no Dagster UI is known, so the message has no link
    kind: str = "other"  # backup, verify, prune, restore, request or other
    database: str | None = None
    backup_name: str | None = None
    backup_type: str | None = None
    target_db: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class RunError:
    """Why a run failed: the message, and the class name of the error when the run recorded it."""

    message: str
    error_class: str | None = None


@dataclass(frozen=True)
class BackupFacts:
    """A completed backup: what was stored and whether it was proven to restore."""

    file_name: str | None = None
    size_bytes: int | None = None
    duration_s: float | None = None
    verified: bool = False
    rows: int | None = None


@dataclass(frozen=True)
class FreshnessFacts:
    """The dead-man's switch's view of one database."""

    limit_hours: float
    newest_name: str | None = None
    newest_at: datetime | None = None
    age_hours: float | None = None
    problem: str | None = None  # storage could not be listed
    ignored_future: tuple[str, ...] = ()  # verified backups stamped in the future (a skewed clock)


@dataclass(frozen=True)
class IncidentFacts:
    """Failures that share a cause: what it is, where (a server's host:port, or the storage), which databases."""

    cause: str
    where: str
    databases: tuple[str, ...]
    error: str = ""  # the first failure's error line


@dataclass(frozen=True)
class Event:
    kind: EventKind
    database: str | None = None  # the database's own name (never its URL)
    database_key: str | None = None  # its key in the configuration: which channels it goes to
    run: RunFacts | None = None
    error: RunError | None = None
    backup: BackupFacts | None = None
    freshness: FreshnessFacts | None = None
    failed_checks: tuple[tuple[str, str], ...] = ()  # health checks: (name, description)
    link: str | None = None  # where to look (a run, or an asset when there is no run)
    incident: IncidentFacts | None = None

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.kind]

    @classmethod
    def failure(cls, run: RunFacts, error: RunError, database_key: str | None = None) -> Event:
        """A failed run; a prune that retention's safety checks refused is news of its own kind."""
        refused = run.kind == "prune" and error.error_class == "RetentionRefused"
        kind = EventKind.RETENTION_REFUSED if refused else EventKind.FAILURE
        return cls(kind, run.database, database_key, run=run, error=error, link=run.run_url)

    @classmethod
    def success(cls, run: RunFacts, backup: BackupFacts, database_key: str | None = None) -> Event:
        return cls(EventKind.SUCCESS, run.database, database_key, run=run, backup=backup, link=run.run_url)

    @classmethod
    def health_warning(cls, run: RunFacts, failed: list[tuple[str, str]], database_key: str | None = None) -> Event:
        return cls(
            EventKind.HEALTH_WARNING, run.database, database_key, run=run, failed_checks=tuple(failed), link=run.run_url
        )

    @classmethod
    def stale(cls, database: str, freshness: FreshnessFacts, link: str | None, database_key: str | None) -> Event:
        return cls(EventKind.STALE, database, database_key, freshness=freshness, link=link)

    @classmethod
    def recovered(cls, database: str, freshness: FreshnessFacts, link: str | None, database_key: str | None) -> Event:
        return cls(EventKind.RECOVERED, database, database_key, freshness=freshness, link=link)


def incident_event(incident: IncidentFacts, over: bool = False) -> Event:
    """One message about an incident's databases (its start, or, `over`, their recovery)."""
    return Event(EventKind.INCIDENT_OVER if over else EventKind.INCIDENT, incident=incident)


def databases_gone_event(server: str, names: tuple[str, ...]) -> Event:
    """An enrolled server (`server`: its key and address) no longer has the databases `names`."""
    return Event(EventKind.DATABASES_GONE, incident=IncidentFacts("databases went away", server, tuple(names)))


def first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""
