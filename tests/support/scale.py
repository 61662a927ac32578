"""Many databases on one deployment, run for real: a databases file of N entries over a few tiny seeded
databases, the image's code server, webserver and daemon, and what the runs' own event logs say about
the fan-out of a schedule's tick (how many runs, how many at once, when done). Used by
tests/test_deploy_scale_out.py and bench/bench_scale.py."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

SOURCE_URL_ENV = "SCALE_SOURCE_{}_URL"


def database_keys(count: int) -> list[str]:
    return [f"db{index:03d}" for index in range(count)]


def databases_file(keys: list[str], sources: int, cron: str, extra: str = "") -> str:
    """One entry per key, backing up the `sources` seeded databases in turn under its own name prefix."""
    lines = ["databases:"]
    for index, key in enumerate(keys):
        lines += [
            f"  - key: {key}",
            f"    url_env: {SOURCE_URL_ENV.format(index % sources)}",
            f"    name_prefix: {key}",
            f'    schedule: "{cron}"',
        ]
    return "\n".join(lines) + "\n" + extra


def cron_at(when: datetime) -> str:
    """A daily cron firing at `when` (UTC, to the minute)."""
    return f"{when.minute} {when.hour} * * *"


def next_minute_after(seconds: float) -> datetime:
    """The first whole UTC minute at least `seconds` from now."""
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    return (at + timedelta(minutes=1)).replace(second=0, microsecond=0)


def wait_for(predicate, timeout_s: float, what: str, check=lambda: None, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check()
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def event_time(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> float | None:
    records = instance.get_records_for_run(run_id, of_type=event_type).records
    return records[0].timestamp if records else None


@dataclass(frozen=True)
class RunWindow:
    run_id: str
    database: str
    queued: float
    launched: float
    ended: float
    status: dg.DagsterRunStatus


def run_windows(instance: dg.DagsterInstance, runs: list[dg.DagsterRun]) -> list[RunWindow]:
    """From queued, through the queue letting the run go (its launch), to its end, from its own event log.

    Launch rather than the worker's first step: a worker takes seconds to start, which alone could keep
    two short runs apart even with no limit at all.
    """
    windows = []
    for run in runs:
        ended = event_time(instance, run.run_id, dg.DagsterEventType.RUN_SUCCESS) or event_time(
            instance, run.run_id, dg.DagsterEventType.RUN_FAILURE
        )
        windows.append(
            RunWindow(
                run_id=run.run_id,
                database=run.tags.get("backup/database", ""),
                queued=event_time(instance, run.run_id, dg.DagsterEventType.RUN_ENQUEUED),
                launched=event_time(instance, run.run_id, dg.DagsterEventType.RUN_STARTING),
                ended=ended,
                status=run.status,
            )
        )
    return windows


def max_concurrent(windows: list[RunWindow]) -> int:
    """The most runs in flight (launched, not ended) at any moment."""
    edges = sorted([(w.launched, 1) for w in windows] + [(w.ended, -1) for w in windows])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def overlapping(windows: list[RunWindow]) -> list[tuple[RunWindow, RunWindow]]:
    """Pairs of runs of one database that were in flight at the same time."""
    pairs = []
    by_database: dict[str, list[RunWindow]] = {}
    for window in windows:
        by_database.setdefault(window.database, []).append(window)
    for same in by_database.values():
        same.sort(key=lambda w: w.launched)
        pairs += [(a, b) for a, b in zip(same, same[1:], strict=False) if b.launched < a.ended]
    return pairs


def request_sensor_tick_times(dagster_url: str, sensor: str = "backup_request_sensor") -> list[float]:
    """When the daemon evaluated the sensor, oldest first, from Dagster's tick table in PostgreSQL."""
    import psycopg

    with psycopg.connect(dagster_url) as conn:
        rows = conn.execute(
            "SELECT timestamp FROM job_ticks WHERE tick_body LIKE %s ORDER BY timestamp", [f'%"{sensor}"%']
        ).fetchall()
    return [row[0].replace(tzinfo=UTC).timestamp() if hasattr(row[0], "timestamp") else float(row[0]) for row in rows]
