"""The databases file (BACKUP_CONFIG_FILE): what it configures, and the line-numbered errors of a bad one."""

from __future__ import annotations

import pytest

from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.dump_options import DEFAULT_COMPRESSION, Compression, DumpOptions
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.settings import SETTINGS
from backup_pipeline.defs.names import DefinitionNames


def settings_from(tmp_path, text: str, **env):
    path = tmp_path / "backups.yaml"
    path.write_text(text)
    return load_settings({"BACKUP_CONFIG_FILE": str(path), **env}), path


def error_from(tmp_path, text: str) -> tuple[str, str]:
    path = tmp_path / "backups.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"BACKUP_CONFIG_FILE": str(path)})
    return str(caught.value), str(path)


def test_database_url_alone_means_one_database_with_plain_names():
    settings = load_settings({"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/app"})
    [db] = settings.databases
    assert db.url_env == "DATABASE_URL" and db.is_default
    names = DefinitionNames(db)
    assert (names.backup_job, names.partitions, names.asset_path("database_dump")) == (
        "backup_job",
        "backups",
        ["database_dump"],
    )


def test_file_lists_databases_with_their_own_settings_and_shared_defaults(tmp_path):
    settings, _ = settings_from(
        tmp_path,
        """\
defaults:
  retention_days: 14
  keep_last: "5"          # quoted numbers are numbers too
databases:
  - key: app
    url_env: APP_DATABASE_URL
    name_prefix: app-prod
    schedule: "30 5 * * *"
    retention_days: 60
    storage_prefix: /db-backups/app/
    freshness_hours: 30
  - key: billing
    url_env: BILLING_DATABASE_URL
    verify_url_env: SCRATCH_SERVER_URL
""",
        BACKUP_KEEP_LAST="9",  # the environment's default, overridden by the file's defaults
        BACKUP_NAME_PREFIX="ignored",  # one prefix cannot name several databases
    )
    app, billing = settings.databases
    assert (app.key, app.url_env, app.name_prefix, app.schedule_cron) == (
        "app",
        "APP_DATABASE_URL",
        "app-prod",
        "30 5 * * *",
    )
    assert (app.retention_days, app.keep_last, app.storage_prefix, app.freshness_hours) == (
        60,
        5,
        "db-backups/app",
        30.0,
    )
    assert (billing.name_prefix, billing.retention_days, billing.keep_last) == (None, 14, 5)
    assert (billing.schedule_cron, billing.storage_prefix, billing.verify_url_env) == (
        "0 6 * * *",
        "db-backups",
        "SCRATCH_SERVER_URL",
    )
    assert settings.database("billing") is billing


def test_every_mistake_is_reported_with_its_line(tmp_path):
    message, path = error_from(
        tmp_path,
        """\
databases:
  - key: app
    url_env: APP_DATABASE_URL
    retention_days: 0
    keep_last: many
  - key: app
    url_env: OTHER_URL
  - key: crm
    url_env: CRM_URL
    schedul: "0 6 * * *"
  - url_env: NO_KEY_URL
  - key: shop
    url_env: SHOP_URL
    schedule: every day
""",
    )
    assert message.startswith(f"{path} has 6 problems:")
    assert f"{path} line 4: retention_days must be a whole number from 1 to 36500, got 0" in message
    assert f"{path} line 5: keep_last must be a whole number from 0 to 100000, got 'many'" in message
    assert f"{path} line 6: database key 'app' is already used on line 2" in message
    assert f"{path} line 10: unknown field 'schedul' (did you mean 'schedule'?)" in message
    assert f"{path} line 11: this database has no key" in message
    assert f"{path} line 14: schedule 'every day' is not a cron expression" in message


def test_the_key_default_is_refused_beside_other_databases(tmp_path):
    """`default` names the plain jobs (backup_job, prune_job): beside other databases, the retention sensor
    would prune the wrong database's backups after their runs."""
    message, path = error_from(
        tmp_path,
        """\
databases:
  - key: app
    url_env: APP_DATABASE_URL
  - key: default
    url_env: OTHER_URL
""",
    )
    assert f"{path} line 4: database key 'default' is reserved for a file of one database" in message
    assert "choose another key" in message


def test_single_problem_names_file_line_and_fix(tmp_path):
    message, path = error_from(tmp_path, "databases:\n  - key: app\n    url_env: APP_URL\n    retention_days: 1.5\n")
    assert message == f"{path} line 4: retention_days must be a whole number from 1 to 36500, got '1.5'"


