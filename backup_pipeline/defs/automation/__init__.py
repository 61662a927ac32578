"""What starts backups and retention: one schedule per distinct cron, one sensor that turns backup requests
into backup runs, and one sensor that prunes a database after its scheduled backup, for every database.

A dynamic partition must exist before a run for it starts, and a schedule cannot add partitions atomically
nor start runs of assets with different partitions (each database has its own). So every backup run is born
in one place: a schedule's tick launches one request_backup run naming every database on that cron, as
the UI, `dagster job launch` and `backup-db backup --no-wait` request one database's; the request sensor
answers each successful request with one SensorResult that adds each database's partition and starts one
run per database, atomically. A 06:00 tick over 300 databases is one request run, then 300 queued runs
that the run queue lets through a few at a time (dagster.yaml).

By concern: `schedules` (one per distinct cron), `backup_requests` (what a successful request run asks for,
and a sensor's answer to it), `request_sensor` (requests of one database), `batch_sensor` (requests naming
several databases, answered with backup_batch runs), `retention` (the prune after each scheduled backup).
"""

from backup_pipeline.defs.automation.batch_sensor import build_batch_sensor
from backup_pipeline.defs.automation.request_sensor import build_request_sensor
from backup_pipeline.defs.automation.retention import build_retention_job, make_retention_on_backup_success_sensor
from backup_pipeline.defs.automation.schedules import build_backup_schedules

__all__ = [
    "build_backup_schedules",
    "build_batch_sensor",
    "build_request_sensor",
    "build_retention_job",
    "make_retention_on_backup_success_sensor",
]
