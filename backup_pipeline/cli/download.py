"""`backup-db download NAME [-o FILE]`: a backup as a file pg_restore reads, without Dagster or `aws s3 cp`.

The stored bytes are checked against the manifest's sha256 on the way and decrypted when the backup is
encrypted, so what lands on disk is a plain pg_dump archive (or, for a directory-format backup, its folder).
"""

from __future__ import annotations

import os
import sys

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.output import Progress, paint
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.restore import download_to
from backup_pipeline.core.stored_backup import checked_manifest
from backup_pipeline.core.streams import human_bytes


def download_backup(ctx: CliContext, args) -> int:
    name = ctx.backup_name(args.name, args.type)
    catalog = ctx.catalog(with_encryption_key=True)
    manifest = checked_manifest(catalog, name)
    progress = Progress()
    if args.output == "-":
        if manifest.format == "directory":
            raise ConfigurationError(
                f"{name} is a directory-format backup: it downloads into a folder, not to stdout (use -o FOLDER)"
            )
        if sys.stdout.isatty():
            raise ConfigurationError("refusing to write a binary dump to the terminal: redirect it, or use -o FILE")
        sys.stdout.flush()
        written = download_to(catalog, manifest, "-", progress.line, sink=sys.stdout.buffer)
        sys.stdout.buffer.flush()
        progress.line(f"wrote {name} ({human_bytes(written)}) to stdout; sha256 matched the manifest")
        return 0
    default = f"{name}.dump" if manifest.format != "directory" else str(name)
    destination = args.output or default
    if os.path.isdir(destination) and manifest.format != "directory":
        destination = os.path.join(destination, f"{name}.dump")
    if os.path.lexists(destination) and not args.force:
        raise ConfigurationError(f"{destination} already exists: choose another file with -o, or add --force")
    parent = os.path.dirname(os.path.abspath(destination))
    if not os.path.isdir(parent):
        raise ConfigurationError(f"the folder {parent} does not exist: create it first, or choose another -o")
    written = download_to(catalog, manifest, destination, progress.line)
    encrypted = ", decrypted" if manifest.encryption else ""
    restore_with = (
        f"pg_restore --format=directory --dbname=DB {destination}"
        if manifest.format == "directory"
        else f"pg_restore --dbname=DB {destination}"
    )
    print(
        paint(f"Downloaded {name} to {destination}", "green")
        + f": {human_bytes(written)}, sha256 matched the manifest{encrypted}.\n"
        f"  restore it by hand with: {restore_with}"
    )
    return 0