def test_url_pasted_in_place_of_a_variable_name_is_refused_without_echoing_it(tmp_path):
    message, path = error_from(
        tmp_path, "databases:\n  - key: app\n    url_env: postgresql://backup:s3cret-pw@db.internal/app\n"
    )
    assert f"{path} line 3: url_env must be the name of an environment variable" in message
    assert "s3cret-pw" not in message


def test_two_databases_writing_the_same_object_names_are_refused(tmp_path):
    # Retention deletes what carries its own prefix: these two would prune each other's backups.
    message, path = error_from(
        tmp_path,
        "databases:\n  - key: a\n    url_env: A_URL\n    name_prefix: shop\n"
        "  - key: b\n    url_env: B_URL\n    name_prefix: shop\n",
    )
    assert f"{path} line 5: database 'b' would write the same object names as 'a' (line 2)" in message
    settings, _ = settings_from(
        tmp_path,
        "databases:\n  - key: a\n    url_env: A_URL\n    name_prefix: shop\n"
        "  - key: b\n    url_env: B_URL\n    name_prefix: shop\n    storage_prefix: db-backups/b\n",
    )
    assert [d.key for d in settings.databases] == ["a", "b"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("databases:\n  - key: app\n    url_env: [unclosed\n", "line 4: not valid YAML"),
        ("", "is empty: the file must be a mapping with a 'databases:' list"),
        ("- key: app\n", "line 1: the file must be a mapping with a 'databases:' list"),
        ("databases: []\n", "line 1: 'databases' must be a list with at least one entry"),
        ("defaults:\n  retention_days: 7\n", "line 1: no 'databases:' list"),
        ("database:\n  - key: app\n", "line 1: unknown section 'database' (did you mean 'databases'?)"),
        (
            "databases:\n  - key: app\n    key: other\n    url_env: U\n",
            "line 3: 'key' is given twice (first on line 2)",
        ),
    ],
)
def test_malformed_files_say_where_and_what(tmp_path, text, expected):
    message, path = error_from(tmp_path, text)
    assert expected in message and message.startswith(str(path)), message


def test_missing_file_says_how_to_fix_it(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist: create it .* or unset BACKUP_CONFIG_FILE"):
        load_settings({"BACKUP_CONFIG_FILE": str(tmp_path / "nowhere.yaml")})


def test_numbers_past_their_bounds_are_refused_with_the_bounds(tmp_path):
    message, path = error_from(
        tmp_path, "databases:\n  - key: app\n    url_env: APP_URL\n    retention_days: 1000000\n"
    )
    assert message == f"{path} line 4: retention_days must be a whole number from 1 to 36500, got 1000000"
    message, path = error_from(tmp_path, "databases:\n  - key: app\n    url_env: APP_URL\n    freshness_hours: .inf\n")
    assert message == f"{path} line 4: freshness_hours must be a number from 1 to 8784, got inf"


def test_retention_and_health_fields_per_database_with_bounds(tmp_path, clean_env):

    path = tmp_path / "backups.yaml"
    path.write_text(
        "defaults:\n  keep_weekly: 4\ndatabases:\n"
        "  - key: app\n    url_env: APP_URL\n    keep_daily: 7\n    keep_monthly: 12\n    keep_yearly: 3\n"
        "    pre_migration_retention_days: 365\n    auto_prune: false\n    stall_seconds: 120\n"
        "    health_max_row_drop_percent: 5\n"
        "  - key: billing\n    url_env: BILLING_URL\n"
    )
    clean_env.setenv("BACKUP_CONFIG_FILE", str(path))
    app, billing = load_settings().databases
    assert (app.keep_daily, app.keep_weekly, app.keep_monthly, app.keep_yearly) == (7, 4, 12, 3)
    assert (app.pre_migration_retention_days, app.auto_prune, app.stall_seconds) == (365, False, 120)
    assert app.health_max_row_drop_percent == 5
    assert (billing.keep_weekly, billing.auto_prune, billing.pre_migration_retention_days) == (4, True, None)

    path.write_text(
        "databases:\n  - key: app\n    url_env: APP_URL\n    keep_yearly: 500\n    auto_prune: maybe\n"
        "    health_max_row_drop_percent: 150\n"
    )
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    message = str(error.value)
    assert "line 4: keep_yearly must be a whole number from 0 to 100, got 500" in message, message
    assert "line 5: auto_prune must be true or false, got 'maybe'" in message
    assert "line 6: health_max_row_drop_percent must be a number from 0 to 100, got 150" in message


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BACKUP_KEEP_DAILY", "-1", "BACKUP_KEEP_DAILY must be a whole number from 0 to 36500, got -1"),
        ("BACKUP_KEEP_WEEKLY", "four", "BACKUP_KEEP_WEEKLY must be a whole number from 0 to 5200, got 'four'"),
        ("BACKUP_PRE_MIGRATION_RETENTION_DAYS", "0", "BACKUP_PRE_MIGRATION_RETENTION_DAYS must be a whole number"),
        ("BACKUP_AUTO_PRUNE", "nope", "BACKUP_AUTO_PRUNE must be true or false, got 'nope'"),
        ("BACKUP_STALL_SECONDS", "0", "BACKUP_STALL_SECONDS must be a number from 1 to 86400, got 0"),
    ],
)
def test_bad_retention_variables_name_themselves(clean_env, variable, value, message):

    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        load_settings({variable: value})


