"""The enrolment sensor: looks at each `servers:` entry's server every minute and records what it holds.

Dagster builds the definitions when it loads the code location, so a database created on an enrolled server
needs a new load. The definitions are built from the record of the last look (core/enrolment.py); this sensor
is the one writer of that record. When a look finds another set of databases it records it, says once which
databases went away (their backups stay), and asks the webserver to reload the code location through its
public GraphQL API (`reloadRepositoryLocation`, as the UI's Reload button does). Without a webserver, the
daemon's own code server, started from workspace.yaml, loads the location again every minute by itself. A
server that cannot be reached changes nothing: its databases stay, and their runs fail saying why.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import dagster as dg

from backup_pipeline.core.config import Settings
from backup_pipeline.core.enrolment import ServerEntry, compare, database_key, discover, read_record, write_record
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.notify.events import databases_gone_event
from backup_pipeline.core.notify.notifier import Notifier
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.storage import open_storage
from backup_pipeline.core.webserver import webserver_answers, webserver_base_url
from backup_pipeline.defs.names import CODE_LOCATION_NAME, ENROLMENT_SENSOR

ENROLMENT_INTERVAL_S = 60


def built_with(settings: Settings, entry: ServerEntry) -> list[str]:
    """The names of the server's databases these definitions were built with."""
    return sorted(db.dbname for db in settings.databases if db.dbname and db.key == database_key(entry.key, db.dbname))


def request_reload(webserver_url: str | None, log) -> bool:
    """Asks the webserver to load the code location again; False when none answers."""
    base = webserver_base_url(webserver_url)
    if base is None or not webserver_answers(base):
        log.info("no webserver answers: the daemon's code server loads the location again within a minute")
        return False
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    parts = urlsplit(base)
    client = DagsterGraphQLClient(parts.netloc + parts.path.rstrip("/"), use_https=parts.scheme == "https")
    try:
        info = client.reload_repository_location(CODE_LOCATION_NAME)
    except (DagsterGraphQLClientError, OSError, ValueError) as error:
        log.warning(f"the webserver at {base} did not reload the code location: {error}")
        return False
    log.info(f"code location reload at {base}: {info.status.value}")
    return info.status.value == "SUCCESS"


def build_enrolment_sensor(settings: Settings, notifier: Notifier) -> dg.SensorDefinition | None:
    if not settings.servers:
        return None
    storage_prefix = settings.databases[0].storage_prefix if settings.databases else "db-backups"

    @dg.sensor(
        name=ENROLMENT_SENSOR,
        minimum_interval_seconds=ENROLMENT_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Looks at the server of each servers: entry of the databases file, records the databases it holds, "
            "says once which ones went away, and has the code location reloaded when the set changed, so a new "
            "database is backed up from its next scheduled tick."
        ),
    )
    def server_enrolment_sensor(context: dg.SensorEvaluationContext):
        storage = open_storage(settings.storage)
        stale = []
        for entry in settings.servers:
            record = entry.record_key(storage_prefix)
            try:
                found = discover(entry)
                recorded = read_record(storage, record)
            except BackupError as error:
                context.log.warning(f"server '{entry.key}' not looked at: {error}. Its databases stay as recorded")
                continue
            built = built_with(settings, entry)
            change = compare(built if recorded is None else recorded, found)
            if recorded is None or change.any:
                write_record(storage, record, found)
            if change.added:
                context.log.info(f"server '{entry.key}': enrolled {', '.join(change.added)}")
            if change.dropped:
                context.log.info(f"server '{entry.key}': {', '.join(change.dropped)} went away")
                gone = databases_gone_event(f"'{entry.key}' ({server_address(entry)})", change.dropped)
                notifier.notify([gone], log=context.log)
            if found != built:
                stale.append(entry.key)
        if not stale:
            return dg.SkipReason("every enrolled server holds the databases the definitions were built with")
        request_reload(settings.webserver_url, context.log)
        return dg.SkipReason(f"the databases of {', '.join(stale)} changed: code location reload requested")

    return server_enrolment_sensor


def server_address(entry: ServerEntry) -> str:
    """host:port of the entry's server, for messages (never its user or password)."""
    try:
        return PostgresTarget.from_url(os.environ.get(entry.url_env), entry.url_env).server
    except BackupError:
        return entry.url_env
