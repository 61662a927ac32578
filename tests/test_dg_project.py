"""The project as Dagster's `dg` command sees it ([tool.dg] in pyproject.toml): `dg check defs` loads the code
location, and `dg launch --job request_backup` names a backup that the request sensor then starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from backup_pipeline.defs.names import BACKUP_ID_TAG, BACKUP_TYPE_TAG
from tests.support.pipeline import load_defs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DG = shutil.which("dg", path=str(Path(sys.executable).parent))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(DG is None, reason="dg is not installed (pip install -e '.[test]' brings dagster-dg-cli)"),
]


def dg_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DG, *args], cwd=PROJECT_ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=300
    )


def test_dg_check_defs_loads_the_code_location(local_env):
    result = dg_command("check", "defs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_dg_launch_requests_a_backup_that_the_sensor_starts(local_env):
    config = '{"ops": {"backup_request": {"config": {"backup_type": "manual"}}}}'
    result = dg_command("launch", "--job", "request_backup", "--config-json", config)
    assert result.returncode == 0, result.stdout + result.stderr

    instance = dg.DagsterInstance.get()
    [record] = instance.get_run_records(dg.RunsFilter(job_name="request_backup"))
    assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    backup_id = record.dagster_run.tags[BACKUP_ID_TAG]
    assert backup_id.startswith("manual_") and record.dagster_run.tags[BACKUP_TYPE_TAG] == "manual"

    defs = load_defs()
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        requested = defs.resolve_sensor_def("backup_request_sensor")(context)
    assert [r.partition_key for r in requested.run_requests] == [backup_id]
