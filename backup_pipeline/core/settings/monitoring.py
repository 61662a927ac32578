"""Monitoring from outside: heartbeat pings of each backup run and Prometheus metrics (README: Monitoring).
Per database, so a databases file may send one database's pings or metrics elsewhere."""

from __future__ import annotations

from backup_pipeline.core import config_fields as f
from backup_pipeline.core.settings.declaration import DATABASE, Setting

SETTINGS = (
    Setting(
        name="heartbeat_url",
        env="BACKUP_HEARTBEAT_URL",
        section=DATABASE,
        help=(
            "a monitor each backup run pings: start, then success or fail (healthchecks.io, Uptime Kuma, Cronitor; "
            "see [Monitoring](#monitoring)); in the databases file it may be `${VARIABLE}` holding it"
        ),
        type=f.HeartbeatUrl,
        shown_default="none",
        secret=True,
    ),
    Setting(
        name="heartbeat_style",
        env="BACKUP_HEARTBEAT_STYLE",
        section=DATABASE,
        help=(
            "`healthchecks` (`URL/start`, `URL`, `URL/fail`), `uptime-kuma` (`?status=up/down`) or `cronitor` "
            "(`?state=run/complete/fail`)"
        ),
        type=f.HeartbeatStyle,
        shown_default="told by the URL: `/api/push/` is Uptime Kuma, `cronitor.link` Cronitor, else healthchecks",
    ),
    Setting(
        name="metrics_textfile",
        env="BACKUP_METRICS_TEXTFILE",
        section=DATABASE,
        help=(
            "Prometheus metrics file for node_exporter's textfile collector, replaced atomically after each backup "
            "and retention run and every 10 minutes (each database replaces its own samples)"
        ),
        type=f.Text,
        shown_default="none",
    ),
    Setting(
        name="metrics_pushgateway_url",
        env="BACKUP_METRICS_PUSHGATEWAY_URL",
        section=DATABASE,
        help="Prometheus Pushgateway the same metrics are pushed to (a group per database)",
        type=f.PushgatewayUrl,
        shown_default="none",
        secret=True,
    ),
)
