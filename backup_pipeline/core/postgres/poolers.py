"""Connection poolers in front of a server: one that hands each transaction to any server session (PgBouncer,
PgCat or Supavisor in transaction mode) is recognised by behaviour and refused with the direct connection to use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from backup_pipeline.core.errors import ConfigurationError

if TYPE_CHECKING:
    from backup_pipeline.core.postgres.target import PostgresTarget

# Per server (conninfo without password): whether a pooler in front of it shares server sessions.
_POOLER_VERDICTS: dict[str, bool] = {}
# How long a session of its own answers at most while another client holds a transaction (a pooler's shared
# session waits until that transaction ends).
POOLER_PROBE_WAIT_S = 3.0
POOLER_PROBE_CLIENTS = 2


def _shares_sessions(conn, connect: Callable[[], object]) -> bool:
    """Whether `conn`, which came through a pooler, shares its server session with other clients.

    Other clients open a transaction each, which pins a server session to them for as long as it lasts. In
    session mode `conn` keeps its own server session throughout: no other client is ever given it, and `conn`
    answers from it at once. In transaction mode a pooler hands the session `conn` just used to the next client
    (PgBouncer reuses the latest idle one first), and `conn`'s next statement runs on another session, or waits.
    """
    import threading

    own = _backend_pid(conn)
    others = []
    try:
        for _ in range(POOLER_PROBE_CLIENTS):
            other = connect()
            others.append(other)
            if _backend_pid(other) == own:
                return True  # our session was given to another client
            answer: dict[str, int] = {}

            def ask(into=answer) -> None:
                into["pid"] = _backend_pid(conn)

            asking = threading.Thread(target=ask, daemon=True)
            asking.start()
            asking.join(POOLER_PROBE_WAIT_S)
            if asking.is_alive():  # waiting for a server session: it has none of its own
                for client in others:
                    client.close()
                asking.join()
                return True
            if answer["pid"] != own:
                return True
        return False
    finally:
        for client in others:
            with contextlib.suppress(Exception):
                client.close()


def _backend_pid(conn) -> int:
    """The server process serving `conn` now, asked in a transaction of its own whose statement_timeout is off
    (the role's may be tiny, and this runs before the session's settings): SET LOCAL ends with the transaction,
    so nothing is left on a server session that a pooler may hand to another client. An open transaction (not
    autocommit) keeps the setting for the rest of it."""
    if not conn.autocommit:
        conn.execute("SET LOCAL statement_timeout = 0")
        return conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    cursor = conn.execute("BEGIN; SET LOCAL statement_timeout = 0; SELECT pg_backend_pid(); COMMIT")
    while cursor.description is None and cursor.nextset():
        pass
    return cursor.fetchone()[0]


# Where managed services' transaction poolers listen, and their direct connection, for the refusal's message.
def direct_connection_hint(host: str, port: int) -> str:
    if "-pooler" in host:
        return f"Neon: the endpoint's host without -pooler ({host.replace('-pooler', '', 1)})"
    if "supabase" in host or port == 6543:
        return "Supabase: the direct connection, db.<project>.supabase.co port 5432 (or the session pooler, port 5432)"
    if "ondigitalocean.com" in host or port == 25061:
        return "DigitalOcean: the cluster's own port, 25060, and database, not a connection pool's (port 25061)"
    return "the PostgreSQL server's own host and port, or a pool in session mode"


def refuse_transaction_pooler(target: PostgresTarget, conn) -> None:
    """Refuses a pooler that hands each transaction to any server session (PgBouncer, PgCat or Supavisor in
    transaction mode): the dump's exported snapshot, the locks and the session's settings need one session.

    A direct session announces its own process id at login; a pooler announces one of its own. Only then is
    the pooler's mode probed (once per process and server), by behaviour: see _shares_sessions.
    """
    if _backend_pid(conn) == conn.info.backend_pid:
        return
    key = target.conninfo_without_password()
    if key not in _POOLER_VERDICTS:
        _POOLER_VERDICTS[key] = _shares_sessions(conn, lambda: target.raw_connection())
    if _POOLER_VERDICTS[key]:
        raise ConfigurationError(
            f"{target.source_env} reaches a connection pooler in transaction mode at {target.server} (each "
            "transaction may run on another server session), which this tool cannot work through: pg_dump's "
            "snapshot, the row counts and the locks must stay on one session. Use the database's direct "
            f"connection instead: {direct_connection_hint(target.host, target.port)}. Nothing was done"
        )
