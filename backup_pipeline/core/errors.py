"""Errors whose message is written for the person running the backup.

Every message names what is wrong and what to do; none may contain a secret.
"""


class BackupError(Exception):
    """A failure of a backup step that a user can act on."""


class ConfigurationError(BackupError):
    """Missing or malformed configuration (environment, config file, run config, arguments)."""


class VerificationError(BackupError):
    """A stored backup does not restore, or restores to different contents."""


class BackupNotFoundError(BackupError):
    """The named backup does not exist (or never finished uploading): the user picked the wrong name."""
