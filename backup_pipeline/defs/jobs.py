"""The jobs: request_backup and restore_job serve every database; backup_job, verify_job and prune_job exist
for the single database of a DATABASE_URL setup (with several, runs select the database's own assets)."""

import os
from datetime import datetime

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.names import BackupId, BackupName, check_backup_type, check_label
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.privileges import PrivilegeChoices
from backup_pipeline.core.restore import RESTORE_CONFIRMATION, restore_to_database
from backup_pipeline.defs.assets.failures import fail_clearly
from backup_pipeline.defs.names import (
    BACKUP_ID_TAG,
    BACKUP_TYPE_TAG,
    BATCH_JOB,
    BATCH_SENSOR,
    DATABASE_TAG,
    KIND_TAG,
    LABEL_TAG,
    REQUEST_JOB,
    REQUEST_OP,
    RESTORE_JOB,
    RESTORE_OP,
    DefinitionNames,
)
from backup_pipeline.defs.resources import BackupStorageResource, PostgresResource
from backup_pipeline.defs.sweeping import sweep_for


def build_named_asset_jobs(db: DatabaseSettings) -> list:
    """backup_job, verify_job and prune_job of the one database of a DATABASE_URL setup."""
    names = DefinitionNames(db)

    def selection(paths):
        return dg.AssetSelection.assets(*(dg.AssetKey(p) for p in paths))

    def tags(kind: str) -> dict[str, str]:
        return {DATABASE_TAG: db.key, KIND_TAG: kind}

    return [
        dg.define_asset_job(
            names.backup_job,
            selection=selection(names.backup_selection),
            tags=tags("backup"),
            description="Dump, upload and verify one backup (one partition, keyed by backup id).",
            # The steps run one after another anyway; one process spares the user ~5 s of start-up per step.
            executor_def=dg.in_process_executor,
        ),
        dg.define_asset_job(
            names.verify_job,
            selection=selection(names.verify_selection),
            tags=tags("verify"),
            description="Verify a stored backup again: restore into a scratch database and compare row counts.",
        ),
        dg.define_asset_job(
            names.prune_job,
            selection=selection(names.prune_selection),
            tags=tags("prune"),
            description="Delete backups the retention policy no longer keeps (dry_run: true only reports).",
        ),
    ]


def choose_database(settings: Settings, key: str | None) -> DatabaseSettings:
    """The database a run config names; with one database configured the name may be left out."""
    if not key:
        if len(settings.databases) == 1:
            return settings.databases[0]
        raise ConfigurationError(
            f"several databases are configured: set database in the run config ({_choices(settings)})"
        )
    for db in settings.databases:
        if db.key == key:
            return db
    raise ConfigurationError(f"no database '{key}' is configured: set database to one of {_choices(settings)}")


def _choices(settings: Settings) -> str:
    shown = 10  # a long list of keys is cut, with how many more
    keys = [db.key for db in settings.databases]
    return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


class BackupRequestConfig(dg.Config):
    backup_type: str = "pre-migration"
    # What the backup protects, e.g. the migration about to run (012_add_hybrid_search); kept in its manifest.
    label: str | None = None
    # The database's key in the databases file; may be left out when only one database is configured.
    database: str = ""
    # Set by the schedules: every database sharing a cron, and the tick's time, which names the backups.
    databases: list[str] = []
    scheduled_at: str = ""


def requested_databases(settings: Settings, config: dict) -> list[DatabaseSettings]:
    """The databases a request_backup run config asks backups of (checked: each is configured)."""
    keys = list(config.get("databases") or [])
    if not keys:
        return [choose_database(settings, config.get("database") or None)]
    return [choose_database(settings, key) for key in keys]


def build_request_job(settings: Settings) -> dg.JobDefinition:
    @dg.op(name=REQUEST_OP)
    def request_backup(context: dg.OpExecutionContext, config: BackupRequestConfig) -> str:
        """Names the new backup; the backup request sensor then registers it and starts its run."""
        with fail_clearly():
            databases = requested_databases(settings, config.model_dump())
            when = datetime.fromisoformat(config.scheduled_at) if config.scheduled_at else None
            backup_id = BackupId.new(check_backup_type(config.backup_type), when)
            label = check_label(config.label) if config.label else None
        tags = {BACKUP_ID_TAG: str(backup_id), BACKUP_TYPE_TAG: backup_id.type}
        if label:
            tags[LABEL_TAG] = label
        if len(databases) == 1:
            tags[DATABASE_TAG] = databases[0].key
        context.instance.add_run_tags(context.run_id, tags)
        which = databases[0].key if len(databases) == 1 else f"{len(databases)} databases"
        if len(databases) > 1 and not DefinitionNames(databases[0]).has_named_jobs:
            answer = f"the {BATCH_SENSOR} starts {BATCH_JOB} runs of a few databases of one server each"
        else:
            answer = f"the {DefinitionNames(databases[0]).request_sensor} starts one backup run per database"
        context.log.info(
            f"backup {backup_id} of {which} requested: {answer} within seconds (the daemon must be running, "
            "as it is under `dagster dev`)"
        )
        return str(backup_id)

    @dg.job(
        name=REQUEST_JOB,
        executor_def=dg.in_process_executor,
        tags={KIND_TAG: "request"},
        description=(
            "Take a backup now, with no timestamp to type: launch it (backup_type defaults to pre-migration; "
            "set it to manual for an ad-hoc one; with several databases set database to one's key) and a "
            "backup run follows within seconds."
        ),
    )
    def request_job():
        request_backup()

    return request_job


