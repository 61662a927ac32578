"""A backup_batch run's one piece of config, the databases it backs up: written by the schedule's sensor, read
by the job and by the alerts (which import it without the job and its assets)."""

import dagster as dg

from backup_pipeline.defs.names import BATCH_PLAN_OP


class BatchConfig(dg.Config):
    databases: list[str]


def batch_run_config(keys) -> dict:
    return {"ops": {BATCH_PLAN_OP: {"config": {"databases": list(keys)}}}}


def batch_keys(run_config: dict | None) -> list[str]:
    """The database keys a backup_batch run was asked to back up, from its run config."""
    ops = (run_config or {}).get("ops", {})
    return list(((ops.get(BATCH_PLAN_OP) or {}).get("config") or {}).get("databases") or [])
