"""Settings of the whole deployment, and variables read by the code that uses them (not part of the models)."""

from __future__ import annotations

from backup_pipeline.core import config_fields as f
from backup_pipeline.core.settings.declaration import DEPLOYMENT, READ_WHERE_USED, Setting

SETTINGS = (
    Setting(
        name="webserver_url",
        env="DAGSTER_WEBSERVER_URL",
        section=DEPLOYMENT,
        help="base of links to runs in messages (`backup-db`, Discord)",
        type=f.WebserverUrl,
        shown_default=("a Dagster webserver answering at `http://localhost:3000`; with none, messages carry no link"),
    ),
    Setting(
        name="config_file",
        env="BACKUP_CONFIG_FILE",
        section=READ_WHERE_USED,
        help=(
            "YAML file listing several databases, each with its own URL variable, names, schedule and retention "
            "(see [Several databases](#several-databases))"
        ),
        shown_default="none: `DATABASE_URL` alone",
    ),
    Setting(
        name="restore_targets",
        env="BACKUP_RESTORE_TARGETS",
        section=READ_WHERE_USED,
        help=(
            "servers a restore may write to besides each database's own, as `key=VARIABLE` pairs separated by "
            "commas (the variable holds the server's libpq URL); `restore_job`'s run config names one as `target:"
            " KEY`, never a URL or a variable; see [How to restore](#how-to-restore)"
        ),
        shown_default="none",
    ),
    Setting(
        name="pg_bin_dir",
        env="BACKUP_PG_BIN_DIR",
        section=READ_WHERE_USED,
        help=(
            "folder holding the `pg_dump`/`pg_restore` to use, whatever the server (see [PostgreSQL "
            "versions](#postgresql-versions))"
        ),
        shown_default=(
            "chosen per server: one of the server's major, else the newest newer one, the bundled PostgreSQL 18 "
            "among them"
        ),
    ),
)