class RestoreConfig(dg.Config):
    backup_name: str
    target_db: str
    # The database's key in the databases file; may be left out when only one database is configured.
    database: str = ""
    replace: bool = False
    jobs: int = 1
    # The server to restore to, by its key only: a configured database's key (its server) or one of the
    # deployment's restore_targets. Empty: the server of the database the backup is of. Run config is stored
    # and anyone who reaches the UI can write it, so it never names a URL, a variable or a credential.
    target: str = ""
    # Restore a backup taken of another server or database than the one it goes to (or over).
    from_other_source: bool = False
    # Owners and privileges: leave them out, apply a backup role's to another role ("old=new"), or create the
    # roles the backup names that the server lacks (from those saved with it).
    no_owner: bool = False
    no_acl: bool = False
    role_map: list[str] = []
    create_roles: bool = False
    # Over a database with logical replication state: "recreate-slots" or "keep-old" (else the restore refuses).
    replication: str = ""
    confirm: str = ""


# Run states in which a restore stops before its swap: the UI's Terminate (or `backup-db restore`'s Ctrl-C) sets
# CANCELING, a forced termination CANCELED.
STOPPING_STATUSES = (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)


def run_cancel_check(instance: dg.DagsterInstance, run_id: str):
    """Why the restore must stop (its run is being canceled), or None; asked while pg_restore runs and right
    before the swap."""

    def should_stop() -> str | None:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in STOPPING_STATUSES:
            return f"run {run_id} was canceled"
        return None

    return should_stop


def build_restore_job(settings: Settings) -> dg.JobDefinition:
    @dg.op(name=RESTORE_OP)
    def restore_backup(
        context: dg.OpExecutionContext,
        config: RestoreConfig,
        postgres: PostgresResource,
        backup_storage: BackupStorageResource,
    ) -> None:
        """Restores a stored backup into a new database, or over an existing one with replace: true."""
        with fail_clearly():
            if config.confirm != RESTORE_CONFIRMATION:
                raise ConfigurationError(f"a restore needs confirm: {RESTORE_CONFIRMATION} in its run config")
            db = choose_database(settings, config.database or None)
            connection = postgres.database(db)
            catalog = backup_storage.catalog(connection, db.storage_prefix)
            name = BackupName.parse(config.backup_name, catalog.name_prefix)
            source = connection.target()
            server = source
            if config.target:
                url_env = settings.restore_target_env(config.target)
                server = PostgresTarget.from_url(os.environ.get(url_env), url_env)
            sweep_for(context, postgres, backup_storage, db, server)
            choices = PrivilegeChoices.parse(config.no_owner, config.no_acl, config.role_map, config.create_roles)
            should_stop = run_cancel_check(context.instance, context.run_id)
            outcome = restore_to_database(
                catalog,
                name,
                server,
                config.target_db,
                config.replace,
                config.jobs,
                connection.tools(),
                context.log.info,
                privileges=choices,
                replication=config.replication or None,
                stall_seconds=db.stall_seconds,
                source=source,
                from_other_source=config.from_other_source,
                should_stop=should_stop,
            )
            if should_stop():
                context.log.warning(
                    f"the run was canceled once the swap had begun: the restore finished, and {config.target_db} "
                    f"holds {name} (a swap is never left half done)"
                )
        applied = outcome.privileges
        for problem in applied.not_applied:
            context.log.warning(f"not applied: {problem}")
        context.add_output_metadata(
            {
                "database": db.key,
                "backup": str(name),
                "target_db": outcome.database,
                "tables": len(outcome.tables),
                "rows": sum(outcome.tables.values()),
                "duration_s": outcome.duration_s,
                "source_server_version": outcome.manifest.server_version,
                "server_version": outcome.server_version,
                "pg_restore_version": outcome.pg_restore_version,
                "upgrade": outcome.upgrade,
                "left_out_count": len(outcome.left_out),
                "left_out": ", ".join(outcome.left_out),
                "privileges_applied": applied.applied,
                "not_applied": dg.MetadataValue.json(applied.not_applied),
                "notes": dg.MetadataValue.json(applied.notes),
            }
        )

    @dg.job(
        name=RESTORE_JOB,
        description=(
            "Restore a backup into a new database (or over an existing one with replace: true). In the Launchpad "
            "set backup_name (the name shown on the offsite_backup asset), target_db, confirm: RESTORE, and "
            "with several databases database: the key of the one it came from. target: the key of another server "
            "the deployment lists (restore_targets). Terminate stops it before its swap (the target is untouched)."
        ),
        tags={KIND_TAG: "restore"},
    )
    def restore_job():
        restore_backup()

    return restore_job
