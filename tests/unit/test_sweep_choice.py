"""What a sweep recognises as ours, and which unfinished uploads it chooses to remove."""

from datetime import UTC, datetime, timedelta

from backup_pipeline.core.postgres.environment import PASSWORD_FILE
from backup_pipeline.core.postgres.scratch import SCRATCH_DATABASE, scratch_database_name
from backup_pipeline.core.storage import UnfinishedUpload
from backup_pipeline.core.storage.local import PARTIAL_FILE
from backup_pipeline.core.sweep import SweepReport, abandoned_uploads, our_unfinished

NOW = datetime(2026, 1, 13, 15, 0, tzinfo=UTC)


def test_scratch_database_names_are_recognised_and_user_names_never():
    for purpose in ("verify", "restore", "replaced", "diff"):
        assert SCRATCH_DATABASE.match(scratch_database_name(purpose))
    for name in (
        "bp_restore_disk_full",  # a user may name a database like that
        "bp_verify_04d42eea4305",  # the old shape, whose owner holds no lock: never taken for abandoned
        "bp_verify_20260113150000_0a1b2c3d_x",
        "app",
        "bp_other_20260113150000_0a1b2c3d",
    ):
        assert not SCRATCH_DATABASE.match(name), name


def test_password_and_partial_file_names_carry_their_owner():
    assert PASSWORD_FILE.match("backup-pgpass-4242-k2j_x9ab")["pid"] == "4242"
    assert not PASSWORD_FILE.match("backup-pgpass-k2jx9ab")  # no owner named: not ours to judge
    assert not PASSWORD_FILE.match("pgpass-4242-abc")
    match = PARTIAL_FILE.match(".app_manual_20260113_150000.dump.partial-77")
    assert match["name"] == "app_manual_20260113_150000.dump" and match["pid"] == "77"
    assert not PARTIAL_FILE.match("app_manual_20260113_150000.dump.partial-77")
    assert not PARTIAL_FILE.match(".app.dump.partial-x")


def _upload(key: str, age: timedelta = timedelta(minutes=1)) -> UnfinishedUpload:
    return UnfinishedUpload(key=key, ref="upload-id", started=NOW - age, size=0)


def test_only_our_own_backup_names_are_candidates():
    uploads = [
        _upload("db-backups/app_daily_20260113_060000.dump"),
        _upload("db-backups/app_manual_20260113_150000.dump.json"),
        _upload("db-backups/other_daily_20260113_060000.dump"),  # another database's
        _upload("db-backups/app_daily_20260113_060000.dump.bak"),  # not a name of ours
        _upload("db-backups/app-notes.txt"),
        _upload("elsewhere/app_daily_20260113_060000.dump"),
    ]
    chosen = our_unfinished(uploads, "db-backups", "app")
    assert [c.upload.key for c in chosen] == [
        "db-backups/app_daily_20260113_060000.dump",
        "db-backups/app_manual_20260113_150000.dump.json",
    ]


def test_an_upload_whose_run_holds_its_lock_survives_and_without_locks_only_old_ones_go():
    young = _upload("db-backups/app_daily_20260113_060000.dump")
    old = _upload("db-backups/app_daily_20260110_060000.dump", age=timedelta(days=2))
    candidates = our_unfinished([young, old], "db-backups", "app")
    live = {"app_daily_20260113_060000"}
    assert [c.upload for c in abandoned_uploads(candidates, live, NOW)] == [old]
    assert [c.upload for c in abandoned_uploads(candidates, set(), NOW)] == [young, old]
    # The database could not be asked: a young upload may belong to a live run.
    assert [c.upload for c in abandoned_uploads(candidates, None, NOW)] == [old]


def test_the_report_names_what_was_removed_and_its_size():
    report = SweepReport(
        password_files=["backup-pgpass-12-abc"],
        scratch_databases=["bp_verify_20260113150000_0a1b2c3d"],
        multipart_uploads=[("db-backups/app_daily_20260113_060000.dump", 48 * 1024 * 1024)],
        incomplete_backups=["app_daily_20260112_060000"],
    )
    text = "; ".join(report.lines())
    assert report.removed == 4
    assert "backup-pgpass-12-abc" in text and "bp_verify_20260113150000_0a1b2c3d" in text
    assert "48.0 MB" in text and "app_daily_20260112_060000" in text


def test_a_partial_file_is_left_to_its_owner_check_when_locks_cannot_be_asked():
    partial = UnfinishedUpload(key="db-backups/app_daily_20260113_060000.dump", ref="/b/.x", started=NOW, size=1, pid=7)
    candidates = our_unfinished([partial], "db-backups", "app")
    assert [c.upload for c in abandoned_uploads(candidates, None, NOW)] == [partial]
    assert abandoned_uploads(candidates, {"app_daily_20260113_060000"}, NOW) == []
