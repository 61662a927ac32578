"""The stall watchdog: a pg_dump that stops writing is stopped and fails the run, naming the dump."""

import shutil
import stat
import time

import dagster as dg
import pytest

from tests.support.pipeline import failure_message, run_backup

STALL_S = 3


def _stalling_pg_dump(bin_dir, real_bin) -> None:
    """A stand-in pg_dump: the real one answers version and build probes; a dump writes a little, then waits."""
    script = bin_dir / "pg_dump"
    script.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do\n'
        '  case "$arg" in --version|--file=/dev/null) exec "' + str(real_bin) + '" "$@";; esac\n'
        "done\n"
        "printf 'PGDMP partial dump'\n"
        # exec: the sleep is pg_dump's own process, so stopping it closes the pipe.
        "exec sleep 3600\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_dump_that_stops_writing_fails_within_the_limit_naming_the_dump(where, request, clean_env, tmp_path):
    request.getfixturevalue("local_env" if where == "local" else "s3_env")
    real = shutil.which("pg_dump") or next(iter(sorted(__import__("glob").glob("/usr/lib/postgresql/*/bin/pg_dump"))))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stalling_pg_dump(bin_dir, real)
    clean_env.setenv("BACKUP_PG_BIN_DIR", str(bin_dir))
    clean_env.setenv("BACKUP_STALL_SECONDS", str(STALL_S))

    started = time.monotonic()
    result, backup_id = run_backup(dg.DagsterInstance.get(), "manual")
    took = time.monotonic() - started

    assert not result.success
    message = failure_message(result)
    assert "the dump stalled: pg_dump wrote no bytes for 3 s (BACKUP_STALL_SECONDS)" in message, message
    # The limit plus the run's own start-up and clean-up; without the watchdog the run would wait an hour.
    assert took < STALL_S + 20, took
    print(f"stalled {where} backup failed after {took:.1f} s")
    if where == "local":
        stored = (
            [p for p in (tmp_path / "backups").rglob("*") if p.is_file()] if (tmp_path / "backups").exists() else []
        )
    else:
        env = request.getfixturevalue("s3_env")
        listing = request.getfixturevalue("moto_server").client().list_objects_v2(Bucket=env["BACKUP_S3_BUCKET"])
        stored = [o["Key"] for o in listing.get("Contents", [])]
        uploads = request.getfixturevalue("moto_server").client().list_multipart_uploads(Bucket=env["BACKUP_S3_BUCKET"])
        assert not uploads.get("Uploads"), uploads
    assert not stored, stored
