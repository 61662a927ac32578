"""What the alert sensors post for a run of backup_batch (defs/batches.py): one message per database.

A batch backs up several databases, one step each. Each database gets what a run of its own would have got:
its failure (from its own step's error), a health warning when its backup failed a health check, and its
success notice; a database whose step succeeded is announced even when another database made the run fail.
A failure whose cause others may share (its server unreachable, storage failing) is left to the incident
sensor when grouping is on, as a run of its own would be: it is told as one message with the other databases
that failed for that cause (`batch_outcomes`).
"""

import re
from dataclasses import dataclass

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings, Settings
from backup_pipeline.core.health import HEALTH_CHECKS
from backup_pipeline.core.incidents import cause_of
from backup_pipeline.core.names import backup_name_prefix
from backup_pipeline.core.notify.events import BackupFacts, Event, RunError, RunFacts
from backup_pipeline.defs.alerts.runs import asset_check_evaluations, database_name, materialization_metadata
from backup_pipeline.defs.batch_config import batch_keys
from backup_pipeline.defs.names import (
    BACKUP_ID_TAG,
    BACKUP_TYPE_TAG,
    BATCH_BACKUP_OP,
    BATCH_JOB,
    BATCH_PRUNE_OP,
    LABEL_TAG,
    DefinitionNames,
    run_url,
)
from backup_pipeline.defs.run_lifecycle import run_failure_error, step_error

_STEP = re.compile(r"^(?P<op>\w+)\[(?P<key>\w+)\]$")


def is_batch(run: dg.DagsterRun) -> bool:
    return run.job_name == BATCH_JOB


@dataclass(frozen=True)
class BatchOutcome:
    """How one database's backup ended in a batch run: backed up and verified, or failed with `error`."""

    db: DatabaseSettings
    ok: bool
    error: RunError | None = None


def _batch_record(instance: dg.DagsterInstance, run: dg.DagsterRun, settings: Settings) -> tuple[list, dict, dict]:
    """A batch run's databases that are still configured, its failed steps and its materializations' metadata."""
    by_key = {db.key: db for db in settings.databases}
    databases = [by_key[key] for key in batch_keys(run.run_config) if key in by_key]
    return databases, _step_failures(instance, run.run_id), materialization_metadata(instance, run.run_id)


def batch_outcomes(instance: dg.DagsterInstance, run: dg.DagsterRun, settings: Settings) -> list[BatchOutcome]:
    """Each database of a finished batch run whose backup step ended: verified, or failed and why."""
    databases, failures, stored = _batch_record(instance, run, settings)
    outcomes = []
    for db in databases:
        key = db.key
        if (BATCH_BACKUP_OP, key) in failures:
            outcomes.append(BatchOutcome(db, ok=False, error=failures[(BATCH_BACKUP_OP, key)]))
        elif dg.AssetKey(DefinitionNames(db).asset_path("restore_verification")) in stored:
            outcomes.append(BatchOutcome(db, ok=True))
    return outcomes


def batch_failure_event(instance: dg.DagsterInstance, run: dg.DagsterRun, settings: Settings, key: str) -> Event | None:
    """The failure message of one database of a batch run, as batch_events tells it."""
    db = next((db for db in settings.databases if db.key == key), None)
    error = _step_failures(instance, run.run_id).get((BATCH_BACKUP_OP, key))
    if db is None or error is None:
        return None
    return Event.failure(_facts(run, settings, db, "backup"), error, key)


def batch_events(
    instance: dg.DagsterInstance, run: dg.DagsterRun, settings: Settings, notices: bool = True, grouped: bool = False
) -> list[Event]:
    """Per database of a finished batch run: its failure, or its health warning and (with `notices`) its
    notice. A run that failed before any database's step did (a crash, the run monitor) is one failure.
    With `grouped`, a failure whose cause others may share is left out: the incident sensor tells it."""
    databases, failures, stored = _batch_record(instance, run, settings)
    checks = asset_check_evaluations(instance, run.run_id)
    messages = []
    for db in databases:
        key = db.key
        names = DefinitionNames(db)
        if (BATCH_BACKUP_OP, key) in failures:
            error = failures[(BATCH_BACKUP_OP, key)]
            if not (grouped and cause_of(error.message)):
                messages.append(Event.failure(_facts(run, settings, db, "backup"), error, key))
            continue
        verification = stored.get(dg.AssetKey(names.asset_path("restore_verification")))
        if verification is not None:
            offsite = dg.AssetKey(names.asset_path("offsite_backup"))
            failed = [
                (c.check_name, c.description or "")
                for c in checks
                if c.asset_key == offsite and not c.passed and c.check_name in HEALTH_CHECKS
            ]
            if failed:
                messages.append(Event.health_warning(_facts(run, settings, db, "backup"), failed, key))
            if notices:
                offsite_meta = stored.get(offsite, {})
                backup = BackupFacts(
                    file_name=f"{offsite_meta['name']}.dump" if offsite_meta.get("name") else None,
                    size_bytes=offsite_meta.get("size_bytes"),
                    duration_s=offsite_meta.get("duration_s"),
                    verified=bool(verification.get("verified")),
                    rows=verification.get("rows"),
                )
                messages.append(Event.success(_facts(run, settings, db, "backup"), backup, key))
        if (BATCH_PRUNE_OP, key) in failures:
            messages.append(Event.failure(_facts(run, settings, db, "prune"), failures[(BATCH_PRUNE_OP, key)], key))
    if run.status == dg.DagsterRunStatus.FAILURE and not failures:
        facts = RunFacts(job=run.job_name, run_id=run.run_id, run_url=run_url(settings.webserver_url, run.run_id))
        databases = ", ".join(batch_keys(run.run_config))
        error = run_failure_error(instance, run.run_id)
        told = RunError(f"{error.message}\nDatabases of this batch, none backed up: {databases}", error.error_class)
        messages.append(Event.failure(facts, told))
    return messages


def _step_failures(instance: dg.DagsterInstance, run_id: str) -> dict:
    """(op, database key) → RunError of each failed step of the run."""
    found = {}
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        event = record.event_log_entry.dagster_event
        match = _STEP.match(event.step_key or "")
        if match:
            found[(match["op"], match["key"])] = step_error(event.step_failure_data)
    return found


def _facts(run: dg.DagsterRun, settings: Settings, db: DatabaseSettings, kind: str) -> RunFacts:
    backup_id = run.tags.get(BACKUP_ID_TAG)
    name = database_name(db)
    return RunFacts(
        job=run.job_name,
        run_id=run.run_id,
        run_url=run_url(settings.webserver_url, run.run_id),
        kind=kind,
        database=name,
        backup_name=f"{backup_name_prefix(db.name_prefix, name)}_{backup_id}" if backup_id else None,
        backup_type=run.tags.get(BACKUP_TYPE_TAG) or None,
        label=run.tags.get(LABEL_TAG) or None,
    )
