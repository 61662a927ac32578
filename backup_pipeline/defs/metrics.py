"""Publishing a database's Prometheus metrics (core/metrics.py) from the code location: after each backup
run and each retention run of it (what changed), and from the freshness sensor every few minutes (ages move on
and a Pushgateway keeps only what was last pushed)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.metrics import publish
from backup_pipeline.core.notify.redact import Redactor
from backup_pipeline.defs.resources import BackupStorageResource, PostgresResource


def metrics_configured(db: DatabaseSettings) -> bool:
    return bool(db.metrics_textfile or db.metrics_pushgateway_url)


def publish_metrics(
    postgres: PostgresResource, backup_storage: BackupStorageResource, db: DatabaseSettings, log: Callable[[str], None]
) -> bool:
    """Writes the database's metrics where configured; logs and carries on when it cannot."""
    if not metrics_configured(db):
        return True
    redact = Redactor.for_database(db)
    try:
        catalog = backup_storage.catalog(postgres.database(db), db.storage_prefix)
    except Exception as error:  # metrics never fail what they describe
        log(f"metrics of {db.key} not written: {redact(str(error).splitlines()[0] if str(error) else '')}")
        return False
    return publish(db, catalog, datetime.now(UTC), log, redact)
