"""Executes one run in process on the instance at DAGSTER_HOME: `python -m backup_pipeline.cli.run_process ...`.

Started by `backup-db` when no webserver queues the run (runs.py), with the run's id and its job, run config,
tags and partition as JSON; anything secret arrives in the environment. The daemon's run-status sensors
never see such a run (it has no code location origin), so this process announces it on the alert channels itself.
"""

from __future__ import annotations

import json
import sys

import dagster as dg

from backup_pipeline.core.enrolled import load_all_settings as load_settings
from backup_pipeline.definitions import build_definitions
from backup_pipeline.defs.alerts.announce import ANNOUNCED_TAG, ANNOUNCER, announce_finished_run
from backup_pipeline.defs.run_lifecycle import owner_tags


def main(argv: list[str]) -> int:
    run_id, spec_json = argv
    spec = json.loads(spec_json)
    settings = load_settings()
    defs = build_definitions(settings)
    # resolve_job_def from dagster 1.11 on (get_job_def warns there); 1.10 has only get_job_def.
    job = getattr(defs, "resolve_job_def", defs.get_job_def)(spec["job_name"])
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            run_config=spec["run_config"],
            instance=instance,
            partition_key=spec["partition_key"],
            asset_selection=[dg.AssetKey(path) for path in spec["asset_selection"] or []] or None,
            run_id=run_id,
            # This process's identity: if it is killed, the next command or the daemon fails the run (run_lifecycle.py).
            tags={**spec["tags"], ANNOUNCED_TAG: ANNOUNCER, **owner_tags()},
            raise_on_error=False,
        )
        announce_finished_run(settings, instance, run_id)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
