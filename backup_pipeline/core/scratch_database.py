"""Scratch databases: a uniquely named database that a verification or a restore works in, and always drops.

`scratch_server` opens the connection that creates and drops them (never one in the database being restored
over: the server's maintenance database is used instead, as it is when the URL's own database is gone) and
holds the advisory locks that tell a sweep a scratch database is in use (core/postgres.py's scratch_claims).
`scratch_database` creates one, yields it, and drops it when the block ends, however it ends (a failure, a
cancelled run, KeyboardInterrupt). A restore renames its scratch database to the user's name before the block
ends: the drop then finds nothing to drop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import server_version
from backup_pipeline.core.postgres.databases import create_database, createdb_refusal, drop_database
from backup_pipeline.core.postgres.maintenance import admin_connection
from backup_pipeline.core.postgres.scratch import scratch_claims
from backup_pipeline.core.privileges import create_database_sql


@dataclass
class ScratchServer:
    """The server scratch databases are made on, with the connection that creates, renames and drops them."""

    server: PostgresTarget
    admin: object  # a psycopg connection, autocommit, never in the database being restored over
    claim: Callable[[str], str]  # a new scratch name for a purpose, locked until the block ends

    @cached_property
    def version(self) -> tuple[int, str]:
        """(major, full version text) of the server."""
        return server_version(self.admin)


@dataclass(frozen=True)
class ScratchDatabase:
    name: str
    created: str  # how it was created, for the log (its encoding and locale when they are not the defaults)
    target: PostgresTarget  # the server's URL with this database


@contextlib.contextmanager
def scratch_server(
    server: PostgresTarget, outside: str = "", log: Callable[[str], None] | None = None
) -> Iterator[ScratchServer]:
    """A ScratchServer on `server`'s server, never with a session in database `outside`; `log` hears when the
    maintenance database is used instead of the URL's."""
    with scratch_claims(server, outside=outside) as claim:
        admin = admin_connection(server, outside=outside, log=log)
        try:
            yield ScratchServer(server, admin, claim)
        finally:
            admin.close()


@contextlib.contextmanager
def scratch_database(
    scratch: ScratchServer, purpose: str, manifest: Manifest, instead: str = "", like_original: bool = False
) -> Iterator[ScratchDatabase]:
    """A new scratch database for `purpose` in `manifest`'s encoding (`like_original`: with the original's
    encoding and locale, when the backup recorded them), dropped when the block ends. `instead`: what a role
    that may not create databases can do instead. A drop that fails after the block failed is not reported (the
    block's own failure is the one to report; a server whose disk filled may go down at the drop) and the next
    sweep drops what is left."""
    name = scratch.claim(purpose)
    if like_original and manifest.database_properties:
        created = _create_like_original(scratch, name, manifest, instead)
    else:
        created = create_database(scratch.admin, name, manifest.encoding, instead=instead)
    try:
        yield ScratchDatabase(name, created, scratch.server.with_database(name))
    except BaseException:
        with contextlib.suppress(Exception):
            drop_database(scratch.admin, name)
        raise
    drop_database(scratch.admin, name)


def _create_like_original(scratch: ScratchServer, name: str, manifest: Manifest, instead: str) -> str:
    """From template0 with the original's encoding and locale; returns how it was created, for the log."""
    import psycopg

    try:
        scratch.admin.execute(create_database_sql(name, manifest.database_properties, scratch.version[0]))
        return name
    except psycopg.errors.InsufficientPrivilege:
        raise createdb_refusal(scratch.admin, instead) from None
    except psycopg.Error as error:
        props = manifest.database_properties or {}
        raise ConfigurationError(
            f"cannot create a database with the original's encoding {props.get('encoding')} and locale "
            f"{props.get('collate')}/{props.get('ctype')} on this server ({str(error).strip().splitlines()[0]}). "
            "Nothing was created: install that locale on the server (and restart it), or restore onto a server "
            "that has it"
        ) from None
