"""Turning our errors into Dagster failures whose description is the user-facing message."""

from __future__ import annotations

import contextlib

import dagster as dg

from backup_pipeline.core.errors import BackupError
from backup_pipeline.defs.names import ERROR_CLASS_METADATA


@contextlib.contextmanager
def fail_clearly():
    """A BackupError fails the step with its own message (no stack trace to dig through) and its type."""
    try:
        yield
    except BackupError as error:
        raise dg.Failure(
            description=str(error), metadata={ERROR_CLASS_METADATA: type(error).__name__}, allow_retries=False
        ) from None
