"""`backup-db restore NAME --target-db DB --confirm RESTORE`: a restore_job run, every input checked first.

A bad input (name, target, confirmation, configuration, server, a backup of another source) is refused before
a run exists, so it changes nothing anywhere. Run config names no server: `--target-url` reaches the run as a
restore target in the environment of its own process (which keeps that run off the daemon's queue, whose
processes cannot receive it). Ctrl-C or SIGTERM cancels the run, which stops before its swap.
"""

from __future__ import annotations

import os
import signal

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.outcomes import RestoreStoppedError, RunFailedError
from backup_pipeline.cli.output import note, paint, print_json
from backup_pipeline.cli.runs import RunSpec, run_job
from backup_pipeline.cli.verify import left_out_names, left_out_note
from backup_pipeline.core.config import RESTORE_TARGETS_ENV
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.clients import ClientTools
from backup_pipeline.core.postgres.databases import check_database_name
from backup_pipeline.core.postgres.maintenance import admin_connection
from backup_pipeline.core.privileges import PrivilegeChoices
from backup_pipeline.core.replication import check_replication, replication_state
from backup_pipeline.core.restore import (
    RESTORE_CONFIRMATION,
    check_backup_roles,
    check_backup_source,
    check_restore_jobs,
    check_restore_target,
    note_lost_database,
    restore_client,
)
from backup_pipeline.core.stored_backup import checked_manifest
from backup_pipeline.core.streams import counted
from backup_pipeline.defs.names import RESTORE_SERVER_TAG, DefinitionNames

# How `--target-url` reaches the run: in the environment of the run's own process (never run config, which
# Dagster stores): a restore target under this key, its URL (password included) in this variable.
COMMAND_LINE_TARGET = "command_line"
COMMAND_LINE_TARGET_ENV = "BACKUP_RESTORE_TARGET_URL"


def check_confirmation(confirm: str | None) -> None:
    if confirm is None:
        raise ConfigurationError(
            f"a restore creates or replaces a database: add --confirm {RESTORE_CONFIRMATION} to go ahead"
        )
    if confirm != RESTORE_CONFIRMATION:
        raise ConfigurationError(f"--confirm must be exactly {RESTORE_CONFIRMATION} (got '{confirm[:40]}')")


def stop_note(target_db: str, replace: bool) -> str:
    """What Ctrl-C or SIGTERM does to a restore, said before it starts and again when it comes."""
    untouched = f"{target_db} keeps its old contents" if replace else f"{target_db} is not created"
    return (
        f"Ctrl-C (or SIGTERM) stops the restore: before the swap it stops pg_restore and drops its work database, "
        f"and {untouched}; once the swap has begun it finishes, and says so"
    )


def restore_backup(ctx: CliContext, args) -> int:
    check_confirmation(args.confirm)
    check_database_name(args.target_db)
    check_restore_jobs(args.jobs)
    source = ctx.source()
    name = ctx.backup_name(args.name, args.type)
    manifest = checked_manifest(ctx.catalog(with_encryption_key=True), name)
    # A pg_restore that can read the backup must exist before a run (and a database) does.
    restore_client(ClientTools.locate(), manifest)

    server, private_env = source, {}
    if args.target_url is not None:
        server, private_env = command_line_target(args.target_url)
    choices = PrivilegeChoices.parse(args.no_owner, args.no_acl, args.role_map, args.create_roles)
    # The maintenance database when DATABASE_URL's database is gone (a DROP DATABASE the restore undoes).
    admin = admin_connection(server, outside=args.target_db, log=note)
    try:
        exists = check_restore_target(admin, server, args.target_db, args.replace)
        note_lost_database(server, args.target_db, exists, note)
        # Refused here, before a run exists: a backup of another source, roles the server lacks, replication
        # state nobody said what to do with (the run says the rest itself).
        check_backup_source(
            admin, manifest, server, args.target_db, exists, source, args.from_other_source, lambda _: None
        )
        check_backup_roles(admin, ctx.catalog(), manifest, choices, server, log=lambda _: None, create=False)
        if exists:
            with server.with_database(args.target_db).connect() as conn:
                check_replication(replication_state(admin, conn, args.target_db), args.target_db, args.replication)
    finally:
        admin.close()

    names = DefinitionNames(ctx.db)
    config = {
        "backup_name": str(name),
        "target_db": args.target_db,
        "replace": args.replace,
        "jobs": args.jobs,
        "no_owner": args.no_owner,
        "no_acl": args.no_acl,
        "role_map": [f"{old}={new}" for old, new in choices.role_map.items()],
        "create_roles": args.create_roles,
        "replication": args.replication or "",
        "confirm": RESTORE_CONFIRMATION,
    }
    if args.from_other_source:
        config["from_other_source"] = True
    if args.target_url is not None:
        config["target"] = COMMAND_LINE_TARGET
    if not ctx.db.is_default:
        config["database"] = ctx.db.key
    op_name = names.restore_op
    spec = RunSpec(
        job_name=names.restore_job,
        run_config={"ops": {op_name: {"config": config}}},
        tags={RESTORE_SERVER_TAG: server.describe()},
        private_env=private_env,
    )
    waiting = not getattr(args, "no_wait", False)
    if waiting:
        note(stop_note(args.target_db, args.replace))
    # SIGTERM (a service manager, `kill`) stops the restore as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run_id, finished = run_job(
            ctx,
            spec,
            args,
            stop_note=f"Stopping run: {stop_note(args.target_db, args.replace)}",
            backup_name=str(name),
        )
    except RunFailedError as error:
        if _canceled(error.run_id):
            raise RestoreStoppedError(
                f"the restore stopped before the swap: {error}. Run `backup-db restore` again to restore"
            ) from None
        raise
    if finished is None:
        print(
            f"Restore of {name} into {args.target_db} started as run {run_id}; follow it with "
            f"`backup-db follow {run_id}`"
        )
        return 0
    report_restore(ctx, config, server.describe(), finished, run_id, args.json)
    return 0


