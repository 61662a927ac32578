"""Advisory locks of this project (keyed by name, under a class of their own), held in a transaction kept open so
neither a server's idle timeouts nor a pooler can free them while their holder works.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from backup_pipeline.core.postgres.clients import TRANSACTION_TIMEOUT_SINCE
from backup_pipeline.core.postgres.target import PostgresTarget

# First half of the two-key advisory locks this project takes, so they cannot meet an application's own.
ADVISORY_LOCK_CLASS = 0x42_50_42_4B  # "BPBK"


def advisory_key(name: str) -> int:
    """The second half of the advisory lock keyed by `name` (a signed 32-bit number)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(target: PostgresTarget, name: str) -> Iterator[bool]:
    """Tries an advisory lock keyed by `name` in `target`'s database; yields whether it was obtained.

    Held until the block ends, also when the process dies, so it never goes stale. It is a transaction's lock in
    a transaction kept open for the whole block: an idle session is ended by a server's idle_session_timeout,
    and a pooler in transaction mode (pgbouncer) hands an idle session's server connection to others and may
    close it, either of which would free the lock while its holder still works (and a sweep would then take
    the holder's unfinished upload for abandoned). An open transaction pins its server connection, and the
    timeouts that end one are switched off for it; it holds no snapshot between statements, so vacuum is not
    held back.
    """
    with lock_holding_transaction(target.connect()) as conn:
        yield bool(
            conn.execute(
                "SELECT pg_try_advisory_xact_lock(%s, %s)", (ADVISORY_LOCK_CLASS, advisory_key(name))
            ).fetchone()[0]
        )


@contextlib.contextmanager
def lock_holding_transaction(conn) -> Iterator[object]:
    """`conn` in a transaction kept open until the block ends (then closed), for transaction-level advisory
    locks: the timeouts that would end an idle transaction are switched off for it."""
    try:
        with conn.transaction():
            conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            if conn.info.server_version >= TRANSACTION_TIMEOUT_SINCE * 10000:
                conn.execute("SET LOCAL transaction_timeout = 0")
            yield conn
    finally:
        conn.close()


def held_advisory_locks(conn, names) -> set[str]:
    """Which of `names` some session on the server holds as our advisory lock, in any database (pg_locks is
    server-wide and readable by every role)."""
    wanted = {advisory_key(name) & 0xFFFFFFFF: name for name in names}
    if not wanted:
        return set()
    rows = conn.execute(
        "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND granted "
        "AND classid::bigint = %s",
        (ADVISORY_LOCK_CLASS,),
    ).fetchall()
    return {wanted[row[0]] for row in rows if row[0] in wanted}
