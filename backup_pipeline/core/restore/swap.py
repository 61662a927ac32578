"""Putting the restored database in place: renamed to a new name, or swapped with the database it replaces,
whose logical replication state (slots, publications, subscriptions) is handled as the user chose
(core/replication.py)."""

from __future__ import annotations

import contextlib

from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.databases import disconnect_sessions, drop_database, rename_database, swap_databases
from backup_pipeline.core.privileges import AppliedPrivileges
from backup_pipeline.core.replication import (
    KEEP_OLD,
    RECREATE_SLOTS,
    ReplicationState,
    check_replication,
    end_consumers,
    move_slots,
    removal_hint,
    replication_state,
)
from backup_pipeline.core.restore.plan import Log


def replication_before(admin, server: PostgresTarget, target_db: str, choice: str | None) -> ReplicationState:
    with server.with_database(target_db).connect() as conn:
        state = replication_state(admin, conn, target_db)
    check_replication(state, target_db, choice)
    return state


def rename_new(admin, server: PostgresTarget, work_db: str, target_db: str) -> None:
    from psycopg import errors

    try:
        rename_database(admin, work_db, target_db)
    except errors.DuplicateDatabase:
        raise ConfigurationError(
            f"database '{target_db}' was created on {server.describe()} while the backup was being restored: "
            "nothing of it was changed; choose a new name, or pass --replace to restore over it"
        ) from None


def kept_name(target_db: str) -> str:
    """The name an old database is kept under: not a scratch name, so no sweep ever drops it."""
    from datetime import UTC, datetime

    return f"{target_db[:30]}_replaced_{datetime.now(UTC):%Y%m%d_%H%M%S}"


def swap(
    admin,
    server: PostgresTarget,
    target_db: str,
    work_db: str,
    old: str,
    log: Log,
    state: ReplicationState,
    replication: str | None,
    applied: AppliedPrivileges,
) -> None:
    """Swaps the restored database in. Nothing after the swap raises: the target is restored by then, and what
    could not be tidied up is reported with how to do it."""
    if replication == KEEP_OLD:
        old = kept_name(target_db)
    if replication is not None and state.slots:
        end_consumers(admin, target_db)  # their sessions would block the rename
    disconnect_sessions(admin, target_db)
    swap_databases(admin, target_db, work_db, old)
    log(f"replaced the contents of {target_db}")
    if replication == KEEP_OLD:
        applied.notes.append(
            f"kept the old database as {old}"
            + (f", with its {state.describe()}" if not state.empty else "")
            + f"; {removal_hint(old, state)} when it is no longer needed"
        )
        log(applied.notes[-1])
        return
    if replication == RECREATE_SLOTS:
        for note in move_slots(admin, server.with_database(target_db), state):
            applied.notes.append(note)
            log(note)
    try:
        drop_database(admin, old)
    except Exception as error:
        kept = old
        with contextlib.suppress(Exception):
            rename_database(admin, old, kept_name(target_db))
            kept = kept_name(target_db)
        note = (
            f"{target_db} is restored, but the old database could not be dropped ({str(error).splitlines()[0]}): it "
            f"is left as {kept}; {removal_hint(kept, state)}"
        )
        applied.notes.append(note)
        log(note)
