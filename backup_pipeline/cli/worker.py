"""Executes one run in process against the instance at DAGSTER_HOME: `python -m backup_pipeline.cli.worker RUN_ID SPEC`.

Started by `backup-db` (worker_process.py); SPEC is the run's public description (job, run config, tags,
partition) as JSON. It loads the code, then waits for `run` on stdin before executing. Anything secret
arrives in the environment, never in SPEC.
"""

from __future__ import annotations

import json
import sys

GO = "run"


def main(argv: list[str] | None = None) -> int:
    import dagster as dg

    from backup_pipeline.core.config import load_settings
    from backup_pipeline.definitions import build_definitions
    from backup_pipeline.defs.alerts.in_process import announce_in_process_run

    run_id, spec_text = argv if argv is not None else sys.argv[1:]
    spec = json.loads(spec_text)
    defs = build_definitions(load_settings())
    job = defs.resolve_job_def(spec["job_name"])
    # Loaded while the command looked for a daemon: run only when told to (EOF means a daemon has it).
    if sys.stdin.readline().strip() != GO:
        return 0
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            run_config=spec["run_config"],
            instance=instance,
            partition_key=spec["partition_key"],
            asset_selection=[dg.AssetKey(path) for path in spec["asset_selection"]]
            if spec.get("asset_selection")
            else None,
            run_id=run_id,
            tags=spec["tags"],
            raise_on_error=False,
        )
        announce_in_process_run(defs, instance, result)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
