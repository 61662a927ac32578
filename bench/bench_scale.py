"""Hundreds of databases on one Dagster deployment, measured for real: load, request to stored, the night.

For each database count (default 100 and 300; 1000 with --no-fanout-above 300), on the production profile (deploy/dagster.yaml: Dagster's
storage in a fresh PostgreSQL database, queued runs, concurrency limits) with the image's code server,
webserver and daemon on loopback:

1. Code-location load: a fresh process imports the definitions module, builds the definitions and makes
   the repository snapshot that a code server sends to the webserver and the daemon (median of 3, wall
   clock and CPU); and the code server's own start, from its launch to answering "SERVING".
2. Daemon sensor loop: the intervals between the daemon's evaluations of the request sensor (asked for
   every 5 s), from Dagster's tick table, while the deployment is otherwise idle.
3. Request to stored: `dagster job launch ... -j request_backup` for one database (the README's command),
   then the time until that database's pre-migration backup's manifest is in storage (stored), and until
   its run has succeeded (verified too).
4. The 06:00 fan-out: every database shares one daily cron set to a whole minute shortly after start-up,
   so the real scheduler fires it; then, counted from the tick: the tick's one request run, the night's
   backup_batch runs queued (a few databases of one server each), the most in flight at once, every
   database's daily backup verified (its verification marker in storage), databases verified per minute,
   and the daemon's CPU time over the night (or, past --fanout-timeout, how many were verified).

The databases are tiny on purpose (the subject is the deployment, not pg_dump): N configuration entries
over 3 seeded databases (all on one server, so its budget of server_max_runs runs at once, 4 by default,
paces the night), each entry backing one up under its own name prefix, into a local folder.

  .venv/bin/python -m bench.bench_scale [--databases 100 300 1000] [--no-fanout-above 300] [--admin-url ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from tests.conftest import CONFIG_VARS  # noqa: E402
from tests.support.deployment import Deployment, base_env, dagster_pg_env, fresh_database  # noqa: E402
from tests.support.scale import (  # noqa: E402
    SOURCE_URL_ENV,
    cron_at,
    database_keys,
    databases_file,
    max_concurrent,
    next_minute_after,
    request_sensor_tick_times,
    run_windows,
    wait_for,
)
from tests.support.seed import SEED_SQL  # noqa: E402

ADMIN_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
SOURCES = 3
DAGSTER = str(Path(sys.executable).with_name("dagster"))
LOAD_SCRIPT = """
import time, json
started_wall, started_cpu = time.perf_counter(), time.process_time()
from backup_pipeline.definitions import defs
from dagster._core.remote_representation.external_data import RepositorySnap
definitions = defs()
snapshot = RepositorySnap.from_def(definitions.get_repository_def())
print(json.dumps({"wall_s": time.perf_counter() - started_wall, "cpu_s": time.process_time() - started_cpu,
                  "jobs": len(snapshot.job_datas or snapshot.job_refs or []),
                  "schedules": len(snapshot.schedules), "sensors": len(snapshot.sensors),
                  "assets": len(snapshot.asset_nodes)}))
