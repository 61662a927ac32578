"""Sessions of ours on a database: the exported snapshot a dump reads, and the sessions a client tool opened,
named so that a watchdog can say what they wait for and cancel them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from backup_pipeline.core.postgres.target import PostgresTarget


@contextlib.contextmanager
def exported_snapshot(target: PostgresTarget) -> Iterator[tuple[str, object]]:
    """A REPEATABLE READ transaction kept open, with its snapshot exported for `pg_dump --snapshot`."""
    conn = target.connect(autocommit=False)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        yield snapshot, conn
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()
        conn.close()


def tagged_sessions(target: PostgresTarget, tag: str) -> PostgresTarget:
    """`target` with its sessions named `tag` (application_name), so that a watchdog can find the sessions a
    client tool (pg_dump, pg_restore) opened and see what they wait for."""
    return PostgresTarget(params={**target.params, "application_name": tag}, source_env=target.source_env)


def session_tag(purpose: str) -> str:
    import secrets

    return f"backup_pipeline {purpose} {secrets.token_hex(4)}"


def sessions_named(conn, tag: str) -> list[int]:
    """The backends of sessions named `tag` (see tagged_sessions)."""
    return [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (tag,))]


def lock_waits(conn, pids) -> list[str]:
    """What each of `pids` waits for right now, when it waits for a lock: the object, the mode it asked for and
    the sessions holding it back (pid, user and query, where this role may see them). Empty when none waits."""
    pids = [int(p) for p in pids if p]
    if not pids:
        return []
    rows = conn.execute(
        """
        SELECT w.pid, pg_blocking_pids(w.pid), l.relation::regclass::text, l.locktype, l.mode
        FROM pg_stat_activity w
        LEFT JOIN LATERAL (SELECT * FROM pg_locks l WHERE l.pid = w.pid AND NOT l.granted LIMIT 1) l ON true
        WHERE w.pid = ANY(%s) AND w.wait_event_type = 'Lock'
        """,
        (pids,),
    ).fetchall()
    waits = []
    for _pid, blockers, relation, locktype, mode in rows:
        what = (
            f"a lock on {relation}"
            if relation
            else f"{'an' if (locktype or 'x')[0] in 'aeiou' else 'a'} {locktype} lock"
        )
        holders = [_describe_session(conn, blocker) for blocker in blockers or []]
        waits.append(f"{what} ({mode}) held by {'; '.join(holders) or 'another session'}")
    return waits


def _describe_session(conn, pid: int) -> str:
    row = conn.execute(
        r"SELECT usename, state, left(regexp_replace(query, '\s+', ' ', 'g'), 200) FROM pg_stat_activity WHERE pid = %s",
        (pid,),
    ).fetchone()
    if row is None:
        return f"pid {pid}"
    user, state, query = row
    if query is None or query == "<insufficient privilege>":
        return f"pid {pid} (user {user or 'unknown'}; its query is not visible to this role)"
    return f"pid {pid} (user {user}, {state}: {query})"


def cancel_backends(conn, pids) -> None:
    """Cancels the statements of our own sessions `pids` (what their tool asked the server), so none is left
    waiting on the server once its tool is stopped: a backend waiting for a lock never notices its client left."""
    pids = [int(p) for p in pids if p]
    if pids:
        conn.execute("SELECT pg_cancel_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
