"""One declaration per setting (core/settings/): README's table, the environment and the file follow from it."""

from __future__ import annotations

import dataclasses
from collections import Counter

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.settings import BY_NAME, SETTINGS
from backup_pipeline.core.settings.declaration import DATABASE
from backup_pipeline.core.settings.readme_table import COMMAND, main, render, stale
from tests.conftest import CONFIG_VARS, PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def test_readmes_configuration_table_is_the_generated_one():
    assert stale(README.read_text(encoding="utf-8")) is None


def test_changing_a_declaration_makes_readmes_table_stale_until_it_is_regenerated(tmp_path):
    changed = [dataclasses.replace(s, default=31) if s.name == "retention_days" else s for s in SETTINGS]
    readme = README.read_text(encoding="utf-8")
    assert stale(readme, changed) == (
        f"README.md's configuration table differs from the declarations in core/settings/: run `{COMMAND}`"
    )
    assert "| `BACKUP_RETENTION_DAYS` | `retention_days` | retention window in days (1 to 36500) | 31 |" in render(
        changed
    )
    # The command rewrites only the table, and --check then passes.
    copy = tmp_path / "README.md"
    copy.write_text(readme.replace("| 30 |", "| 29 |", 1) + "\nafter the table\n", encoding="utf-8")
    assert main(["--check", "--readme", str(copy)]) == 1
    assert main(["--readme", str(copy)]) == 0
    assert main(["--check", "--readme", str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == readme + "\nafter the table\n"


def test_names_variables_and_file_fields_are_each_declared_once():
    for kind in ("name", "env", "file_field"):
        values = [getattr(s, kind) for s in SETTINGS if getattr(s, kind)]
        assert [value for value, count in Counter(values).items() if count > 1] == [], kind


def test_the_models_and_the_tests_clean_up_follow_the_declarations():
    database = {s.name for s in SETTINGS if s.section == DATABASE}
    assert set(DatabaseSettings.model_fields) == database
    assert {s.env for s in SETTINGS if s.env} | {a for s in SETTINGS for a in s.aliases} <= set(CONFIG_VARS)
    # A declaration's default is the model's.
    assert load_settings({}).database().retention_days == BY_NAME["retention_days"].default == 30
