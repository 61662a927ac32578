"""One database's jobs: backup, verify and prune (asset jobs), request_backup and restore (op jobs)."""

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.names import BackupId, BackupName, check_backup_type, check_label
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.restore import RESTORE_CONFIRMATION, restore_server, restore_to_database
from backup_pipeline.defs.assets.failures import fail_clearly
from backup_pipeline.defs.names import (
    BACKUP_ID_TAG,
    BACKUP_TYPE_TAG,
    DATABASE_TAG,
    LABEL_TAG,
    RUN_KIND_TAG,
    STORAGE_RESOURCE_KEY,
    DefinitionNames,
)


def build_backup_jobs(db: DatabaseSettings, partitions: dg.DynamicPartitionsDefinition) -> list:
    names = DefinitionNames(db)
    database_tags = {DATABASE_TAG: db.key}
    return [
        dg.define_asset_job(
            names.backup_job,
            selection=dg.AssetSelection.assets(
                *(dg.AssetKey(names.asset_path(n)) for n in ("database_dump", "offsite_backup", "restore_verification"))
            ),
            partitions_def=partitions,
            tags=database_tags,
            description="Dump, upload and verify one backup (one partition, keyed by backup id).",
            # The steps run one after another anyway; one process spares the user ~5 s of start-up per step.
            executor_def=dg.in_process_executor,
        ),
        dg.define_asset_job(
            names.verify_job,
            selection=dg.AssetSelection.assets(dg.AssetKey(names.asset_path("restore_verification"))),
            partitions_def=partitions,
            tags=database_tags,
            description="Verify a stored backup again: restore into a scratch database and compare row counts.",
        ),
        dg.define_asset_job(
            names.prune_job,
            selection=dg.AssetSelection.assets(dg.AssetKey(names.asset_path("backup_retention"))),
            tags=database_tags,
            description="Delete backups the retention policy no longer keeps (dry_run: true only reports).",
        ),
        build_request_job(db, names),
        build_restore_job(db, names),
    ]


class BackupRequestConfig(dg.Config):
    backup_type: str = "pre-migration"
    # What the backup protects, e.g. the migration about to run (012_add_hybrid_search); kept in its manifest.
    label: str | None = None


def build_request_job(db: DatabaseSettings, names: DefinitionNames) -> dg.JobDefinition:
    @dg.op(name=names.request_op)
    def request_backup(context: dg.OpExecutionContext, config: BackupRequestConfig) -> str:
        """Names the new backup; the backup request sensor then registers it and starts backup_job for it."""
        with fail_clearly():
            backup_id = BackupId.new(check_backup_type(config.backup_type))
            label = check_label(config.label) if config.label else None
        tags = {BACKUP_ID_TAG: str(backup_id), BACKUP_TYPE_TAG: backup_id.type}
        if label:
            tags[LABEL_TAG] = label
        context.instance.add_run_tags(context.run_id, tags)
        context.log.info(
            f"backup {backup_id} requested: {names.request_sensor} starts {names.backup_job} for it within seconds "
            "(the daemon must be running, as it is under `dagster dev`)"
        )
        return str(backup_id)

    @dg.job(
        name=names.request_job,
        executor_def=dg.in_process_executor,
        description=(
            "Take a backup now, with no timestamp to type: launch it (backup_type defaults to pre-migration; "
            "set it to manual for an ad-hoc one) and a backup_job run follows within seconds."
        ),
    )
    def request_job():
        request_backup()

    return request_job


class RestoreConfig(dg.Config):
    backup_name: str
    target_db: str
    replace: bool = False
    jobs: int = 1
    # Name of an environment variable holding the URL of the server to restore to; default: the source's server.
    target_url_env: str | None = None
    # Or the libpq URL of a database on that server, WITHOUT its password (run config is stored in the event
    # log), and the name of an environment variable of the run's process holding the password.
    target_url: str | None = None
    target_password_env: str | None = None
    confirm: str = ""


def build_restore_job(db: DatabaseSettings, names: DefinitionNames) -> dg.JobDefinition:
    @dg.op(
        name=names.restore_op,
        required_resource_keys={names.postgres_resource, STORAGE_RESOURCE_KEY},
    )
    def restore_backup(context: dg.OpExecutionContext, config: RestoreConfig) -> None:
        """Restores a stored backup into a new database, or over an existing one with replace: true."""
        import os

        postgres = getattr(context.resources, names.postgres_resource)
        storage = getattr(context.resources, STORAGE_RESOURCE_KEY)
        with fail_clearly():
            if config.confirm != RESTORE_CONFIRMATION:
                raise ConfigurationError(f"a restore needs confirm: {RESTORE_CONFIRMATION} in its run config")
            catalog = storage.catalog(postgres, db.storage_prefix)
            name = BackupName.parse(config.backup_name, catalog.name_prefix)
            if config.target_url:
                server = restore_server(config.target_url, config.target_password_env)
            elif config.target_url_env:
                server = PostgresTarget.from_url(os.environ.get(config.target_url_env), config.target_url_env)
            else:
                server = postgres.target()
            outcome = restore_to_database(
                catalog, name, server, config.target_db, config.replace, config.jobs, postgres.tools(), context.log.info
            )
        context.add_output_metadata(
            {
                "backup": str(name),
                "target_db": outcome.database,
                "tables": len(outcome.tables),
                "rows": sum(outcome.tables.values()),
                "duration_s": outcome.duration_s,
                "source_server_version": outcome.manifest.server_version,
                "server_version": outcome.server_version,
                "pg_restore_version": outcome.pg_restore_version,
                "upgrade": outcome.upgrade,
            }
        )

    @dg.job(
        name=names.restore_job,
        description=(
            "Restore a backup into a new database (or over an existing one with replace: true). In the Launchpad "
            "set backup_name (the name shown on the offsite_backup asset), target_db, and confirm: RESTORE."
        ),
        tags={RUN_KIND_TAG: "restore"},
    )
    def restore_job():
        restore_backup()

    return restore_job
