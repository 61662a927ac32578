"""Facts about a finished run, read from the run and its event log: which database and backup, what failed."""

import os

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.names import BackupId, backup_name_prefix
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.defs.alerts.messages import RunError, RunFacts
from backup_pipeline.defs.names import (
    BACKUP_ID_TAG,
    BACKUP_TYPE_TAG,
    DATABASE_TAG,
    ERROR_CLASS_METADATA,
    KIND_TAG,
    LABEL_TAG,
    PARTITION_TAG,
    REQUEST_JOB,
    RESTORE_JOB,
    DefinitionNames,
    run_url,
)


def job_kinds(settings: Settings) -> dict[str, tuple[DatabaseSettings | None, str]]:
    """Named job → (its database, when it has only one; what kind of job it is)."""
    kinds: dict[str, tuple[DatabaseSettings | None, str]] = {
        REQUEST_JOB: (None, "request"),
        RESTORE_JOB: (None, "restore"),
    }
    for db in settings.databases:
        names = DefinitionNames(db)
        if names.has_named_jobs:
            kinds.update(
                {names.backup_job: (db, "backup"), names.verify_job: (db, "verify"), names.prune_job: (db, "prune")}
            )
    return kinds


def run_database_and_kind(run: dg.DagsterRun, settings: Settings) -> tuple[DatabaseSettings | None, str]:
    """Which database a run concerned and what it did: from our tags, else from the job, else from the assets it
    selected (a run started from the UI's Materialize button carries none of our tags)."""
    db, kind = job_kinds(settings).get(run.job_name, (None, "other"))
    by_key = {d.key: d for d in settings.databases}
    db = by_key.get(run.tags.get(DATABASE_TAG, ""), db)
    kind = run.tags.get(KIND_TAG, kind)
    if kind == "restore" and db is None:
        key = _op_config_with(run.run_config, "backup_name").get("database")
        db = by_key.get(key) if key else (settings.databases[0] if len(settings.databases) == 1 else None)
    if (db is None or kind == "other") and run.asset_selection:
        db, kind = _from_assets(run.asset_selection, settings, db, kind)
    return db, kind


def _from_assets(selection, settings: Settings, db, kind):
    paths = [key.path for key in selection]
    for candidate in settings.databases:
        prefix = DefinitionNames(candidate).key_prefix
        if all(path[: len(prefix)] == prefix for path in paths):
            db = candidate
            break
    leaves = {path[-1] for path in paths}
    if kind == "other":
        if "database_dump" in leaves:
            kind = "backup"
        elif leaves == {"restore_verification"}:
            kind = "verify"
        elif leaves == {"backup_retention"}:
            kind = "prune"
    return db, kind


def database_name(db: DatabaseSettings) -> str:
    """The database's own name (from its URL: never the URL itself), else the configured key."""
    try:
        return PostgresTarget.from_url(os.environ.get(db.url_env), db.url_env).dbname
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
        config = _op_config_with(run.run_config, "backup_name")
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


def run_failure_error(instance: dg.DagsterInstance, run_id: str, failure_event=None) -> RunError:
    """The failing step's own error, or the run's when no step got to fail (a crash, the run monitor)."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        data = record.event_log_entry.dagster_event.step_failure_data
        if data.user_failure_data and data.user_failure_data.description:
            error_class = data.user_failure_data.metadata.get(ERROR_CLASS_METADATA)
            return RunError(data.user_failure_data.description, error_class.value if error_class else None)
        if data.error:
            error = _innermost(data.error)
            return RunError(error.message, error.cls_name)
    if failure_event is None:
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        if not records:
            return RunError("")
        failure_event = records[-1].event_log_entry.dagster_event
    failure = failure_event.job_failure_data if failure_event.is_job_failure else None
    if failure is not None and failure.error is not None:
        return RunError(failure.error.message, failure.error.cls_name)
    return RunError(failure_event.message or "")


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


def _innermost(error):
    """The user's own exception, not the framework's wrapper around it."""
    while error.cause is not None:
        error = error.cause
    return error


def _op_config_with(run_config: dict, key: str) -> dict:
    for op in (run_config or {}).get("ops", {}).values():
        config = (op or {}).get("config") or {}
        if key in config:
            return config
    return {}
