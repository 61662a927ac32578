"""Prometheus metrics of each database's backups, from storage (the record), in the text format.

Per database (label `database`, its configured key): when the newest verified backup was taken and how old it
is, its size, dump duration, rows and tables; whether the newest complete backup is verified (0 while one
failed or is still being verified); how many backups retention keeps by type and verification; incomplete
uploads; the freshness window, so an alert rule needs no number of its own:

    time() - backup_pipeline_newest_verified_backup_timestamp_seconds > backup_pipeline_freshness_window_seconds

Two ways out, either or both:
- a textfile for node_exporter's textfile collector (BACKUP_METRICS_TEXTFILE): every database shares it and
  replaces only its own samples, under a lock, and the file is replaced atomically (never read half-written);
- a Pushgateway (BACKUP_METRICS_PUSHGATEWAY_URL): one group per database (job="backup_pipeline",
  database=KEY), replaced on each push.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, push_to_gateway, write_to_textfile
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.prune import newest_verified

PREFIX = "backup_pipeline_"
PUSHGATEWAY_JOB = "backup_pipeline"
PUSH_TIMEOUT_S = 5.0

_GAUGES = {
    "newest_verified_backup_timestamp_seconds": "When the newest verified backup was taken (Unix time, UTC).",
    "newest_verified_backup_age_seconds": "Age of the newest verified backup when these metrics were written.",
    "newest_verified_backup_size_bytes": "Size of the newest verified backup as stored.",
    "newest_verified_backup_duration_seconds": "How long the newest verified backup's dump and upload took.",
    "newest_verified_backup_rows": "Rows in the newest verified backup (exact, counted in its snapshot).",
    "newest_verified_backup_tables": "Tables in the newest verified backup.",
    "newest_backup_verified": "1 when the newest complete backup is verified, 0 while it failed or is unverified.",
    "freshness_window_seconds": "The dead-man's switch's window (BACKUP_FRESHNESS_HOURS).",
    "incomplete_uploads": "Dumps without a manifest (an upload that did not finish).",
    "metrics_timestamp_seconds": "When these metrics were written (Unix time).",
}


def database_metrics(key: str, catalog: BackupCatalog, freshness_hours: float, now: datetime) -> list[Metric]:
    """The metric families of one database, read from its storage listing and its newest verified manifest."""
    entries = catalog.entries()  # newest first
    complete = [e for e in entries if e.complete and not e.in_future()]
    newest = newest_verified(entries, now)
    values: dict[str, float] = {
        "newest_backup_verified": float(bool(complete) and complete[0].verified),
        "freshness_window_seconds": freshness_hours * 3600,
        "incomplete_uploads": float(sum(1 for e in entries if e.dump is not None and not e.complete)),
        "metrics_timestamp_seconds": now.timestamp(),
    }
    if newest is not None:
        manifest = catalog.manifest(newest.name)
        values |= {
            "newest_verified_backup_timestamp_seconds": newest.created_at.timestamp(),
            "newest_verified_backup_age_seconds": max((now - newest.created_at).total_seconds(), 0.0),
            "newest_verified_backup_size_bytes": float(newest.size_bytes),
            "newest_verified_backup_duration_seconds": float(manifest.duration_s),
            "newest_verified_backup_rows": float(manifest.total_rows),
            "newest_verified_backup_tables": float(len(manifest.tables)),
        }
    families = []
    for name, help_text in _GAUGES.items():
        if name in values:
            family = GaugeMetricFamily(PREFIX + name, help_text, labels=["database"])
            family.add_metric([key], values[name])
            families.append(family)
    counts = GaugeMetricFamily(
        PREFIX + "backups",
        "Complete backups in storage (what retention keeps), by type and whether verified.",
        labels=["database", "type", "verified"],
    )
    for (backup_type, verified), count in sorted(Counter((e.type, e.verified) for e in complete).items()):
        counts.add_metric([key, backup_type, "true" if verified else "false"], float(count))
    families.append(counts)
    return families


class _Families:
    """A collector of fixed families, so prometheus-client writes them in its own text format."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self):
        return iter(self.families)


def _registry(families: list[Metric]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return registry


def update_textfile(path: Path, key: str, families: list[Metric]) -> None:
    """Replaces database `key`'s samples in the textfile (keeping every other database's), atomically."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=30):
        merged: dict[str, Metric] = {}
        if path.exists():
            for family in text_string_to_metric_families(path.read_text()):
                kept = [s for s in family.samples if s.labels.get("database") != key]
                if kept:
                    copy = Metric(family.name, family.documentation, family.type)
                    copy.samples = kept
                    merged[family.name] = copy
        for family in families:
            if family.name in merged:
                merged[family.name].samples = merged[family.name].samples + family.samples
            else:
                merged[family.name] = family
        # prometheus-client writes a temporary file beside it and renames it over the old one.
        write_to_textfile(str(path), _registry(sorted(merged.values(), key=lambda f: f.name)))
        os.chmod(path, 0o644)  # node_exporter usually runs as another user


def push(url: str, key: str, families: list[Metric]) -> None:
    """Replaces database `key`'s group on the Pushgateway (basic auth when the URL carries user:password@)."""
    parts = urlsplit(url)
    handler = default_handler
    if parts.username is not None:
        user, password = unquote(parts.username), unquote(parts.password or "")
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

        def handler(url, method, timeout, headers, data):
            return basic_auth_handler(url, method, timeout, headers, data, user, password)

    push_to_gateway(
        url,
        job=PUSHGATEWAY_JOB,
        registry=_registry(families),
        grouping_key={"database": key},
        timeout=PUSH_TIMEOUT_S,
        handler=handler,
    )


def publish(
    db, catalog: BackupCatalog, now: datetime, log: Callable[[str], None], redact: Callable[[str], str]
) -> bool:
    """Writes and/or pushes database `db`'s metrics as configured; never raises (metrics must not fail a backup).
    True when every configured output was written."""
    if not (db.metrics_textfile or db.metrics_pushgateway_url):
        return True
    try:
        families = database_metrics(db.key, catalog, db.freshness_hours, now)
    except Exception as error:
        log(f"metrics of {db.key} not written: storage could not be read ({redact(_short(error))})")
        return False
    written = True
    if db.metrics_textfile:
        try:
            update_textfile(Path(db.metrics_textfile), db.key, families)
        except Exception as error:
            log(f"metrics of {db.key} not written to {db.metrics_textfile}: {redact(_short(error))}")
            written = False
    if db.metrics_pushgateway_url:
        try:
            push(db.metrics_pushgateway_url, db.key, families)
        except Exception as error:
            # The error may quote the URL (with its credentials): name the class and redact the rest.
            log(f"metrics of {db.key} not pushed to the Pushgateway: {redact(_short(error))}")
            written = False
    return written


def _short(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]
