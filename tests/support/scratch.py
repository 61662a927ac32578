"""Which scratch databases (bp_<purpose>_<time>_<random>) a test's own work made or left behind.

The test server is shared: other tests (other pytest-xdist workers) and other clients create and drop scratch
databases of their own at the same time, so "no scratch database on the server" is not something a test can
assert. What it can: the names its own code claimed (in this process), or, for a command run as a subprocess,
the names its runs' logs mention (verification and restore name the scratch database they use).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import psycopg

from backup_pipeline.core.postgres import scratch
from backup_pipeline.core.postgres.scratch import SCRATCH_DATABASE

# A scratch database's name anywhere in a text (SCRATCH_DATABASE matches a whole name).
SCRATCH_NAME = re.compile(SCRATCH_DATABASE.pattern.removeprefix("^").removesuffix("$"))


def database_names(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


@contextlib.contextmanager
def claimed_in_this_process() -> Iterator[list[str]]:
    """The scratch database names code in this process claims inside the block (in-process runs and core
    calls; not subprocesses)."""
    make_name = scratch.scratch_database_name
    claimed: list[str] = []

    def recording(purpose: str) -> str:
        name = make_name(purpose)
        claimed.append(name)
        return name

    scratch.scratch_database_name = recording  # scratch_claims names each database through it
    try:
        yield claimed
    finally:
        scratch.scratch_database_name = make_name


def still_there(admin_url: str, names: list[str] | set[str]) -> set[str]:
    """Those of `names` that exist on the server."""
    return set(names) & database_names(admin_url)


def named_in(text: str) -> set[str]:
    """The scratch database names `text` mentions (verification and restore log the one they use)."""
    return {found.group(0) for found in SCRATCH_NAME.finditer(text)}