"""


def measure_load(env: dict[str, str], repeat: int = 3) -> dict:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", LOAD_SCRIPT], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        )
        sample = json.loads(out.stdout.strip().splitlines()[-1])
        sample["process_s"] = time.perf_counter() - started  # with the interpreter's own start
        samples.append(sample)
    median = {k: statistics.median(s[k] for s in samples) for k in ("wall_s", "cpu_s", "process_s")}
    return {**median, **{k: samples[0][k] for k in ("jobs", "schedules", "sensors", "assets")}}


def request_timeline(instance, requested: float) -> list[dict]:
    """Each run since the request (the request_backup run, then the backup run it asked for): when it was queued,
    launched, its first step started and it ended, in seconds after the request."""
    import dagster as dg

    def at(run_id, event_type):
        records = instance.get_records_for_run(run_id, of_type=event_type, limit=1).records
        return round(records[0].timestamp - requested, 1) if records else None

    timeline = []
    for record in reversed(
        instance.get_run_records(dg.RunsFilter(created_after=datetime.fromtimestamp(requested, UTC)))
    ):
        run_id = record.dagster_run.run_id
        timeline.append(
            {
                "job": record.dagster_run.job_name,
                "queued": at(run_id, dg.DagsterEventType.RUN_ENQUEUED),
                "launched": at(run_id, dg.DagsterEventType.RUN_STARTING),
                "started": at(run_id, dg.DagsterEventType.RUN_START),
                "first_step": at(run_id, dg.DagsterEventType.STEP_START),
                "ended": round(record.end_time - requested, 1) if record.end_time else None,
            }
        )
    return timeline


def stored(local_dir: Path, key: str, backup_type: str) -> Path | None:
    found = sorted((local_dir / "db-backups").glob(f"{key}_{backup_type}_*.dump.json"))
    return found[-1] if found else None


def verified_count(local_dir: Path, backup_type: str = "daily") -> int:
    return len(list((local_dir / "db-backups").glob(f"*_{backup_type}_*.dump.verified.json")))


def bench(
    count: int, admin_url: str, sources: list[str], lead_s: float, fanout_timeout_s: float, fanout: bool = True
) -> dict:
    import dagster as dg

    keys = database_keys(count)
    result = {"databases": count, "load_average_at_start": os.getloadavg()}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench_scale_{count}_")))
        home = tmp / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
        dagster_url = stack.enter_context(fresh_database(admin_url, "bpscale_dagster"))
        tick = next_minute_after(lead_s)
        config_file = tmp / "backups.yaml"
        config_file.write_text(databases_file(keys, SOURCES, cron_at(tick)))
        pg_env = {"DAGSTER_HOME": str(home), **dagster_pg_env(dagster_url)}
        settings_env = {
            "BACKUP_CONFIG_FILE": str(config_file),
            **{SOURCE_URL_ENV.format(i): url for i, url in enumerate(sources)},
            "BACKUP_LOCAL_DIR": str(tmp / "backups"),
        }
        code_env = {**base_env(CONFIG_VARS), **pg_env, **settings_env}
        os.environ.update({**pg_env, **settings_env})

        result["load"] = measure_load(code_env)
        print(f"[{count}] load: {json.dumps(result['load'])}", flush=True)

        instance = dg.DagsterInstance.get()  # creates the schema once, before the processes start
        stack.callback(instance.dispose)
        processes = Deployment(code_env=code_env, service_env={**base_env(CONFIG_VARS), **pg_env}, logs=tmp)
        stack.callback(processes.stop)
        started = time.perf_counter()
        processes.start_code_server()
        processes.wait_for_code_server(timeout=300)
        result["code_server_serving_s"] = time.perf_counter() - started
        processes.start_services()
        print(f"[{count}] code server serving after {result['code_server_serving_s']:.1f} s", flush=True)

        # Request to stored, through the README's command, on the idle deployment.
        key = keys[len(keys) // 2]
        launch_env = {
            **code_env,
            "BACKUP_CODE_SERVER_HOST": "127.0.0.1",
            "BACKUP_CODE_SERVER_PORT": str(processes.code_port),
        }
        config = json.dumps({"ops": {"backup_request": {"config": {"database": key, "backup_type": "pre-migration"}}}})
        requested = time.time()
        subprocess.run(
            [DAGSTER, "job", "launch", "-w", str(PROJECT_ROOT / "deploy" / "workspace.yaml"), "-j", "request_backup"]
            + ["--config-json", config],
            env=launch_env,
            cwd=tmp,
            check=True,
            capture_output=True,
        )
        launched = time.time()
        local_dir = tmp / "backups"
        wait_for(
            lambda: stored(local_dir, key, "pre-migration"), 600, "the pre-migration backup", processes.check_alive
        )
        stored_at = time.time()
        [run] = wait_for(
            lambda: [
                r
                for r in instance.get_runs(
                    dg.RunsFilter(tags={"backup/database": key, "backup/type": "pre-migration", "backup/kind": "batch"})
                )
                if r.is_finished
            ],
            600,
            "the pre-migration run",
            processes.check_alive,
        )
        result["request"] = {
            "database": key,
            "launch_command_s": launched - requested,
            "request_to_stored_s": stored_at - requested,
            "request_to_verified_s": run_windows(instance, [run])[0].ended - requested,
            "status": run.status.value,
            "timeline": request_timeline(instance, requested),
        }
        print(f"[{count}] request: {json.dumps(result['request'])}", flush=True)

        if not fanout:
            result["load_average_at_end"] = os.getloadavg()
            return result

        # The daemon's request sensor loop while idle, up to the tick.
        idle_until = tick.timestamp() - 2
        time.sleep(max(0.0, idle_until - time.time()))
        ticks = [t for t in request_sensor_tick_times(dagster_url) if t < idle_until]
        gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
        result["request_sensor"] = {
            "ticks": len(ticks),
            "median_interval_s": statistics.median(gaps) if gaps else None,
            "max_interval_s": max(gaps) if gaps else None,
        }
        print(f"[{count}] request sensor: {json.dumps(result['request_sensor'])}", flush=True)
        if time.time() > tick.timestamp():
            print(f"[{count}] note: the tick at {tick:%H:%M} came before the request measurement ended", flush=True)

        # The fan-out: every database's daily backup verified, or until the time allowed is up.
        daemon = psutil.Process(processes.processes["daemon"].pid)
        time.sleep(max(0.0, tick.timestamp() - time.time()))
        daemon_cpu_at_tick = sum(daemon.cpu_times()[:2])
        load_at_tick = os.getloadavg()
        deadline = tick.timestamp() + fanout_timeout_s
        all_verified_at = None
        while time.time() < deadline:
            processes.check_alive()
            if verified_count(local_dir) >= count:
                all_verified_at = time.time()
                break
            time.sleep(1)
        daemon_cpu = sum(daemon.cpu_times()[:2]) - daemon_cpu_at_tick
        [tick_request] = instance.get_runs(dg.RunsFilter(job_name="request_backup", tags={"backup/type": "daily"}))
        # The night's batches: those answering the tick's request (the pre-migration backup's run is one too).
        batch_filter = dg.RunsFilter(job_name="backup_batch", tags={"backup/requested_by": tick_request.run_id})
        wait_for(lambda: all(r.is_finished for r in instance.get_runs(batch_filter)), 120, "the batch runs' end")
        runs = instance.get_runs(batch_filter)
        windows = run_windows(instance, runs)
        done = [w for w in windows if w.ended is not None]
        zero = tick.timestamp()
        request_created = run_windows(instance, [tick_request])[0]
        verified = verified_count(local_dir)
        result["fanout"] = {
            "batch_runs": len(runs),
            "batch_runs_failed": sum(w.status != dg.DagsterRunStatus.SUCCESS for w in windows),
            "tick_request_queued_s": request_created.queued - zero,
            "first_batch_queued_s": min(w.queued for w in windows) - zero,
            "all_batches_queued_s": max(w.queued for w in windows) - zero,
            "max_concurrent_runs": max_concurrent([w for w in windows if w.launched and w.ended]),
            "first_batch_done_s": min(w.ended for w in done) - zero if done else None,
            "all_verified_s": all_verified_at - zero if all_verified_at else None,
            "verified": verified,
            "verified_per_minute": verified / (((all_verified_at or time.time()) - zero) / 60),
            "batch_runs_per_minute": len(done) / ((max(w.ended for w in done) - zero) / 60) if done else None,
            "daemon_cpu_s": daemon_cpu,
            "load_average_at_tick": load_at_tick,
        }
        result["load_average_at_end"] = os.getloadavg()
        print(f"[{count}] fan-out: {json.dumps(result['fanout'])}", flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", type=int, nargs="+", default=[100, 300])
    parser.add_argument(
        "--no-fanout-above", type=int, default=300, help="above this many databases: load and request to stored only"
    )
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", ADMIN_URL_DEFAULT))
    parser.add_argument("--lead", type=float, default=None, help="seconds from start to the tick (default by size)")
    parser.add_argument(
        "--fanout-timeout", type=float, default=1800, help="seconds from the tick to stop waiting for the fan-out"
    )
    args = parser.parse_args(argv)
    for name in CONFIG_VARS:
        os.environ.pop(name, None)
    results = []
    with ExitStack() as stack:
        sources = [
            stack.enter_context(fresh_database(args.admin_url, f"bpscale_src{i}", SEED_SQL)) for i in range(SOURCES)
        ]
        for count in args.databases:
            lead = args.lead if args.lead is not None else 90 + 0.1 * count
            fanout = count <= args.no_fanout_above
            results.append(bench(count, args.admin_url, sources, lead, args.fanout_timeout, fanout))
    print(json.dumps({"finished_at": datetime.now(UTC).isoformat(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
