"""The settings with the databases of the databases file's `servers:` entries (core/enrolment.py) among them:
what the code location, its runs and the command line work with."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import ValidationError

from backup_pipeline.core.config import CONFIG_FILE_ENV, DatabaseSettings
from backup_pipeline.core.config_fields import IN_FILE
from backup_pipeline.core.config_loading import database_defaults, load_settings
from backup_pipeline.core.enrolment import current_databases, enrolled_values
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.storage import open_storage


def load_all_settings(environ: Mapping[str, str | None] | None = None):
    """The settings (core/config.py) with the databases the `servers:` entries take, as recorded at the last
    look; a database listed by key among `databases:` keeps that entry's settings."""
    settings = load_settings(environ)
    if not settings.servers:
        return settings
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if v}
    shared = database_defaults(env)
    storage = open_storage(settings.storage)
    taken = {db.key for db in settings.databases}
    enrolled = []
    for entry in settings.servers:
        for name in current_databases(entry, storage, shared["storage_prefix"], env):
            values = {**shared, **enrolled_values(entry, name)}
            if values["key"] in taken:
                continue
            taken.add(values["key"])
            try:
                enrolled.append(DatabaseSettings.model_validate(values, context=IN_FILE))
            except ValidationError as exc:
                problems = "; ".join(str(error.get("ctx", {}).get("error") or error["msg"]) for error in exc.errors())
                raise ConfigurationError(
                    f"database {name} of server '{entry.key}' (servers: in {env.get(CONFIG_FILE_ENV)}): {problems}"
                ) from None
    return settings.model_copy(update={"databases": settings.databases + tuple(enrolled)})
