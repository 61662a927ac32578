"""How a followed run can end badly; light, so the entry point maps them to exit codes without Dagster."""

from __future__ import annotations

from backup_pipeline.core.errors import BackupError


class RunFailedError(BackupError):
    """The run failed: the message is the failing step's own (user-facing, without secrets)."""

    def __init__(self, message: str, run_id: str):
        super().__init__(message)
        self.run_id = run_id


class RestoreStoppedError(BackupError):
    """A restore was stopped (Ctrl-C, SIGTERM, a canceled run) before its swap: its target is as it was."""


class RunTimedOutError(Exception):
    """We stopped waiting; the run itself carries on."""
