"""Running the pipeline's Dagster jobs in process against a real instance, as the tests need."""

from __future__ import annotations

import dagster as dg

from backup_pipeline.core.names import BackupId
from backup_pipeline.definitions import defs


def load_defs() -> dg.Definitions:
    """Definitions built from the current environment, the way Dagster loads the code location."""
    return defs()


def run_backup(
    instance: dg.DagsterInstance,
    backup_type: str = "manual",
    backup_id: str | None = None,
    defs: dg.Definitions | None = None,
    job_name: str = "backup_job",
    partitions: str = "backups",
):
    """Registers a backup partition and runs backup_job for it in process; returns (result, backup id)."""
    defs = defs or load_defs()
    backup_id = backup_id or str(BackupId.new(backup_type))
    instance.add_dynamic_partitions(partitions, [backup_id])
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, partition_key=backup_id, raise_on_error=False
    )
    return result, backup_id


def run_restore(instance: dg.DagsterInstance, defs: dg.Definitions | None = None, **config):
    """Runs restore_job in process with `config` (backup_name, target_db, ...), confirmed as a user must."""
    job = (defs or load_defs()).resolve_job_def("restore_job")
    run_config = {"ops": {"restore_backup": {"config": {"confirm": "RESTORE", **config}}}}
    return job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)


def failure_message(result) -> str:
    """The descriptions of every failed step of an in-process run, joined."""
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            messages.append(data.user_failure_data.description if data.user_failure_data else data.error.message)
    return "\n".join(m or "" for m in messages)
