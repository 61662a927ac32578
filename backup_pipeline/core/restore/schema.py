"""A backup's schema as SQL, read by pg_restore from its table of contents: what a restore applies of owners
and privileges afterwards, and what `backup-db diff` compares (no server involved)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import VerificationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.postgres.clients import PgClient
from backup_pipeline.core.postgres.environment import client_tools_environment
from backup_pipeline.core.restore.processes import ScriptClient, error_text
from backup_pipeline.core.restore.staging import feed, unpack_checked
from backup_pipeline.core.stored_backup import open_backup, open_backup_head
from backup_pipeline.core.streams import CHUNK_BYTES


def list_args(extra: list[str]) -> list[str]:
    return [arg for arg in extra if arg.startswith("--use-list=")]


def schema_sql(client, args: list[str], archive: str | None = None, stdin=None) -> subprocess.Popen:
    """pg_restore writing the archive's schema as SQL to its stdout (it reads only the table of contents)."""
    client = client.client if isinstance(client, ScriptClient) else client
    argv = [client.path("pg_restore"), "--schema-only", "--file=-", *args, *([archive] if archive else [])]
    return subprocess.Popen(
        argv,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=client_tools_environment(),
    )


def local_schema_sql(client, args: list[str], archive: str, manifest: Manifest) -> str:
    process = schema_sql(client, args, archive)
    out, err = process.communicate()
    if process.returncode != 0:
        raise VerificationError(f"pg_restore could not list {manifest.name}'s schema: {err.decode().strip()[-300:]}")
    return out.decode(errors="replace")


def streamed_schema_sql(catalog: BackupCatalog, manifest: Manifest, client, args: list[str]) -> str:
    """The schema of a custom-format archive as SQL, from the start of the stored object only: its table of
    contents comes before the data, and pg_restore stops reading once it has it."""
    process = schema_sql(client, args, stdin=subprocess.PIPE)
    out: list[bytes] = []
    reading = threading.Thread(target=lambda: out.append(process.stdout.read()), daemon=True)
    reading.start()
    with open_backup_head(catalog, manifest) as plain:
        try:
            while chunk := plain.read(CHUNK_BYTES):
                process.stdin.write(chunk)
        except BrokenPipeError:
            pass  # pg_restore has the table of contents: the rows are not needed
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
    reading.join()
    err = process.stderr.read()
    if process.wait() != 0:
        raise VerificationError(f"pg_restore could not list {manifest.name}'s schema: {err.decode().strip()[-300:]}")
    return out[0].decode(errors="replace") if out else ""


def archive_schema_sql(catalog: BackupCatalog, manifest: Manifest, client: PgClient) -> bytes:
    """The backup's schema as `pg_restore --schema-only --create --file=-` prints it: every object, owners and
    privileges as the archive holds them, with the database's own settings; no server is involved. The stored
    bytes pass through sha256 (and decryption) on the way, and a damaged backup is refused."""
    args = [client.path("pg_restore"), "--schema-only", "--create", "--file=-"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        if manifest.format == "directory":
            with tempfile.TemporaryDirectory(prefix="backup-schema-") as staging:
                folder = unpack_checked(catalog, manifest, staging)
                code = subprocess.run([*args, "--format=directory", folder], stdout=out, stderr=err, check=False)
                code = code.returncode
        else:
            with open_backup(catalog, manifest) as backup:
                process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=out, stderr=err)
                try:
                    feed(backup, process.stdin)
                finally:
                    with contextlib.suppress(BrokenPipeError):
                        process.stdin.close()
                    code = process.wait()
        if code != 0:
            raise VerificationError(f"pg_restore --schema-only of {manifest.name} failed: {error_text(err, code)}")
        out.seek(0)
        return out.read()
