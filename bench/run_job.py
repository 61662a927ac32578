"""One run of backup_job (dump, upload, verify) through Dagster, in a process of its own, as users run it.

Configured by the environment exactly like the code location (DATABASE_URL, BACKUP_S3_*, BACKUP_LOCAL_DIR,
BACKUP_DUMP_FORMAT, ...), with a throwaway DAGSTER_HOME. Prints one JSON line: the run's duration and
this process's peak RSS (Dagster itself included).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_1g BACKUP_LOCAL_DIR=/tmp/b python -m bench.run_job
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import own_peak_rss_mb

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="bench-job-home-"))
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        import dagster as dg

        from backup_pipeline.core.config_loading import load_settings
        from backup_pipeline.core.names import BackupId
        from backup_pipeline.definitions import build_definitions

        defs = build_definitions(load_settings())
        backup_id = str(BackupId.new("manual"))
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("backups", [backup_id])
            started = time.monotonic()
            result = defs.resolve_job_def("backup_job").execute_in_process(
                instance=instance, partition_key=backup_id, raise_on_error=False
            )
            seconds = time.monotonic() - started
        if not result.success:
            print(json.dumps({"error": "backup_job failed"}))
            return 1
        print(
            json.dumps(
                {"backup_id": backup_id, "duration_s": round(seconds, 3), "peak_rss_mb": round(own_peak_rss_mb(), 1)}
            )
        )
        return 0
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
