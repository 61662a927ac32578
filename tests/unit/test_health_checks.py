"""Each backup health check fails on a crafted backup and passes on a normal one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backup_pipeline.core.health import HEALTH_CHECKS, compare_backups
from backup_pipeline.core.manifest import Manifest

PREVIOUS = Manifest(
    name="app_daily_20261129_060000",
    backup_id="daily_20261129_060000",
    type="daily",
    database="app",
    created_at="2026-11-29T06:00:00+00:00",
    key="db-backups/app_daily_20261129_060000.dump",
    size_bytes=10_000_000,
    sha256="0" * 64,
    server_version="15.8",
    pg_dump_version="18.1",
    tables={"public.customers": 1000, "public.orders": 5000, "public.items": 4000},
    duration_s=120.0,
    tool_version="0.1",
)
NORMAL = replace(
    PREVIOUS,
    name="app_daily_20261130_060000",
    backup_id="daily_20261130_060000",
    created_at="2026-11-30T06:00:00+00:00",
    size_bytes=10_400_000,
    tables={"public.customers": 1010, "public.orders": 5100, "public.items": 3900, "public.new_table": 3},
    duration_s=130.0,
)

CRAFTED = {
    "no_table_disappeared": replace(NORMAL, tables={"public.customers": 1010, "public.orders": 9000}),
    "rows_not_dropped": replace(NORMAL, tables={"public.customers": 700, "public.orders": 4000, "public.items": 3000}),
    "dump_not_halved": replace(NORMAL, size_bytes=4_999_999),
    "tables_present": replace(NORMAL, tables={}),
    "duration_not_tripled": replace(NORMAL, duration_s=361.0),
}


def findings(current, previous=PREVIOUS, row_drop_percent=20.0):
    return {f.check: f for f in compare_backups(current, previous, row_drop_percent)}


def test_a_normal_backup_passes_every_check():
    result = findings(NORMAL)
    assert set(result) == set(HEALTH_CHECKS)
    assert all(f.passed for f in result.values()), [f.description for f in result.values() if not f.passed]


@pytest.mark.parametrize("check", list(CRAFTED))
def test_each_check_fails_on_its_crafted_backup(check):
    result = findings(CRAFTED[check])
    assert not result[check].passed
    assert PREVIOUS.name in result[check].description


def test_the_messages_say_what_changed():
    assert "public.items" in findings(CRAFTED["no_table_disappeared"])["no_table_disappeared"].description
    assert "23.0 % fewer" in findings(CRAFTED["rows_not_dropped"])["rows_not_dropped"].description
    assert "no tables at all" in findings(CRAFTED["tables_present"])["tables_present"].description
    assert "3.0 times" in findings(CRAFTED["duration_not_tripled"])["duration_not_tripled"].description


def test_the_row_drop_share_is_configurable_and_short_dumps_do_not_count_as_slow():
    assert findings(CRAFTED["rows_not_dropped"], row_drop_percent=25.0)["rows_not_dropped"].passed
    quick = replace(PREVIOUS, duration_s=0.2)
    assert findings(replace(NORMAL, duration_s=2.0), previous=quick)["duration_not_tripled"].passed


def test_the_first_backup_has_nothing_to_compare_with():
    assert all(f.passed for f in compare_backups(CRAFTED["tables_present"], None, 20.0))
