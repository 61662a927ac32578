"""Logical replication state of a database a restore replaces: never dropped without being told.

A logical slot belongs to one database (pg_replication_slots.database) and dies with it, so a consumer (CDC,
a subscriber) cannot resume; a publication and a subscription live inside the database, and a database with a
subscription cannot be dropped. A replace over such a database refuses before doing anything unless told to
recreate the slots on the new database (at its current position) or to keep the old database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backup_pipeline.core.errors import ConfigurationError

RECREATE_SLOTS = "recreate-slots"
KEEP_OLD = "keep-old"
CHOICES = (RECREATE_SLOTS, KEEP_OLD)


@dataclass
class ReplicationState:
    slots: list[tuple[str, str, bool]] = field(default_factory=list)  # (name, plugin, active)
    publications: list[str] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.slots or self.publications or self.subscriptions)

    def describe(self) -> str:
        parts = [
            f"logical slot {name} (plugin {plugin}{', in use' if active else ''})"
            for name, plugin, active in self.slots
        ]
        parts += [f"publication {name}" for name in self.publications]
        parts += [f"subscription {name}" for name in self.subscriptions]
        return ", ".join(parts)


# How long ended replication sessions may take to go, and a slot to be let go of by its ended consumer.
CONSUMERS_END_WAIT_S = 10.0
SLOT_RELEASE_WAIT_S = 5.0


def check_choice(choice: str | None) -> str | None:
    if choice in (None, ""):
        return None
    if choice not in CHOICES:
        raise ConfigurationError(f"--replication must be {' or '.join(CHOICES)}, got '{str(choice)[:40]}'")
    return choice


def replication_state(admin, database_conn, database: str) -> ReplicationState:
    """`admin`: any connection to the server; `database_conn`: one inside `database` (publications live there)."""
    state = ReplicationState()
    state.slots = [
        (name, plugin, bool(active))
        for name, plugin, active in admin.execute(
            "SELECT slot_name, plugin, active FROM pg_replication_slots WHERE database = %s AND slot_type = 'logical' "
            "ORDER BY 1",
            (database,),
        ).fetchall()
    ]
    state.subscriptions = [
        row[0]
        for row in admin.execute(
            "SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = %s) "
            "ORDER BY 1",
            (database,),
        ).fetchall()
    ]
    state.publications = [row[0] for row in database_conn.execute("SELECT pubname FROM pg_publication ORDER BY 1")]
    return state


def check_replication(state: ReplicationState, database: str, choice: str | None) -> None:
    """Refuses a replace that would drop replication state nobody said what to do with."""
    if state.empty or choice is not None:
        return
    raise ConfigurationError(
        f"database '{database}' has logical replication state a replace would drop: {state.describe()}. Nothing "
        f"was changed. Say what to do with it: --replication {RECREATE_SLOTS} (each logical slot is recreated with "
        "the same plugin on the restored database at its current position: its consumer resumes from there and "
        "never sees changes in between; publications come from the backup, subscriptions never do) or --replication "
        f"{KEEP_OLD} (the old database is kept under a new name, slots and subscriptions included)"
    )


def end_consumers(admin, database: str) -> None:
    """Ends the replication sessions (walsenders) streaming the logical slots of `database`, which block its
    rename, and waits until they are gone. Only when told what to do with the slots (--replication)."""
    import time

    pids = [
        row[0]
        for row in admin.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE database = %s AND active_pid IS NOT NULL", (database,)
        ).fetchall()
    ]
    for pid in pids:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + CONSUMERS_END_WAIT_S
    while pids and time.monotonic() < deadline:
        alive = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()[0]
        if not alive:
            return
        time.sleep(0.1)


def move_slots(admin, new_database_target, state: ReplicationState) -> list[str]:
    """After the swap: each logical slot of the old database dropped and created again on the new one; what
    happened to each, in words."""
    notes = []
    for name, plugin, _active in state.slots:
        try:
            _drop_slot(admin, name)
        except Exception as error:
            notes.append(
                f"logical slot {name} stays on the old database: it could not be dropped ({_first_line(error)}); "
                f"stop its consumer, then run SELECT pg_drop_replication_slot('{name}') and create it again on the "
                "new database"
            )
            continue
        try:
            with new_database_target.connect() as conn:
                lsn = conn.execute(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)", (name, plugin)
                ).fetchone()[0]
            notes.append(
                f"recreated logical slot {name} (plugin {plugin}) on the restored database at LSN {lsn}: its consumer "
                "resumes from there; changes the old database had not sent it are not replayed"
            )
        except Exception as error:
            notes.append(
                f"logical slot {name} was dropped with the old database's contents but could not be created on the "
                f"new one ({_first_line(error)}): create it with SELECT pg_create_logical_replication_slot('{name}', "
                f"'{plugin}')"
            )
    return notes


def _drop_slot(admin, name: str) -> None:
    """Drops a slot; its consumer's session was just ended, and may take a moment to let go of it."""
    import time

    deadline = time.monotonic() + SLOT_RELEASE_WAIT_S
    while True:
        try:
            admin.execute("SELECT pg_drop_replication_slot(%s)", (name,))
            return
        except Exception as error:
            if "is active" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def removal_hint(old: str, state: ReplicationState) -> str:
    """How to remove an old database a subscription keeps alive."""
    steps = [
        f"ALTER SUBSCRIPTION {s} DISABLE; ALTER SUBSCRIPTION {s} SET (slot_name = NONE); DROP SUBSCRIPTION {s};"
        for s in state.subscriptions
    ]
    inside = f"in it run {' '.join(steps)} then " if steps else ""
    return f'to remove {old}: {inside}DROP DATABASE "{old}"'


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
