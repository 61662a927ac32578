"""The heartbeat pings of a backup run (core/notify/heartbeat.py), sent by the run's own step: start when it
begins, success once the backup is stored and verified, fail with the first line of the error otherwise.

Sent from the run rather than a sensor so that an outside monitor hears nothing when the daemon, the code
server or the whole machine is down: the missing ping is the alert.
"""

from __future__ import annotations

import contextlib

import dagster as dg

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.notify.events import first_line
from backup_pipeline.core.notify.heartbeat import Heartbeat
from backup_pipeline.core.notify.redact import Redactor


@contextlib.contextmanager
def heartbeat_pings(context: dg.AssetExecutionContext, db: DatabaseSettings, active: bool = True):
    """Pings around the block: start before it, success after it, fail when it raises (and re-raises)."""
    heartbeat = None
    if active and db.heartbeat_url:
        heartbeat = Heartbeat.for_url(
            db.heartbeat_url, db.heartbeat_style, context.run.run_id, Redactor.for_database(db)
        )
    if heartbeat is None:
        yield
        return
    heartbeat.start(log=context.log)
    try:
        yield
    except GeneratorExit:  # the step's generator closed early by its caller: neither success nor failure
        raise
    except BaseException as error:
        heartbeat.fail(_why(error), log=context.log)
        raise
    heartbeat.success(f"run {context.run.run_id}", log=context.log)


def _why(error: BaseException) -> str:
    if isinstance(error, dg.Failure) and error.description:
        return first_line(error.description)
    return first_line(f"{type(error).__name__}: {error}") or type(error).__name__