def command_line_target(url: str) -> tuple[PostgresTarget, dict[str, str]]:
    """The server of `--target-url`, and the environment that names it to the run's own process: the URL with
    its password (from the URL or PGPASSWORD) goes there, never into run config."""
    from psycopg.conninfo import make_conninfo

    server = PostgresTarget.from_url(url, "--target-url")
    # libpq would read PGPASSWORD itself, but pg_restore gets the password only through us.
    password = server.password or os.environ.get("PGPASSWORD") or None
    params = {**server.params, **({"password": password} if password else {})}
    listed = os.environ.get(RESTORE_TARGETS_ENV, "")
    private_env = {
        COMMAND_LINE_TARGET_ENV: make_conninfo(**params),
        RESTORE_TARGETS_ENV: ",".join(filter(None, [listed, f"{COMMAND_LINE_TARGET}={COMMAND_LINE_TARGET_ENV}"])),
    }
    return PostgresTarget(params=params, source_env="--target-url"), private_env


def _canceled(run_id: str) -> bool:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
    return run is not None and run.status == dg.DagsterRunStatus.CANCELED


def report_restore(ctx: CliContext, config: dict, server: str, finished, run_id: str, as_json: bool) -> None:
    """Printed by `restore` and by `follow` alike; `config` is the run's restore config."""
    outcome = finished.outputs.get(DefinitionNames(ctx.db).restore_op, {})
    manifest = ctx.catalog().manifest(ctx.backup_name(config["backup_name"]))
    result = {
        "name": config.get("backup_name"),
        "target_db": config.get("target_db"),
        "server": server,
        "replaced": bool(config.get("replace")),
        "tables": outcome.get("tables"),
        "rows": outcome.get("rows"),
        "duration_s": outcome.get("duration_s"),
        "source_server_version": manifest.server_version,
        "server_version": outcome.get("server_version"),
        "pg_restore_version": outcome.get("pg_restore_version"),
        "upgrade": outcome.get("upgrade"),
        "left_out": left_out_names(outcome),
        "privileges_applied": outcome.get("privileges_applied"),
        "not_applied": outcome.get("not_applied") or [],
        "notes": outcome.get("notes") or [],
        "run_id": run_id,
    }
    if as_json:
        print_json(result)
    else:
        print(restore_summary(result))


def restore_summary(result: dict) -> str:
    """What `restore` prints once done; `follow` prints the same for a restore run."""
    where = f" on {result['server']}" if result.get("server") else ""
    return (
        paint(f"Restored {result['name']}", "green")
        + f" into {'existing' if result['replaced'] else 'new'} database {result['target_db']}{where}: "
        f"{counted(result['tables'] or 0, 'table')}, {counted(result['rows'] or 0, 'row')}, matching the backup's "
        f"manifest (run {result['run_id']})"
        + (
            f"\nThis was an upgrade: the backup came from PostgreSQL {result['source_server_version']} and now runs "
            f"on PostgreSQL {result['server_version']} (restored with pg_restore {result['pg_restore_version']})"
            if result.get("upgrade")
            else ""
        )
        + left_out_note(result.get("left_out") or [])
        + "".join(f"\n{note}" for note in result.get("notes") or [])
        + (
            paint(
                f"\nCould not apply {counted(len(result['not_applied']), 'statement')} of the backup's owners and "
                "privileges (the restoring role may not; apply them as a superuser or a member of the owner role):",
                "yellow",
            )
            + "".join(f"\n  {line}" for line in result["not_applied"])
            if result.get("not_applied")
            else ""
        )
    )
