"""Each database's settings: the environment gives the one database of DATABASE_URL (and the defaults of the
databases file), the databases file each database's own under the field name (`file=`, else the name)."""

from __future__ import annotations

from backup_pipeline.core import config_fields as f
from backup_pipeline.core.dump_options import MAX_JOBS
from backup_pipeline.core.settings.declaration import DATABASE, IN_ENTRIES, REQUIRED_IN_ENTRIES, Setting

DAYS = (1, 36_500)  # up to 100 years: past it a window would overflow date arithmetic

SETTINGS = (
    Setting(
        name="key",
        env=None,
        section=DATABASE,
        help=(
            "names the database's Dagster assets, jobs and partitions (asset `billing/database_dump`, group and "
            "partitions `billing_backups`); see [Several databases](#several-databases)"
        ),
        type=f.DatabaseKey,
        default="default",
        shown_default="`default` (`DATABASE_URL` alone)",
        file_scope=REQUIRED_IN_ENTRIES,
    ),
    Setting(
        name="url_env",
        env="DATABASE_URL",
        section=DATABASE,
        help=(
            "libpq URL of the database to back up (`sslmode` and other libpq options are honoured); in the "
            "databases file: the name of the variable holding it, never the URL"
        ),
        type=f.EnvName,
        default="DATABASE_URL",
        shown_default="required",
        holds_name=True,
        file_scope=REQUIRED_IN_ENTRIES,
    ),
    Setting(
        name="dbname",
        env=None,
        section=DATABASE,
        help=(
            "the database to back up on the server of `url_env`, when it is not the one the URL names (set for "
            "each database a `servers:` entry takes; see [Several databases](#several-databases))"
        ),
        type=f.Text,
        shown_default="the URL's database",
        file_scope=IN_ENTRIES,
    ),
    # The environment's prefix is checked where the database name is known (defs/resources.py, cli/context.py),
    # so a bad one fails the run, not the code location's load; the file's is checked with its line.
    Setting(
        name="name_prefix",
        env="BACKUP_NAME_PREFIX",
        section=DATABASE,
        help="`<prefix>` in object names `<prefix>_<type>_<YYYYMMDD_HHMMSS>.dump`",
        type=str,
        shown_default="the database name",
        file_scope=IN_ENTRIES,
        file_type=f.NamePrefix,
    ),
    Setting(
        name="storage_prefix",
        env="BACKUP_S3_PREFIX",
        section=DATABASE,
        help="key prefix (folder) of the objects",
        type=f.StoragePrefix,
        default="db-backups",
    ),
    Setting(
        name="retention_days",
        env="BACKUP_RETENTION_DAYS",
        section=DATABASE,
        help="retention window in days",
        type=int,
        default=30,
        bounds=DAYS,
    ),
    Setting(
        name="keep_last",
        env="BACKUP_KEEP_LAST",
        section=DATABASE,
        help="newest verified backups always kept, whatever their age",
        type=int,
        default=7,
        bounds=(0, 100_000),
    ),
    Setting(
        name="keep_daily",
        env="BACKUP_KEEP_DAILY",
        section=DATABASE,
        help=(
            "grandfather-father-son: also keep the newest verified backup of each of the last N days that have "
            "one, whatever its age; counted over periods that hold a backup, so an outage never eats the history. "
            "Each kept backup's reason names the rule: `keep_monthly 12: newest verified backup of the month 2026-03`"
        ),
        type=int,
        default=0,
        bounds=(0, 36_500),
        shown_default="0 (off)",
    ),
    Setting(
        name="keep_weekly",
        env="BACKUP_KEEP_WEEKLY",
        section=DATABASE,
        help=(
            "grandfather-father-son, as `BACKUP_KEEP_DAILY`: the newest verified backup of each of the last N ISO weeks"
        ),
        type=int,
        default=0,
        bounds=(0, 5_200),
        shown_default="0 (off)",
    ),
    Setting(
        name="keep_monthly",
        env="BACKUP_KEEP_MONTHLY",
        section=DATABASE,
        help="grandfather-father-son: of each of the last N months",
        type=int,
        default=0,
        bounds=(0, 1_200),
        shown_default="0 (off)",
    ),
    Setting(
        name="keep_yearly",
        env="BACKUP_KEEP_YEARLY",
        section=DATABASE,
        help="grandfather-father-son: of each of the last N years",
        type=int,
        default=0,
        bounds=(0, 100),
        shown_default="0 (off)",
    ),
    Setting(
        name="pre_migration_retention_days",
        env="BACKUP_PRE_MIGRATION_RETENTION_DAYS",
        section=DATABASE,
        help=(
            "a window of its own for pre-migration backups, in days; past it they go unless keep-last or GFS keeps them"
        ),
        type=int,
        default=None,
        bounds=DAYS,
        shown_default="unset: pre-migration backups are kept forever",
    ),
    Setting(
        name="auto_prune",
        env="BACKUP_AUTO_PRUNE",
        section=DATABASE,
        help=(
            "retention runs by itself after each successful scheduled (daily) backup (`false`: only when someone "
            "runs prune)"
        ),
        type=f.Flag,
        default=True,
    ),
    Setting(
        name="health_max_row_drop_percent",
        env="BACKUP_HEALTH_MAX_ROW_DROP_PERCENT",
        section=DATABASE,
        help=(
            "the `rows_not_dropped` health check warns when total rows fall by more than this share of the "
            "previous verified backup's"
        ),
        type=float,
        default=20,
        bounds=(0, 100),
    ),
    Setting(
        name="schedule_cron",
        env="BACKUP_SCHEDULE_CRON",
        section=DATABASE,
        help="when the daily backup runs (cron, UTC)",
        type=f.Cron,
        default="0 6 * * *",
        file="schedule",
    ),
    Setting(
        name="schedule_jitter_minutes",
        env="BACKUP_SCHEDULE_JITTER_MINUTES",
        section=DATABASE,
        help=(
            "with several databases: a night's scheduled backups start spread over this many minutes after the tick "
            "instead of all at it (each server's batches evenly over the largest window its databases give)"
        ),
        type=int,
        default=0,
        bounds=(0, 720),
        shown_default="0 (all at the tick)",
    ),
    Setting(
        name="server_max_runs",
        env="BACKUP_SERVER_MAX_RUNS",
        section=DATABASE,
        help=(
            "with several databases: backup runs at once against one server (`host:port` of the database's URL), "
            "its connection budget; a server takes the smallest its databases give (see "
            "[Several databases](#several-databases))"
        ),
        type=int,
        default=4,
        bounds=(1, 100),
    ),
    Setting(
        name="batch_size",
        env="BACKUP_BATCH_SIZE",
        section=DATABASE,
        help=(
            "with several databases: databases of one server backed up by one run of a night; a server takes the "
            "smallest its databases give"
        ),
        type=int,
        default=10,
        bounds=(1, 1000),
    ),
    Setting(
        name="freshness_hours",
        env="BACKUP_FRESHNESS_HOURS",
        section=DATABASE,
        help="the dead-man's switch fires when no verified backup is younger than this many hours",
        type=float,
        default=26,
        bounds=(1, 8_784),
    ),
    Setting(
        name="stall_seconds",
        env="BACKUP_STALL_SECONDS",
        section=DATABASE,
        help=(
            "the watchdog of every wait of a backup, a verification and a restore: a dump, upload or download "
            "that moves no bytes for this long, a pg_restore that takes none while its sessions do no work, or "
            "the row counts or a pg_restore waiting this long for a lock, is stopped (its statements cancelled on"
            " the server) and fails the run, naming what it waited for: the stalled side, or the lock and the "
            "session holding it (pid, user, query when this role may see it)"
        ),
        type=float,
        default=600,
        bounds=(1, 86_400),
    ),
    Setting(
        name="verify_on",
        env="BACKUP_VERIFY_ON",
        section=DATABASE,
        help=(
            "where verification restores: `local` (a throwaway PostgreSQL on this machine, made and removed per "
            "verification), `source` (a scratch database on the server of `DATABASE_URL`: needs CREATEDB and room"
            " for a full copy there), `url` (on `BACKUP_VERIFY_DATABASE_URL`'s server); see [Where verification "
            "runs](#where-verification-runs)"
        ),
        type=f.VerifyOn,
        shown_default="`url` when `BACKUP_VERIFY_DATABASE_URL` is set, else `local`",
    ),
    Setting(
        name="verify_url_env",
        env="BACKUP_VERIFY_DATABASE_URL",
        section=DATABASE,
        help=(
            "server for verification's scratch databases (needs CREATEDB); setting it means "
            "`BACKUP_VERIFY_ON=url`; in the databases file: the name of the variable holding the URL"
        ),
        type=f.EnvName,
        holds_name=True,
    ),
    Setting(
        name="verify_local_dir",
        env="BACKUP_VERIFY_LOCAL_DIR",
        section=DATABASE,
        help="folder the local verification server is made in (its disk must hold the restored database)",
        type=f.Text,
        shown_default="the temporary folder (`TMPDIR`)",
    ),
    Setting(
        name="dump_format",
        env="BACKUP_DUMP_FORMAT",
        section=DATABASE,
        help=(
            "`custom` (one streamed pg_dump archive) or `directory` (parallel `pg_dump -j`, stored as one tar object)"
        ),
        type=f.DumpFormat,
        default="custom",
    ),
    Setting(
        name="dump_jobs",
        env="BACKUP_DUMP_JOBS",
        section=DATABASE,
        help=(
            "parallel pg_dump jobs, and pg_restore jobs when verifying; above 1 needs `BACKUP_DUMP_FORMAT=directory`"
        ),
        type=int,
        default=1,
        bounds=(1, MAX_JOBS),
    ),
    Setting(
        name="compression",
        env="BACKUP_COMPRESSION",
        section=DATABASE,
        help=(
            "`gzip:N` (N 0-9, or just `N`; `gzip` alone is pg_dump's own level 6), `none`; `lz4[:N]`, `zstd[:N]` "
            "only with pg_dump 16 or newer (and a client built with them)"
        ),
        type=f.CompressionText,
        shown_default=(
            "`gzip:1` on every pg_dump (measured in "
            "[bench/README.md](bench/README.md#compression-with-pg_dump-18-bench_compressionpy): 3 times faster "
            "than gzip 6 for an 11 % larger object)"
        ),
    ),
)
