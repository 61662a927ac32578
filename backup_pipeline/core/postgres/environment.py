"""What PostgreSQL's client tools (pg_dump, pg_restore, psql, initdb) are given to run with: our environment
without the secrets they have no use for, and the password in a temporary password file of their own.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator

from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.owners import hold

# Temporary password files: `backup-pgpass-<owner pid>-<random>` in the temporary folder.
PASSWORD_FILE_PREFIX = "backup-pgpass-"
PASSWORD_FILE = re.compile(rf"^{PASSWORD_FILE_PREFIX}(?P<pid>\d+)-[A-Za-z0-9_]+$")


_CLIENT_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "LD_LIBRARY_PATH",
        "KRB5CCNAME",
        "KRB5_CONFIG",
        "KRB5_KTNAME",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)


def client_tools_environment() -> dict[str, str]:
    """Our environment without what the client tools have no use for, secrets included (PGPASSWORD too:
    PostgresTarget.child_env hands it on in a temporary PGPASSFILE)."""
    return {
        name: value
        for name, value in os.environ.items()
        if name != "PGPASSWORD" and (name in _CLIENT_ENV or name.startswith(("PG", "LC_")))
    }


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def password_file_environment(password: str | None, passfile: str | None = None) -> Iterator[dict[str, str]]:
    """Environment for pg_dump/pg_restore/psql, with `password` in a temporary PGPASSFILE deleted afterwards.

    Only what libpq and the client tools read is passed on (PG* settings, locale, paths), so the other
    secrets in our environment (S3 keys, Discord token, encryption key, database URLs) stay out of theirs.
    The password reaches the child through the file, never its argv or environment (which `ps e` shows to
    the same user).
    """
    env = client_tools_environment()
    if password is None:
        if passfile:
            # conninfo_without_password leaves passfile out (it names where a password is): hand it on as libpq
            # would read it. PGPASSFILE, PGSERVICE and PGSERVICEFILE pass through as they are.
            env["PGPASSFILE"] = passfile
        yield env
        return
    # Named and locked by its owner (core/owners.py), so a sweep can remove it once a kill left it behind.
    fd, path = tempfile.mkstemp(prefix=f"{PASSWORD_FILE_PREFIX}{os.getpid()}-")
    try:
        hold(fd)
        try:
            os.write(fd, f"*:*:*:*:{_pgpass_escape(password)}\n".encode())
        except OSError as error:
            raise BackupError(
                f"cannot write the temporary password file for pg_dump/pg_restore in {os.path.dirname(path)}: "
                f"{error.strerror}. Free space there, or point TMPDIR at another folder"
            ) from None
        os.chmod(path, 0o600)
        env["PGPASSFILE"] = path
        yield env
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
