"""Which server a database lives on, and how a night's backups of many databases are split into runs.

The server key (`host:port`, from the database's URL, never its user or password) is the one notion of "a
server" here: the connection budget (at most `server_max_runs` backup runs at once against one server), the
run tags the queue limits by, and the batches of a scheduled night all key on it.

A night's backups are planned as batches: the databases of one server, a few to a run, each batch in one of
the server's lanes (lane k of a server with a budget of N, 0 ≤ k < N). The run queue lets one run per lane
through at a time, so a server never has more than N of our runs at once. With a jitter window the batches
start spread over it instead of all at the tick.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from backup_pipeline.core.config import DatabaseSettings

UNKNOWN_SERVER = "unknown"
DEFAULT_PORT = "5432"


def server_key(url: str | None) -> str:
    """`host:port` of a libpq URL (the first host of a list), or "unknown" when it is unset or unreadable."""
    if not url:
        return UNKNOWN_SERVER
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception:  # its message may quote the URL, password included: say nothing of it here
        return UNKNOWN_SERVER
    host = str(params.get("host") or params.get("hostaddr") or "localhost").split(",")[0].lower()
    port = str(params.get("port") or DEFAULT_PORT).split(",")[0]
    return f"{host}:{port}"


def database_server(db: DatabaseSettings, environ: Mapping[str, str] | None = None) -> str:
    return server_key((os.environ if environ is None else environ).get(db.url_env))


def lane_name(server: str, lane: int) -> str:
    """The value of a run's lane tag: one run per lane at a time (the instance's tag concurrency limit)."""
    return f"{server}#{lane}"


def server_budget(databases: Iterable[DatabaseSettings]) -> int:
    """Runs allowed at once against a server: the smallest budget any of its databases gives."""
    return min(db.server_max_runs for db in databases)


@dataclass(frozen=True)
class Batch:
    server: str
    lane: int
    keys: tuple[str, ...]
    delay_s: float  # after the tick: the batch's place in the jitter window

    @property
    def lane_name(self) -> str:
        return lane_name(self.server, self.lane)


def plan_batches(databases: Iterable[DatabaseSettings], environ: Mapping[str, str] | None = None) -> list[Batch]:
    """The night's runs: each server's databases (by key) in batches of up to its batch_size, spread evenly
    over the server's jitter window (the largest any of its databases asks for), dealt round its lanes.

    Each run pays one process start and load of the code location (seconds of CPU) for its whole batch
    instead of one per database; a database that hangs delays the rest of its batch by at most its stall
    watchdog (stall_seconds), so batches stay small (10 by default)."""
    by_server: dict[str, list[DatabaseSettings]] = defaultdict(list)
    for db in databases:
        by_server[database_server(db, environ)].append(db)
    batches = []
    for server, dbs in sorted(by_server.items()):
        dbs.sort(key=lambda db: db.key)
        budget = server_budget(dbs)
        window_s = max(db.schedule_jitter_minutes for db in dbs) * 60
        batch_size = min(db.batch_size for db in dbs)
        for number, start in enumerate(range(0, len(dbs), batch_size)):
            members = dbs[start : start + batch_size]
            batches.append(
                Batch(
                    server=server,
                    lane=number % budget,
                    keys=tuple(db.key for db in members),
                    delay_s=window_s * start / len(dbs),
                )
            )
    return batches
