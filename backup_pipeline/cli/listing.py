"""`list` and `info`: answered from storage alone (one listing, one manifest read), never importing Dagster."""

from __future__ import annotations

import json
from dataclasses import asdict

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.output import backups_table, manifest_text, print_json
from backup_pipeline.core.names import check_backup_type


def list_backups(ctx: CliContext, backup_type: str | None, as_json: bool) -> int:
    if backup_type is not None:
        check_backup_type(backup_type)
    entries = ctx.catalog().complete(backup_type)
    if as_json:
        print_json([entry.as_dict() for entry in entries])
    elif not entries:
        kind = f"{backup_type} " if backup_type else ""
        where = ctx.storage.describe()
        print(f"No {kind}backups of {ctx.name_prefix} in {where} yet (take one with `backup-db backup`).")
    else:
        print(backups_table(entries))
    return 0


def show_backup(ctx: CliContext, name_text: str, as_json: bool) -> int:
    name, entry = ctx.find(name_text)
    catalog = ctx.catalog()
    manifest = catalog.manifest(name)
    verification = None
    if entry.verified:
        try:
            verification = json.loads(ctx.storage.read_bytes(entry.verified_key))
        except ValueError:
            verification = None  # the marker's presence is what counts; its details are a courtesy
    if as_json:
        print_json(
            {
                **asdict(manifest),
                "verified": entry.verified,
                "verification": verification,
                "uri": ctx.storage.uri(manifest.key),
            }
        )
    else:
        print(manifest_text(manifest, entry, verification, ctx.storage.describe()))
    return 0