def _alias_bomb() -> str:
    """About 600 bytes that a plain YAML loader expands into 9**9 strings (gigabytes, a minute of CPU)."""
    lines = ["l0: &l0 [" + ",".join(['"lol"'] * 9) + "]"]
    for level in range(1, 9):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    lines.append("databases:\n  - key: app\n    url_env: APP_DATABASE_URL\n    schedule: *l8")
    return "\n".join(lines) + "\n"


_MEASURE = """
import json, sys, time, tracemalloc
from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.errors import ConfigurationError

def kilobytes(field):  # this process's own memory (ru_maxrss would count the parent it was forked from)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

rss_before = kilobytes("VmRSS")
tracemalloc.start()
started = time.perf_counter()
try:
    load_settings({"BACKUP_CONFIG_FILE": sys.argv[1]})
    message = None
except ConfigurationError as error:
    message = str(error)
took = time.perf_counter() - started
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"message": message, "seconds": took, "peak_bytes": peak,
                  "rss_growth_kb": kilobytes("VmHWM") - rss_before}))
"""


def test_an_alias_bomb_is_refused_within_a_second_and_50_mb_naming_its_line(tmp_path):
    import json
    import subprocess
    import sys

    path = tmp_path / "backups.yaml"
    path.write_text(_alias_bomb())
    assert 500 <= path.stat().st_size <= 700
    # In a process of its own, so its time and memory are the loader's alone.
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        f"alias bomb refused in {outcome['seconds'] * 1000:.1f} ms, peak {outcome['peak_bytes'] / 1024:.0f} KB "
        f"allocated, resident memory grew by {outcome['rss_growth_kb'] / 1024:.1f} MB at most"
    )
    assert outcome["message"] is not None, "the alias bomb was accepted"
    assert f"{path} line 1: not valid YAML: YAML anchor '&l0' is not allowed here" in outcome["message"]
    assert outcome["seconds"] < 1, outcome
    assert outcome["peak_bytes"] < 50 * 1024 * 1024, outcome
    assert outcome["rss_growth_kb"] < 50 * 1024, outcome


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "defaults: &shared\n  retention_days: 7\ndatabases:\n  - key: app\n    url_env: U\n",
            "line 1: not valid YAML: YAML anchor '&shared' is not allowed here",
        ),
        (
            "databases:\n  - key: app\n    url_env: U\n    <<: *shared\n",
            "line 4: not valid YAML: YAML alias '*shared' is not allowed here",
        ),
    ],
)
def test_anchors_and_aliases_are_refused_with_their_line(tmp_path, text, expected):
    message, path = error_from(tmp_path, text)
    assert expected in message and message.startswith(str(path)), message


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    from backup_pipeline.core.config_file_yaml import MAX_FILE_BYTES

    message, _ = error_from(tmp_path, "databases:\n  - key: app\n    url_env: U\n" + "#" * MAX_FILE_BYTES + "\n")
    assert "is larger than 1024 KB: a databases file is a few KB" in message, message


# ------------------------------------------------------------- every database setting is a file field as well


def test_dump_format_jobs_and_compression_are_file_fields_over_the_environment(tmp_path):
    settings, _ = settings_from(
        tmp_path,
        """\
defaults:
  compression: zstd
databases:
  - key: app
    url_env: APP_URL
  - key: big
    url_env: BIG_URL
    dump_format: Directory
    dump_jobs: 4
    compression: 6            # a bare level is gzip's
  - key: plain
    url_env: PLAIN_URL
    compression: default
""",
        BACKUP_COMPRESSION="gzip:9",  # the environment's default, overridden by the file's defaults
        BACKUP_DUMP_JOBS="2",
        BACKUP_DUMP_FORMAT="directory",
    )
    app, big, plain = (db.dump_options() for db in settings.databases)
    assert app == DumpOptions("directory", 2, Compression("zstd"))
    assert big == DumpOptions("directory", 4, Compression("gzip", 6))
    assert plain == DumpOptions("directory", 2, DEFAULT_COMPRESSION)


