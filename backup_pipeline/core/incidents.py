"""One alert per incident: backup failures that share a cause are told as one message, and their recovery as one.

When a server is down at 06:00, every one of its databases fails for the same reason; when storage refuses
writes, every backup does. Those failures are grouped by their cause class and where it happened (the
server's host:port, or the storage), over a window that opens with the first failure: when it closes, one
message lists the databases (a lone failure keeps its own message). A database failing later for the same
cause joins the open incident silently. Once every database of a grouped incident has had a successful backup
again, one recovery message lists them and the incident closes.

Pure functions over plain values: the state is a JSON-able dict (a sensor keeps it in its cursor), what to
tell is returned as Post values for the caller to turn into events (core/notify) and send.
"""

from __future__ import annotations

from dataclasses import dataclass

from backup_pipeline.core.notify.events import IncidentFacts

SERVER_UNREACHABLE = "server unreachable"
STORAGE_FAILING = "storage failing"

# What libpq and our own messages say when a server cannot be reached (down, restarting, firewalled).
_UNREACHABLE_SIGNS = (
    "connection refused",
    "could not connect",
    "connection to server at",
    "timeout expired",
    "no route to host",
    "could not translate host name",
    "server closed the connection unexpectedly",
    "the database system is starting up",
    "the database system is shutting down",
)
_STORAGE_WORDS = ("bucket", "storage", "endpoint", "local folder")
_STORAGE_FAULTS = (
    "cannot reach",
    "could not connect",
    "denied",
    "forbidden",
    "timed out",
    "no space left",
    "read-only",
    "unavailable",
    " 500",
    " 503",
)


def cause_of(message: str) -> str | None:
    """The cause class of a backup failure, when it is one that several databases share; else None."""
    text = message.lower()
    if any(sign in text for sign in _UNREACHABLE_SIGNS):
        return SERVER_UNREACHABLE
    if any(word in text for word in _STORAGE_WORDS) and any(fault in text for fault in _STORAGE_FAULTS):
        return STORAGE_FAILING
    return None


@dataclass(frozen=True)
class Outcome:
    """How one backup run of one database ended."""

    database: str  # shown name
    ok: bool
    at: float  # when it ended (Unix time)
    cause: str | None = None  # cause_of the failure
    where: str = ""  # the server (host:port) or the storage it concerned
    error: str = ""  # the failure's error line
    run_id: str = ""  # the failed run, told of on its own when its failure stays alone
    key: str = ""  # the database's key, for a run that backed up several (a batch)


@dataclass(frozen=True)
class Post:
    """One message to send: a lone failure (its run's own message), or an incident or its end."""

    run_id: str = ""  # a lone failure
    key: str = ""  # the database of the lone failure, in a run that backed up several
    incident: IncidentFacts | None = None
    over: bool = False


def step(state: dict, outcomes: list[Outcome], now: float, window_s: float) -> tuple[dict, list[Post]]:
    """The incidents after `outcomes` (oldest first) at time `now`, and what to tell."""
    incidents = [dict(incident, failed=dict(incident["failed"])) for incident in state.get("incidents", [])]
    posts = []
    for outcome in outcomes:
        if outcome.ok:
            posts += _recovered(incidents, outcome)
        elif outcome.cause:
            _failed(incidents, outcome)
    for incident in incidents:
        if not incident["posted"] and now - incident["opened"] >= window_s:
            incident["posted"] = True
            names = sorted(incident["failed"])
            lone = Post(run_id=incident["run_id"], key=incident.get("key", ""))
            posts.append(lone if len(names) == 1 else Post(incident=facts(incident, names)))
    closed = [i for i in incidents if i["posted"] and set(i["failed"]) <= set(i["recovered"])]
    return {"incidents": [i for i in incidents if i not in closed]}, posts


def _failed(incidents: list[dict], outcome: Outcome) -> None:
    for incident in incidents:
        if (incident["cause"], incident["where"]) == (outcome.cause, outcome.where):
            incident["failed"][outcome.database] = outcome.at
            incident["recovered"] = [name for name in incident["recovered"] if name != outcome.database]
            return
    incidents.append(
        {
            "cause": outcome.cause,
            "where": outcome.where,
            "opened": outcome.at,
            "posted": False,
            "failed": {outcome.database: outcome.at},
            "recovered": [],
            "error": outcome.error,
            "run_id": outcome.run_id,
            "key": outcome.key,
        }
    )


def _recovered(incidents: list[dict], outcome: Outcome) -> list[Post]:
    posts = []
    for incident in incidents:
        failed_at = incident["failed"].get(outcome.database)
        if failed_at is None or outcome.at < failed_at or outcome.database in incident["recovered"]:
            continue
        incident["recovered"] = [*incident["recovered"], outcome.database]
        if incident["posted"] and set(incident["failed"]) <= set(incident["recovered"]) and len(incident["failed"]) > 1:
            posts.append(Post(incident=facts(incident, sorted(incident["failed"])), over=True))
    return posts


def facts(incident: dict, names: list[str]) -> IncidentFacts:
    return IncidentFacts(incident["cause"], incident["where"], tuple(names), incident.get("error", ""))
