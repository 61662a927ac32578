"""Which databases a `servers:` entry takes, and their keys and settings (core/enrolment.py): no server needed."""

import pytest

from backup_pipeline.core.enrolled import load_all_settings as load_settings
from backup_pipeline.core.enrolment import ServerEntry, compare, database_key
from backup_pipeline.core.errors import ConfigurationError


def test_include_exclude_and_the_maintenance_database():
    names = ["postgres", "app_billing", "app_test", "app_billing_test", "analytics"]
    assert ServerEntry("main", "U").chosen(names) == ["analytics", "app_billing", "app_billing_test", "app_test"]
    entry = ServerEntry("main", "U", include=("app_*",), exclude=("*_test",))
    assert entry.chosen(names) == ["app_billing"]
    # postgres only when an include pattern names it
    assert ServerEntry("main", "U", include=("postgres", "app_*")).chosen(names)[-1] == "postgres"


def test_keys_are_unique_valid_dagster_names():
    assert database_key("main", "app_billing") == "main_app_billing"
    odd, other = database_key("main", "app-billing"), database_key("main", "app.billing")
    assert odd != other and odd.startswith("main_app_billing_") and len(odd) <= 41
    assert len(database_key("main", "x" * 60)) <= 41
    assert compare(["a", "b"], ["b", "c"]).added == ("c",) and compare(["a", "b"], ["b", "c"]).dropped == ("a",)


def test_overrides_and_server_settings_in_the_file(tmp_path, clean_env):
    file = tmp_path / "backups.yaml"
    file.write_text(
        "defaults:\n  retention_days: 14\n"
        "servers:\n  - key: main\n    url_env: MAIN_SERVER_URL\n    keep_last: 3\n"
        "    overrides:\n      app_billing: {keep_last: 14}\n"
    )
    # A record as the enrolment sensor writes it: the settings come from the file, the names from the record.
    (tmp_path / "b" / "db-backups" / ".enrolment").mkdir(parents=True)
    (tmp_path / "b" / "db-backups" / ".enrolment" / "main.json").write_text('{"databases": ["app", "app_billing"]}')
    env = {"BACKUP_CONFIG_FILE": str(file), "BACKUP_LOCAL_DIR": str(tmp_path / "b"), "MAIN_SERVER_URL": "x"}
    dbs = {db.key: db for db in load_settings(env).databases}
    assert set(dbs) == {"main_app", "main_app_billing"}
    assert (dbs["main_app"].keep_last, dbs["main_app_billing"].keep_last) == (3, 14)
    assert dbs["main_app_billing"].retention_days == 14 and dbs["main_app_billing"].dbname == "app_billing"
    assert dbs["main_app"].url_env == "MAIN_SERVER_URL" and dbs["main_app"].name_prefix == "main_app"


def test_a_mistyped_server_field_is_reported_with_its_line(tmp_path, clean_env):
    file = tmp_path / "backups.yaml"
    file.write_text("servers:\n  - key: main\n    url_env: MAIN_SERVER_URL\n    exclud: ['*_test']\n")
    with pytest.raises(ConfigurationError) as refused:
        load_settings({"BACKUP_CONFIG_FILE": str(file)})
    assert "line 4: unknown field 'exclud' (did you mean 'exclude'?)" in str(refused.value)
    file.write_text("servers:\n  - key: main\n")
    with pytest.raises(ConfigurationError, match="line 2: this server has no url_env"):
        load_settings({"BACKUP_CONFIG_FILE": str(file)})
