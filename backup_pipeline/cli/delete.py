"""`backup-db delete NAME --confirm DELETE`: removes one backup by hand, and says exactly what it removed.

What goes: the dump, its manifest, its verification record and the roles saved with it, and the backup's
Dagster partition. Refused: without `--confirm DELETE`; the newest verified backup (the one a rollback would
use) unless `--force`; a backup a run is using right now (its backup, verification or a restore). Nothing is
deleted on one observation: the objects are looked up again by name right before they go, and only those
found both times are deleted, manifests and records before the dump (as retention does), so a failure midway
leaves an incomplete upload, never a listed backup without its dump.
"""

from __future__ import annotations

from datetime import UTC, datetime

from backup_pipeline.cli.context import LATEST, CliContext
from backup_pipeline.cli.output import paint, print_json
from backup_pipeline.core.errors import BackupNotFoundError, ConfigurationError
from backup_pipeline.core.prune import newest_verified
from backup_pipeline.defs.names import DefinitionNames

CONFIRM_WORD = "DELETE"


def delete_backup(ctx: CliContext, args) -> int:
    if args.name == LATEST:
        raise ConfigurationError("delete takes the backup's own name, never `latest`: run `backup-db list` to see it")
    if args.confirm != CONFIRM_WORD:
        raise ConfigurationError(
            f"deleting a backup cannot be undone: add --confirm {CONFIRM_WORD} to delete {args.name[:120]} "
            f"(got {'no --confirm' if args.confirm is None else repr(args.confirm[:40])}); nothing was deleted"
        )
    name = ctx.backup_name(args.name)
    catalog = ctx.catalog()
    from backup_pipeline.cli.run_state import existing_instance

    with existing_instance(ctx.settings) as instance:
        refuse_while_in_use(ctx, instance, name)  # a backup being written may not be complete yet
        first = catalog.look_up(name)  # the first observation, by name
        if not first.keys:
            raise BackupNotFoundError(f"there is no backup named {name} in {ctx.storage.describe()}")
        newest = newest_verified(catalog.entries(), datetime.now(UTC))
        was_newest = newest is not None and newest.name == name
        if was_newest and not args.force:
            raise ConfigurationError(
                f"{name} is the newest verified backup of {ctx.name_prefix}: the one a rollback would restore. Add "
                "--force to delete it anyway (take a new backup first with `backup-db backup`); nothing was deleted"
            )
        refuse_while_in_use(ctx, instance, name)
        second = catalog.look_up(name)  # right before deleting: only what both lookups found goes
        keys = [key for key in first.keys if key in second.keys]
        if not keys:
            raise BackupNotFoundError(f"{name} disappeared from {ctx.storage.describe()} while it was being deleted")
        # Manifest, verification record and roles first, the dump last (as retention does).
        catalog.storage.delete_many([k for k in keys if not k.endswith(".dump")])
        catalog.storage.delete_many([k for k in keys if k.endswith(".dump")])
        partition = remove_partition(ctx, instance, name)
    result = {
        "name": str(name),
        "deleted": keys,
        "uris": [ctx.storage.uri(key) for key in keys],
        "storage": ctx.storage.describe(),
        "was_newest_verified": was_newest,
        "partition": partition,
    }
    if args.json:
        print_json(result)
    else:
        lines = [paint(f"Deleted {name}", "green") + f" from {ctx.storage.describe()}:"]
        lines += [f"  {key}" for key in keys]
        lines.append(f"  {partition}")
        print("\n".join(lines))
    return 0


def refuse_while_in_use(ctx: CliContext, instance, name) -> None:
    """Refuses while a run under way makes, verifies or restores the backup."""
    if instance is None:
        return
    from backup_pipeline.cli.run_state import runs_for_backup

    busy = runs_for_backup(instance, ctx.settings, ctx.db, str(name.id))
    if busy:
        shown = ", ".join(f"{run.kind} run {run.run_id} ({run.status.lower()})" for run in busy)
        raise ConfigurationError(
            f"{name} is in use: {shown}. Wait for it to end (`backup-db follow RUN_ID`) or cancel it, then delete; "
            "nothing was deleted"
        )


def remove_partition(ctx: CliContext, instance, name) -> str:
    """Removes the backup's Dagster partition; says what it did."""
    partitions, backup_id = DefinitionNames(ctx.db).partitions, str(name.id)
    if instance is None:
        return "no Dagster instance at DAGSTER_HOME, so no partition to remove"
    if not instance.has_dynamic_partition(partitions, backup_id):
        return f"no Dagster partition {backup_id} in {partitions} (none to remove)"
    instance.delete_dynamic_partition(partitions, backup_id)
    return f"Dagster partition {backup_id} removed from {partitions}"
