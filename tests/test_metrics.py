"""Prometheus metrics after a real backup: the node_exporter textfile and a Pushgateway push (a stand-in HTTP
server on loopback), both parsed with prometheus-client's own parser. Before any backup the freshness sensor
writes what there is (nothing verified); another database's samples in the shared textfile are kept."""

import base64
from datetime import UTC, datetime

import dagster as dg
from prometheus_client.parser import text_string_to_metric_families

from backup_pipeline.core.names import BackupId
from backup_pipeline.defs.alerts.runs import materialization_metadata
from tests.support.http_recorder import http_recorder  # noqa: F401
from tests.support.pipeline import failure_message, load_defs, run_backup
from tests.support.seed import SEED_COUNTS

PUSH_PASSWORD = "push-s3cret-pw"
OTHER_DATABASE = (
    "# HELP backup_pipeline_newest_backup_verified other database's sample\n"
    "# TYPE backup_pipeline_newest_backup_verified gauge\n"
    'backup_pipeline_newest_backup_verified{database="billing"} 1.0\n'
)


def _samples(text: str) -> dict[tuple, float]:
    """(metric name, database, type, verified) → value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            found[(sample.name, labels["database"], labels.get("type"), labels.get("verified"))] = sample.value
    return found


def test_metrics_after_a_real_backup_in_the_textfile_and_on_the_pushgateway(
    local_env,
    clean_env,
    tmp_path,
    http_recorder,  # noqa: F811
):
    textfile = tmp_path / "node_exporter" / "backup_pipeline.prom"
    textfile.parent.mkdir()
    textfile.write_text(OTHER_DATABASE)
    clean_env.setenv("BACKUP_METRICS_TEXTFILE", str(textfile))
    # A Pushgateway behind basic auth: the credentials travel in the URL, and never into a log.
    clean_env.setenv("BACKUP_METRICS_PUSHGATEWAY_URL", f"http://pusher:{PUSH_PASSWORD}@127.0.0.1:{http_recorder.port}")
    instance = dg.DagsterInstance.get()
    defs = load_defs()

    # Nothing backed up yet: the freshness sensor's tick says so.
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        defs.get_sensor_def("backup_freshness_sensor").evaluate_tick(context)
    before = _samples(textfile.read_text())
    assert before[("backup_pipeline_newest_backup_verified", "default", None, None)] == 0
    assert ("backup_pipeline_newest_verified_backup_timestamp_seconds", "default", None, None) not in before
    assert before[("backup_pipeline_freshness_window_seconds", "default", None, None)] == 26 * 3600

    result, backup_id = run_backup(instance, "manual", defs=defs)
    assert result.success, failure_message(result)
    stored = next(
        metadata
        for key, metadata in materialization_metadata(instance, result.run_id).items()
        if key.path[-1] == "offsite_backup"
    )

    after = _samples(textfile.read_text())
    one = lambda name: after[(f"backup_pipeline_{name}", "default", None, None)]  # noqa: E731
    assert one("newest_verified_backup_rows") == sum(SEED_COUNTS.values())
    assert one("newest_verified_backup_tables") == len(SEED_COUNTS)
    assert one("newest_verified_backup_size_bytes") == stored["size_bytes"]
    assert one("newest_verified_backup_duration_seconds") > 0
    taken = BackupId.parse(backup_id).created_at
    assert one("newest_verified_backup_timestamp_seconds") == taken.timestamp()
    assert 0 <= one("newest_verified_backup_age_seconds") < 600
    assert one("newest_backup_verified") == 1
    assert after[("backup_pipeline_backups", "default", "manual", "true")] == 1
    assert one("incomplete_uploads") == 0
    assert abs(one("metrics_timestamp_seconds") - datetime.now(UTC).timestamp()) < 600
    # The other database's sample is still there, and nothing else of a half-written file is left beside it.
    assert after[("backup_pipeline_newest_backup_verified", "billing", None, None)] == 1
    assert sorted(p.name for p in textfile.parent.iterdir() if not p.name.endswith(".lock")) == [textfile.name]

    # The Pushgateway holds one group per database, replaced (PUT) on each push.
    pushes = [r for r in http_recorder.requests if r.method == "PUT"]
    assert pushes and all(r.path == "/metrics/job/backup_pipeline/database/default" for r in pushes)
    credentials = base64.b64encode(f"pusher:{PUSH_PASSWORD}".encode()).decode()
    assert all(r.headers["Authorization"] == f"Basic {credentials}" for r in pushes)
    assert PUSH_PASSWORD not in repr(instance.get_records_for_run(result.run_id).records)
    pushed = _samples(pushes[-1].body.decode())
    assert pushed[("backup_pipeline_newest_verified_backup_rows", "default", None, None)] == sum(SEED_COUNTS.values())
    assert ("backup_pipeline_newest_backup_verified", "billing", None, None) not in pushed


def test_metrics_that_cannot_be_written_never_fail_the_backup(local_env, clean_env, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where a folder should be")
    clean_env.setenv("BACKUP_METRICS_TEXTFILE", str(blocked / "backup.prom"))
    instance = dg.DagsterInstance.get()
    result, _ = run_backup(instance, "manual")
    assert result.success, failure_message(result)
    logged = "\n".join(
        record.event_log_entry.user_message for record in instance.get_records_for_run(result.run_id).records
    )
    assert f"metrics of default not written to {blocked / 'backup.prom'}" in logged
