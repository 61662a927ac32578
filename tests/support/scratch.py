"""Which scratch databases (bp_<purpose>_<time>_<random>) a test's own work made or left behind.

The test server is shared: other tests (other pytest-xdist workers) and other clients create and drop scratch
databases of their own at the same time, so "no scratch database on the server" is not something a test can
assert. What it can: the names its own code claimed (in this process), or, for a command run as a subprocess,
the scratch databases that appeared meanwhile and that no live process owns (an owner holds the advisory lock
keyed by the name for as long as it uses the database).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import psycopg

from backup_pipeline.core import postgres
from backup_pipeline.core.postgres import SCRATCH_DATABASE, abandoned_scratch_databases


def database_names(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


@contextlib.contextmanager
def claimed_in_this_process() -> Iterator[list[str]]:
    """The scratch database names code in this process claims inside the block (in-process runs and core
    calls; not subprocesses)."""
    module = sys.modules[postgres.scratch_claims.__module__]
    make_name = module.scratch_database_name
    claimed: list[str] = []

    def recording(purpose: str) -> str:
        name = make_name(purpose)
        claimed.append(name)
        return name

    module.scratch_database_name = recording
    try:
        yield claimed
    finally:
        module.scratch_database_name = make_name


def still_there(admin_url: str, names: list[str] | set[str]) -> set[str]:
    """Those of `names` that exist on the server."""
    return set(names) & database_names(admin_url)


def scratch_databases(admin_url: str) -> set[str]:
    """Every scratch database on the server, whoever made it: a `before` for ownerless_since."""
    return {name for name in database_names(admin_url) if SCRATCH_DATABASE.match(name)}


def ownerless_since(admin_url: str, before: set[str]) -> set[str]:
    """Scratch databases not in `before` that still exist and that no live process owns: what a command that
    has ended (or was killed) since `before` was listed left behind. Another test's scratch database in use has
    an owner, so it is not among them."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        ownerless = set(abandoned_scratch_databases(conn)) - before
    # One dropped (and its lock released) between the listing and the lock check is not left behind.
    return ownerless & database_names(admin_url)
