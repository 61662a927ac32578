"""Every setting of the pipeline, declared once.

A new setting is one `Setting(...)` entry (core/settings/declaration.py says what each part means) in the
module of its section: database.py (anything per database: it is a field of the databases file too, under
its own name or `file=`), storage.py, alerts.py, monitoring.py or deployment.py. Give its attribute name, environment
variable, checked type (config_fields.py, or `int`/`float` with `bounds`), default and one line of help.
The settings models (config.py), the environment reader (config_loading.py), the databases file's fields
(config_file.py), the tests' environment clean-up (tests/conftest.py) and README's table follow from it. Then
regenerate README's table:

    python -m backup_pipeline.core.settings.readme_table

(tests/unit/test_settings_table.py fails while README's table is not the generated one). A rule across
settings (dump jobs need the directory format) is a model validator in config.py.
"""

from __future__ import annotations

from backup_pipeline.core.settings import alerts, database, deployment, monitoring, storage
from backup_pipeline.core.settings.declaration import Setting

# In README's order.
SETTINGS: tuple[Setting, ...] = (
    *database.SETTINGS,
    *storage.SETTINGS,
    *alerts.SETTINGS,
    *monitoring.SETTINGS,
    *deployment.SETTINGS,
)
BY_NAME = {setting.name: setting for setting in SETTINGS}
