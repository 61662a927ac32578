"""backup_batch: one run backing up a batch of databases of one server, for a night's scheduled backups; and,
with several databases configured, the run of each backup a request asks for of one database.

A run per database costs a process start and a load of the code location (seconds of CPU, more with every
database configured) for about a second of work on a small database, and the daemon's cost to create a run
of a selection of assets grows with the number of assets. A run of this job costs the same whatever the
number of databases (its graph is three ops), and its process start is shared by the batch.

Each database is a step of its own (a dynamic mapping keyed by the database's key): a database that fails
fails its own step only, the others' steps still run, and the run's page shows which one failed. Each step
records its database's own asset materializations (database_dump, offsite_backup, restore_verification, in
the backup's partition) and check results, so every database keeps its asset history, checks and plots as
if its own run had made them; the alert sensors post one message per database (alerts/batches.py). After a
daily backup the database's retention runs as a step of its own too (skipped when its backup failed).
"""

import dagster as dg

from backup_pipeline.core.config import Settings
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.defs.assets.backup import backup_check_keys, dump_and_upload
from backup_pipeline.defs.assets.failures import fail_clearly
from backup_pipeline.defs.assets.recording import record_result
from backup_pipeline.defs.assets.retention import PruneConfig, prune_database, retention_asset_key
from backup_pipeline.defs.assets.verification import verify_partition
from backup_pipeline.defs.batch_config import BatchConfig
from backup_pipeline.defs.heartbeats import heartbeat_pings
from backup_pipeline.defs.metrics import publish_metrics
from backup_pipeline.defs.names import (
    BACKUP_ASSETS,
    BACKUP_ID_TAG,
    BACKUP_TYPE_TAG,
    BATCH_BACKUP_OP,
    BATCH_JOB,
    BATCH_PLAN_OP,
    BATCH_PRUNE_OP,
    KIND_TAG,
    LABEL_TAG,
    DefinitionNames,
)
from backup_pipeline.defs.resources import BackupStorageResource, PostgresResource
from backup_pipeline.defs.sweeping import sweep_for


def build_batch_job(settings: Settings) -> dg.JobDefinition:
    by_key = {db.key: db for db in settings.databases}

    @dg.op(name=BATCH_PLAN_OP, out=dg.DynamicOut(str), description="One step per database of the batch.")
    def batch_databases(context: dg.OpExecutionContext, config: BatchConfig):
        gone = [key for key in config.databases if key not in by_key]
        if gone and len(gone) == len(config.databases):
            # Someone may be waiting for this backup (a pre-migration request): fail, so the alert says so,
            # rather than succeed having backed up nothing.
            with fail_clearly():
                raise ConfigurationError(
                    f"not backed up: {', '.join(gone)} no longer configured (removed from the databases file "
                    "since the backup was requested)"
                )
        for key in config.databases:
            if key in gone:  # removed from the databases file since the request: nothing to back up
                context.log.warning(f"database {key} is no longer configured: not backed up")
                continue
            # Database keys are letters, digits and '_': valid mapping keys as they are.
            yield dg.DynamicOutput(key, mapping_key=key)

    @dg.op(name=BATCH_BACKUP_OP)
    def back_up_database(
        context: dg.OpExecutionContext, key: str, postgres: PostgresResource, backup_storage: BackupStorageResource
    ) -> str:
        """Dump, upload and verify one database's backup, recorded on its own assets."""
        db = by_key[key]
        backup_id = context.run.tags[BACKUP_ID_TAG]
        label = context.run.tags.get(LABEL_TAG) or None
        selected = {dg.AssetKey(path) for path in DefinitionNames(db).asset_paths(BACKUP_ASSETS)}
        try:
            with heartbeat_pings(context, db):
                with fail_clearly():
                    sweep_for(context, postgres, backup_storage, db)
                results = dump_and_upload(
                    context, postgres, backup_storage, db, backup_id, label, selected, backup_check_keys(db)
                )
                for result in results:
                    record_result(context, result, backup_id)
                record_result(context, verify_partition(context, postgres, backup_storage, db, backup_id), backup_id)
        finally:
            publish_metrics(postgres, backup_storage, db, context.log.warning)
        return key

    @dg.op(name=BATCH_PRUNE_OP)
    def prune_after_backup(
        context: dg.OpExecutionContext, key: str, postgres: PostgresResource, backup_storage: BackupStorageResource
    ) -> None:
        """Retention of the database after its scheduled backup (as the retention sensor does for a run of
        its own), unless its auto_prune is off."""
        db = by_key[key]
        if context.run.tags.get(BACKUP_TYPE_TAG) != "daily":
            context.log.info(f"{key}: retention follows scheduled (daily) backups only")
            return
        if not db.auto_prune:
            context.log.info(f"{key}: auto_prune is off, retention runs only when asked to")
            return
        result = prune_database(context, PruneConfig(), postgres, backup_storage, db, retention_asset_key(db))
        record_result(context, result, None)

    @dg.job(
        name=BATCH_JOB,
        tags={KIND_TAG: "batch"},
        executor_def=dg.in_process_executor,
        description=(
            "A night's scheduled backups of a few databases of one server (started by the backup_batch_sensor), "
            "or one database's requested backup (by the backup_request_sensor): one step per database (dump, "
            "upload, verify), then its retention after a daily backup; a database that fails fails its own step "
            "only. Each database's results are recorded on its own assets."
        ),
    )
    def backup_batch():
        batch_databases().map(back_up_database).map(prune_after_backup)

    return backup_batch
