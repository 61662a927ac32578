"""Names of the Dagster definitions: asset keys, jobs, partitions, pools, resource keys, run tags.

Per database: its assets (group, key prefix), its partitions (one per backup) and its concurrency pool. Shared by every database, so that their number does not grow with the databases:
the request_backup and restore_job jobs, the request and freshness sensors, the alert sensors, one
schedule per distinct cron, and the resources.

With one database (DATABASE_URL alone) the names are plain (`backup_job`, `database_dump`) and its backup,
verify and prune runs are runs of the named jobs `backup_job`, `verify_job`, `prune_job`. With several,
each database's names carry its key (`billing/database_dump`, partitions `billing_backups`); `backup-db`'s runs
materialize a selection of its own assets (Dagster's implicit asset job, what the UI's Materialize button
runs), and the sensors' runs are the shared backup_batch and retention_job, whose config names the
databases: one named job per database and purpose would make the code location's snapshot grow with the
square of the databases (every job carries every resource's config).
No Dagster import here: the command line uses these names too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backup_pipeline.core.config import DEFAULT_SCHEDULE_CRON, DatabaseSettings
from backup_pipeline.core.webserver import asset_link, run_link

DATABASE_TAG = "backup/database"
BACKUP_ID_TAG = "backup/id"
BACKUP_TYPE_TAG = "backup/type"
QUIET_TAG = "backup/quiet"
REQUESTED_BY_TAG = "backup/requested_by"  # who asked: a request_backup run's id, or backup-db
KIND_TAG = "backup/kind"  # backup, verify, prune, restore or request
PARTITION_TAG = "dagster/partition"  # Dagster's own tag for a run's partition
# What the backup protects (e.g. a migration's name): stored in its manifest, shown in the UI and the notices.
LABEL_TAG = "backup/label"
# The server a backup run works against (`host:port`, core/servers.py) and its lane there: the run queue lets
# one run per lane through at a time (dagster.yaml), so a server has at most its budget of runs at once.
SERVER_TAG = "backup/server"
LANE_TAG = "backup/server_lane"
RESTORE_SERVER_TAG = "backup/restore_server"  # user@host:port/db a restore run writes to (never a password)
PRIORITY_TAG = "dagster/priority"  # Dagster's run queue lets higher values through first
# On runs `backup-db` executes in its own process, which announces them itself: the sensors leave them alone.
ANNOUNCED_TAG = "backup/announced_by"
# On those runs too: the host, pid and start time of the process running them, so a run whose process died
# is failed (defs/run_lifecycle.py) instead of staying STARTED and holding its database's place in the queue.
RUN_HOST_TAG = "backup/host"
RUN_PID_TAG = "backup/pid"
RUN_PID_STARTED_TAG = "backup/pid_started"
RUN_PID_NAMESPACE_TAG = "backup/pid_namespace"
DEAD_RUN_SENSOR = "dead_run_sensor"
# On a failed step: the class name of our error (core/errors.py, core/prune.py), so the alerts tell a
# refused prune from a failed one by its type, not by its wording.
ERROR_CLASS_METADATA = "backup/error_class"
# The resources' keys: the assets, ops, checks and sensors take them as typed parameters of these names.
STORAGE_RESOURCE_KEY = "backup_storage"
POSTGRES_RESOURCE_KEY = "postgres"

REQUEST_JOB = "request_backup"
REQUEST_OP = "backup_request"
RESTORE_JOB = "restore_job"
RESTORE_OP = "restore_backup"
PRUNE_OP = "backup_retention"  # the op behind every database's backup_retention asset
REQUEST_SENSOR = "backup_request_sensor"
# A night's scheduled backups of several databases: runs of backup_batch, each backing up a few databases of
# one server as one step per database, started by the batch sensor.
BATCH_JOB = "backup_batch"
BATCH_PLAN_OP = "batch_databases"
BATCH_BACKUP_OP = "back_up_database"
BATCH_PRUNE_OP = "prune_after_backup"
BATCH_SENSOR = "backup_batch_sensor"
FRESHNESS_SENSOR = "backup_freshness_sensor"
# Looks at the servers of the databases file's `servers:` and records which databases they hold.
ENROLMENT_SENSOR = "server_enrolment_sensor"
# Posts the failures that share a cause (a server down, storage failing) as one message per incident.
INCIDENT_SENSOR = "backup_incident_sensor"
CODE_LOCATION_NAME = "backup_pipeline"  # as in workspace.yaml and deploy/workspace.yaml
RETENTION_SENSOR = "backup_retention_sensor"
# With several databases: the one job whose runs prune one database's backups (its op's config names it).
RETENTION_JOB = "retention_job"
RETENTION_OP = "prune_one_database"
DAILY_SCHEDULE = "daily_backup_schedule"
# Dagster's implicit asset job: runs of a selection of assets outside any named job (the UI's Materialize
# button, `dagster asset materialize`) are runs of it.
ASSET_JOB = "__ASSET_JOB"

BACKUP_ASSETS = ("database_dump", "offsite_backup", "restore_verification")
VERIFY_ASSETS = ("restore_verification",)
PRUNE_ASSETS = ("backup_retention",)
# The work a run does on one database, and the assets it materializes.
RUN_PURPOSES = {"backup": BACKUP_ASSETS, "verify": VERIFY_ASSETS, "prune": PRUNE_ASSETS}


def run_url(webserver_url: str | None, run_id: str) -> str | None:
    """The run's page in the Dagster UI: under DAGSTER_WEBSERVER_URL, else a webserver running here; None
    when neither is known, so messages leave the link out rather than point nowhere."""
    return run_link(webserver_url, run_id)


def asset_url(webserver_url: str | None, asset_path: list[str]) -> str | None:
    return asset_link(webserver_url, list(asset_path))


def schedule_name(cron: str, only_default_database: bool = False) -> str:
    """The schedule shared by every database with this cron: `daily_backup_schedule` for 06:00 UTC, and for
    the one database of a DATABASE_URL setup whatever its BACKUP_SCHEDULE_CRON."""
    if cron == DEFAULT_SCHEDULE_CRON or only_default_database:
        return DAILY_SCHEDULE
    return "backup_schedule_" + re.sub(r"[^0-9A-Za-z]+", "_", cron.replace("*", "x")).strip("_")


@dataclass(frozen=True)
class RunTarget:
    """What a run of one database's backup, verify or prune work starts: with one database its named job
    (`backup_job`), with several Dagster's implicit asset job over a selection of the database's own assets."""

    job_name: str
    asset_selection: list[list[str]] | None = None  # asset key paths; None: the named job as a whole

    @property
    def named_job(self) -> str | None:
        """The job a sensor's run request names: none for a selection of assets (the sensor's own target)."""
        return self.job_name if self.asset_selection is None else None


@dataclass(frozen=True)
class DefinitionNames:
    db: DatabaseSettings

    def _name(self, base: str) -> str:
        return base if self.db.is_default else f"{self.db.key}__{base}"

    @property
    def key_prefix(self) -> list[str]:
        return [] if self.db.is_default else [self.db.key]

    def asset_path(self, name: str) -> list[str]:
        return [*self.key_prefix, name]

    def asset_paths(self, names: tuple[str, ...]) -> list[list[str]]:
        return [self.asset_path(n) for n in names]

    @property
    def group(self) -> str:
        return "backups" if self.db.is_default else f"{self.db.key}_backups"

    @property
    def partitions(self) -> str:
        return "backups" if self.db.is_default else f"{self.db.key}_backups"

    @property
    def pool(self) -> str:
        """The concurrency pool of every step that touches this database's backups (one at a time)."""
        return "backup_db" if self.db.is_default else f"backup_db_{self.db.key}"

    @property
    def has_named_jobs(self) -> bool:
        """The one place that decides: the database of a DATABASE_URL setup has named jobs, others do not."""
        return self.db.is_default

    def run_target(self, purpose: str) -> RunTarget:
        """What a run of `purpose` (backup, verify, prune) of this database starts."""
        if self.has_named_jobs:
            return RunTarget(f"{purpose}_job")
        return RunTarget(ASSET_JOB, self.asset_paths(RUN_PURPOSES[purpose]))

    def named_jobs(self) -> dict[str, str]:
        """This database's named jobs (job name → purpose); none when it has a selection of assets instead."""
        return {f"{purpose}_job": purpose for purpose in RUN_PURPOSES} if self.has_named_jobs else {}

    @property
    def backup_job(self) -> str:
        return self.run_target("backup").job_name

    @property
    def verify_job(self) -> str:
        return self.run_target("verify").job_name

    @property
    def prune_job(self) -> str:
        return self.run_target("prune").job_name

    @property
    def backup_selection(self) -> list[list[str]]:
        return self.asset_paths(BACKUP_ASSETS)

    @property
    def verify_selection(self) -> list[list[str]]:
        return self.asset_paths(VERIFY_ASSETS)

    @property
    def prune_selection(self) -> list[list[str]]:
        return self.asset_paths(PRUNE_ASSETS)

    @property
    def prune_op(self) -> str:
        return PRUNE_OP

    @property
    def restore_job(self) -> str:
        return RESTORE_JOB

    @property
    def restore_op(self) -> str:
        return RESTORE_OP

    @property
    def request_sensor(self) -> str:
        return REQUEST_SENSOR