@pytest.mark.parametrize(
    "fields, line, expected",
    [
        ("    compression: brotli\n", 4, "compression 'brotli' is not a compression: use gzip:N"),
        ("    compression: zstd:99\n", 4, "compression 'zstd:99': the zstd level must be a whole number from 1 to 22"),
        ("    dump_format: tar\n", 4, "dump_format 'tar' is not a dump format: use custom"),
        ("    dump_jobs: 65\n", 4, "dump_jobs must be a whole number from 1 to 64, got 65"),
        ("    dump_jobs: 4\n", 2, "'dump_jobs: 4' needs 'dump_format: directory': pg_dump runs in parallel only"),
        ("    verify_on: url\n", 2, "verify_on is url but no verify_url_env is given"),
        ("    verify_local_dir: 7\n", 4, "verify_local_dir must be text, got '7'"),
    ],
)
def test_a_bad_database_setting_in_the_file_is_refused_with_its_line_and_file_name(tmp_path, fields, line, expected):
    message, path = error_from(tmp_path, "databases:\n  - key: app\n    url_env: APP_URL\n" + fields)
    # Named as the file names it, on the field's line (a rule across fields: on the entry's).
    assert message.startswith(f"{path} line {line}: {expected}")


def test_every_database_variable_has_a_file_field_that_means_the_same(tmp_path):
    """The environment and the file set the same attributes: a value given both ways gives one database."""
    values = {
        "BACKUP_S3_PREFIX": ("db-backups/x", "db-backups/x"),
        "BACKUP_RETENTION_DAYS": ("12", 12),
        "BACKUP_KEEP_LAST": ("3", 3),
        "BACKUP_KEEP_DAILY": ("7", 7),
        "BACKUP_KEEP_WEEKLY": ("4", 4),
        "BACKUP_KEEP_MONTHLY": ("12", 12),
        "BACKUP_KEEP_YEARLY": ("2", 2),
        "BACKUP_PRE_MIGRATION_RETENTION_DAYS": ("90", 90),
        "BACKUP_AUTO_PRUNE": ("false", False),
        "BACKUP_HEALTH_MAX_ROW_DROP_PERCENT": ("5", 5),
        "BACKUP_SCHEDULE_CRON": ("15 3 * * *", "15 3 * * *"),
        "BACKUP_FRESHNESS_HOURS": ("48", 48),
        "BACKUP_STALL_SECONDS": ("120", 120),
        "BACKUP_VERIFY_ON": ("source", "source"),
        "BACKUP_VERIFY_LOCAL_DIR": ("/srv/scratch", "/srv/scratch"),
        "BACKUP_DUMP_FORMAT": ("directory", "directory"),
        "BACKUP_DUMP_JOBS": ("3", 3),
        "BACKUP_COMPRESSION": ("zstd:5", "zstd:5"),
        "BACKUP_SCHEDULE_JITTER_MINUTES": ("45", 45),
        "BACKUP_SERVER_MAX_RUNS": ("2", 2),
        "BACKUP_BATCH_SIZE": ("25", 25),
        "BACKUP_NOTIFY_URLS": (
            "json://hooks.test/a, form://hooks.test/b",
            ["json://hooks.test/a", "form://hooks.test/b"],
        ),
        "BACKUP_HEARTBEAT_URL": ("https://hc-ping.test/0f1e", "https://hc-ping.test/0f1e"),
        "BACKUP_HEARTBEAT_STYLE": ("cronitor", "cronitor"),
        "BACKUP_METRICS_TEXTFILE": ("/var/lib/node_exporter/backups.prom", "/var/lib/node_exporter/backups.prom"),
        "BACKUP_METRICS_PUSHGATEWAY_URL": ("http://pushgateway.test:9091", "http://pushgateway.test:9091"),
    }
    from_env = load_settings({variable: text for variable, (text, _) in values.items()}).database()
    fields = {s.env: s.file_field for s in SETTINGS if s.file_field and s.env}
    entry = "".join(f"    {fields[variable]}: {value!r}\n" for variable, (_, value) in values.items())
    from_file, _ = settings_from(tmp_path, f"databases:\n  - key: default\n    url_env: DATABASE_URL\n{entry}")
    assert from_file.database() == from_env
    # Every database setting with a variable is in `values` (a new one belongs there too), but the three that
    # name a database (its URL, its server for verification, its name prefix) and are covered above.
    assert set(fields) - set(values) == {"DATABASE_URL", "BACKUP_VERIFY_DATABASE_URL", "BACKUP_NAME_PREFIX"}
