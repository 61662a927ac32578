"""`list` and `info`: answered from storage alone (a listing, a few manifest reads), never importing Dagster."""

from __future__ import annotations

import json
from dataclasses import asdict

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.home import dagster_home_path
from backup_pipeline.cli.output import backups_table, manifest_text, print_json, warn
from backup_pipeline.core.catalog import LABELLED_TYPES, BackupEntry, all_databases_entries
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.names import check_backup_type


def list_backups(ctx: CliContext, backup_type: str | None, as_json: bool) -> int:
    if backup_type is not None:
        check_backup_type(backup_type)
    catalog = ctx.catalog()
    entries = catalog.complete(backup_type)
    manifests = catalog.manifests(e for e in entries if e.type in LABELLED_TYPES)
    warn_about_other_servers(ctx, manifests.values())
    labels = {name: m.label for name, m in manifests.items() if m.label}
    under_way = verifications_under_way_of(ctx, entries)
    if under_way is not None:
        entries = [_settled(catalog, e) if not e.verified and str(e.name.id) not in under_way else e for e in entries]
    verifying = {str(e.name) for e in entries if not e.verified and str(e.name.id) in (under_way or ())}
    if as_json:
        print_json(
            [
                {**entry.as_dict(), "verifying": str(entry.name) in verifying, "label": labels.get(str(entry.name))}
                for entry in entries
            ]
        )
    elif not entries:
        kind = f"{backup_type} " if backup_type else ""
        where = ctx.storage.describe()
        print(f"No {kind}backups of {ctx.name_prefix} in {where} yet (take one with `backup-db backup`).")
        print(ctx.where_hint() + ".")
    else:
        print(backups_table(entries, labels, verifying=verifying))
    return 0


def verifications_under_way_of(ctx: CliContext, entries: list[BackupEntry]) -> set[str] | None:
    """The backup ids a run under way is verifying, or None when not asked. Asked of the Dagster instance only
    when a backup is unverified (so a plain `list` never loads Dagster), and only when the instance exists."""
    if all(entry.verified for entry in entries) or not dagster_home_path().is_dir():
        return None
    from backup_pipeline.cli.run_state import existing_instance, verifications_under_way

    try:
        with existing_instance(ctx.settings) as instance:
            return None if instance is None else verifications_under_way(instance, ctx.settings, ctx.db)
    except Exception as error:  # noqa: BLE001 (a listing never fails for a column's courtesy)
        warn(f"could not ask the Dagster instance which backups are being verified ({type(error).__name__})")
        return None


def _settled(catalog, entry: BackupEntry) -> BackupEntry:
    """An entry the listing saw unverified and no run is verifying now, read again: a run that ended between the
    listing and the question wrote its verification record before it ended, and the backup is verified."""
    try:
        again = catalog.look_up(entry.name)
    except BackupError:
        return entry
    return again if again.verified else entry


def list_all_backups(ctx: CliContext, backup_type: str | None, as_json: bool) -> int:
    """Every database's backups in storage: those configured here and any other writing under the same prefix."""
    if backup_type is not None:
        check_backup_type(backup_type)
    entries: list[BackupEntry] = []
    for storage_prefix in dict.fromkeys(db.storage_prefix for db in ctx.settings.databases):
        found = all_databases_entries(ctx.storage, storage_prefix)
        entries += [e for e in found if e.complete and (backup_type is None or e.type == backup_type)]
    manifests = ctx.catalog().manifests(e for e in entries if e.type in LABELLED_TYPES)
    labels = {name: m.label for name, m in manifests.items() if m.label}
    if as_json:
        print_json(
            [
                {**entry.as_dict(), "database": entry.name.prefix, "label": labels.get(str(entry.name))}
                for entry in entries
            ]
        )
    elif not entries:
        kind = f"{backup_type} " if backup_type else ""
        print(f"No {kind}backups of any database in {ctx.storage.describe()} yet.")
        print(ctx.where_hint(suggest_list_all=False) + ".")
    else:
        print(backups_table(entries, labels, with_database=True))
    return 0


def show_backup(ctx: CliContext, name_text: str, as_json: bool, backup_type: str | None = None) -> int:
    name, entry = ctx.find(name_text, backup_type)
    catalog = ctx.catalog()
    manifest = catalog.manifest(name)
    verification = None
    if entry.verified:
        try:
            verification = json.loads(ctx.storage.read_bytes(entry.verified_key))
        except ValueError:
            verification = None  # the marker's presence is what counts; its details are a courtesy
    warn_about_other_servers(ctx, [manifest])
    if as_json:
        print_json(
            {
                **asdict(manifest),
                "source_server": manifest.source_server,
                "verified": entry.verified,
                "verification": verification,
                "uri": ctx.storage.uri(manifest.key),
            }
        )
    else:
        print(manifest_text(manifest, entry, verification, ctx.storage.describe()))
    return 0


def warn_about_other_servers(ctx: CliContext, manifests) -> None:
    """Two servers whose databases share a name (and so a name prefix) write into one list: say so."""
    try:
        here = ctx.source().server
    except BackupError:  # no usable DATABASE_URL: reading backups needs none, and there is nothing to compare
        return
    others = sorted({m.source_server for m in manifests if m.source_server and m.source_server != here})
    if others:
        warn(
            f"backups named {ctx.name_prefix}_* here were also taken from {', '.join(others)}, not only from "
            f"{here} (DATABASE_URL): two servers write the same prefix, so their backups mix in one list. Set "
            "BACKUP_NAME_PREFIX (or BACKUP_S3_PREFIX) differently on one of them"
        )
