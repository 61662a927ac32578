"""`backup-db restore NAME --target-db DB --confirm RESTORE`: a restore_job run, every input checked first.

A bad input (name, target, confirmation, configuration, server) is refused before a run exists, so it
changes nothing anywhere. The target server's password never goes into run config: the run gets the
URL without it, and the password in an environment variable of its own process (which keeps that run
off the daemon's queue, whose processes cannot receive it).
"""

from __future__ import annotations

import os

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.output import paint, print_json
from backup_pipeline.cli.runs import RunSpec, run_job
from backup_pipeline.cli.verify import left_out_names, left_out_note
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.postgres import ClientTools, PostgresTarget, check_database_name
from backup_pipeline.core.privileges import PrivilegeChoices
from backup_pipeline.core.replication import check_replication, replication_state
from backup_pipeline.core.restore import (
    RESTORE_CONFIRMATION,
    check_backup_roles,
    check_restore_jobs,
    check_restore_target,
    checked_manifest,
    restore_client,
)
from backup_pipeline.core.streams import counted
from backup_pipeline.defs.names import DefinitionNames

PASSWORD_ENV = "BACKUP_RESTORE_TARGET_PASSWORD"


def check_confirmation(confirm: str | None) -> None:
    if confirm is None:
        raise ConfigurationError(
            f"a restore creates or replaces a database: add --confirm {RESTORE_CONFIRMATION} to go ahead"
        )
    if confirm != RESTORE_CONFIRMATION:
        raise ConfigurationError(f"--confirm must be exactly {RESTORE_CONFIRMATION} (got '{confirm[:40]}')")


def restore_backup(ctx: CliContext, args) -> int:
    check_confirmation(args.confirm)
    check_database_name(args.target_db)
    check_restore_jobs(args.jobs)
    source = ctx.source()
    name = ctx.backup_name(args.name, args.type)
    manifest = checked_manifest(ctx.catalog(with_encryption_key=True), name)
    # A pg_restore that can read the backup must exist before a run (and a database) does.
    restore_client(ClientTools.locate(), manifest)

    server, password = source, None
    if args.target_url is not None:
        server = PostgresTarget.from_url(args.target_url, "--target-url")
        # libpq would read PGPASSWORD itself, but pg_restore gets the password only through us.
        password = server.password or os.environ.get("PGPASSWORD") or None
    choices = PrivilegeChoices.parse(args.no_owner, args.no_acl, args.role_map, args.create_roles)
    admin = server.connect()
    try:
        exists = check_restore_target(admin, server, args.target_db, args.replace)
        # Refused here, before a run exists: roles the server lacks, replication state nobody said what to do with.
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
    private_env = {}
    if args.target_url is not None:
        without_password = PostgresTarget({k: v for k, v in server.params.items() if k != "password"}, "--target-url")
        config["target_url"] = without_password.conninfo_without_password()
        if password:
            config["target_password_env"] = PASSWORD_ENV
            private_env[PASSWORD_ENV] = password
    if not ctx.db.is_default:
        config["database"] = ctx.db.key
    op_name = names.restore_op
    spec = RunSpec(
        job_name=names.restore_job, run_config={"ops": {op_name: {"config": config}}}, private_env=private_env
    )
    run_id, finished = run_job(ctx, spec, args)
    if finished is None:
        print(
            f"Restore of {name} into {args.target_db} started as run {run_id}; follow it with "
            f"`backup-db follow {run_id}`"
        )
        return 0
    report_restore(ctx, config, server.describe(), finished, run_id, args.json)
    return 0


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
