"""Facts about a finished run, read from the run and its event log: which database and backup, what failed."""

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.names import BackupId, backup_name_prefix
from backup_pipeline.core.notify.events import RunFacts
from backup_pipeline.defs.names import (
    BACKUP_ID_TAG,
    BACKUP_TYPE_TAG,
    LABEL_TAG,
    PARTITION_TAG,
    run_url,
)
from backup_pipeline.defs.run_lifecycle import RunError, op_config_with, run_database_and_kind, run_failure_error


def database_name(db: DatabaseSettings) -> str:
    """The database's own name (from its URL: never the URL itself), else the configured key."""
    try:
        return db.target().dbname
    except BackupError:
        return db.key


def run_facts(run: dg.DagsterRun, settings: Settings) -> RunFacts:
    db, kind = run_database_and_kind(run, settings)
    facts = dict(job=run.job_name, run_id=run.run_id, run_url=run_url(settings.webserver_url, run.run_id), kind=kind)
    if db is None:
        return RunFacts(**facts)
    facts["database"] = database_name(db)
    backup_id = run.tags.get(PARTITION_TAG) or run.tags.get(BACKUP_ID_TAG)
    backup_type = run.tags.get(BACKUP_TYPE_TAG) or None
    if kind == "restore":
        config = op_config_with(run.run_config, "backup_name")
        facts["backup_name"] = config.get("backup_name")
        facts["target_db"] = config.get("target_db")
    elif backup_id:
        try:
            backup_type = backup_type or BackupId.parse(backup_id).type
            facts["backup_name"] = f"{backup_name_prefix(db.name_prefix, database_name(db))}_{backup_id}"
        except BackupError:
            facts["backup_name"] = backup_id  # not one of our ids: show it as it is
    facts["backup_type"] = backup_type
    facts["label"] = run.tags.get(LABEL_TAG) or None
    return RunFacts(**facts)


def failure_error(context: dg.RunFailureSensorContext) -> RunError:
    return run_failure_error(context.instance, context.dagster_run.run_id, context.failure_event)


def materialization_metadata(instance: dg.DagsterInstance, run_id: str) -> dict[dg.AssetKey, dict]:
    """Each asset's materialization metadata in a run, as plain values."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    found = {}
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        if materialization is not None:
            found[materialization.asset_key] = {k: v.value for k, v in materialization.metadata.items()}
    return found


def asset_check_evaluations(instance: dg.DagsterInstance, run_id: str) -> list:
    """The asset check evaluations a run recorded (dg.AssetCheckEvaluation: check_name, passed, description)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records]
