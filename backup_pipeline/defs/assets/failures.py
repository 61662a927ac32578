"""Turning our errors into Dagster failures whose description is the user-facing message."""

from __future__ import annotations

import contextlib

import dagster as dg
import psycopg

from backup_pipeline.core.disk_room import explain_server_failure
from backup_pipeline.core.errors import BackupError
from backup_pipeline.defs.names import ERROR_CLASS_METADATA

_ADVICE = (
    "Free disk there before trying again: a restore needs room for a full copy of the database, a --replace for "
    "two until the swap"
)


@contextlib.contextmanager
def fail_clearly():
    """A BackupError fails the step with its own message (no stack trace to dig through) and its type; so does
    the server's own error when its disk filled or it went down (a full disk stops PostgreSQL), said as such."""
    try:
        yield
    except BackupError as error:
        raise dg.Failure(
            description=_meaning(str(error)), metadata={ERROR_CLASS_METADATA: type(error).__name__}, allow_retries=False
        ) from None
    except psycopg.OperationalError as error:
        explained = explain_server_failure(str(error), "the PostgreSQL server", _ADVICE, during="")
        if explained is None:
            raise
        raise dg.Failure(
            description=f"{explained} ({_first_line(str(error))})",
            metadata={ERROR_CLASS_METADATA: type(error).__name__},
            allow_retries=False,
        ) from None


def _meaning(message: str) -> str:
    """The message, led by what it means when a server's disk filled or it crashed (unless it says so already)."""
    if "ran out of disk" in message or "stopped or crashed" in message:
        return message
    explained = explain_server_failure(message, "the PostgreSQL server", _ADVICE, during="")
    return f"{explained} ({message})" if explained else message


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""
