"""What one setting is, and what is derived from the list of them (this package's __init__).

A `Setting` names its attribute, its environment variable, its databases-file field, its checked type and
bounds, its default and one line of help. From the list come the settings models (config.py), the variable
that set each attribute (for messages), the databases file's fields (config_file.py), README's configuration
table (readme_table.py) and the variables the tests clear.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from backup_pipeline.core import config_fields as fields

# Sections: which settings model holds the attribute. READ_WHERE_USED: a variable read by the code that
# uses it (the databases file's path, a folder of client tools), not part of the settings models.
DATABASE = "database"  # DatabaseSettings: one per configured database, also settable in the databases file
STORAGE = "storage"  # StorageSettings
DISCORD = "discord"  # DiscordSettings
DEPLOYMENT = "deployment"  # Settings itself
READ_WHERE_USED = "read where used"

# Where a database setting may stand in the databases file.
IN_DEFAULTS_AND_ENTRIES = "defaults and entries"
IN_ENTRIES = "entries"  # per database only: one value cannot name several databases
REQUIRED_IN_ENTRIES = "entries, required"


@dataclass(frozen=True)
class Setting:
    """One setting: everything the pipeline, the databases file and README need to know about it."""

    name: str  # the attribute of its section's model (DatabaseSettings.retention_days)
    env: str | None  # the environment variable; None: the databases file only
    section: str
    help: str  # one line: README's "meaning" column
    type: Any = str  # the checked type (config_fields), or int/float with `bounds`
    default: Any = None  # None: unset
    bounds: tuple[float, float] | None = None  # for an int or float: the smallest and largest value
    # README's default column when the default itself does not say it ("the database name").
    shown_default: str | None = None
    # Other variables read when `env` is unset, first one set wins (the original workflows' DO_SPACES_*).
    aliases: tuple[str, ...] = ()
    # The attribute holds the *name* of the variable that is set, never its value: for secrets and for URLs
    # with passwords, read where they are used. `value_type` checks the value (its message never echoes it).
    holds_name: bool = False
    value_type: Any = None
    # Database settings only: the databases file's field (default: the attribute's name), where it may stand,
    # and its type there when the file is checked more strictly than the environment.
    file: str | None = None
    file_scope: str = IN_DEFAULTS_AND_ENTRIES
    file_type: Any = None
    # The value itself is a secret (a URL with a token): kept out of the model's repr, so out of any log or
    # error that prints settings. Prefer holds_name; this is for values that may also come from the file.
    secret: bool = False

    @property
    def checked_type(self) -> Any:
        """The type values are validated with: `type`, with `bounds` for a number."""
        if self.bounds is None:
            return self.type
        low, high = self.bounds
        check = fields.whole_number(low, high) if self.type is int else fields.number(low, high)
        return Annotated[self.type, check]

    @property
    def file_field(self) -> str | None:
        return (self.file or self.name) if self.section == DATABASE else None

    @property
    def variables(self) -> tuple[str, ...]:
        return ((self.env,) if self.env else ()) + self.aliases

    def variable_in(self, env: Mapping[str, str]) -> str | None:
        """The first of this setting's variables that is set in `env`."""
        return next((name for name in self.variables if name in env), None)

    def model_field(self) -> tuple[Any, Any]:
        """(annotation, default) of the attribute, for pydantic.create_model."""
        annotation = self.checked_type
        default = Field(default=self.default, repr=False) if self.secret else self.default
        return (annotation | None if self.default is None else annotation), default

    def file_model_field(self) -> tuple[Any, Any]:
        """(annotation, default) of the file field: a field left out is None (not set), and a required one
        has no default."""
        annotation = self.file_type or self.checked_type
        return (annotation, ...) if self.file_scope == REQUIRED_IN_ENTRIES else (annotation, None)


def in_section(settings: Iterable[Setting], section: str) -> tuple[Setting, ...]:
    return tuple(s for s in settings if s.section == section)


def model_fields(settings: Iterable[Setting], section: str) -> dict[str, tuple[Any, Any]]:
    """The fields of `section`'s model, for pydantic.create_model."""
    return {s.name: s.model_field() for s in in_section(settings, section)}


def environment_variables(settings: Iterable[Setting]) -> tuple[str, ...]:
    """Every variable the settings read, aliases included."""
    return tuple(variable for s in settings for variable in s.variables)


def read_environment(settings: Iterable[Setting], section: str, env: dict[str, str]) -> tuple[dict, dict]:
    """`section`'s values found in `env` (only the non-empty variables), and the variable each came from."""
    values, names = {}, {}
    for setting in in_section(settings, section):
        variable = setting.variable_in(env)
        if variable is None:
            continue
        names[setting.name] = variable
        values[setting.name] = variable if setting.holds_name else env[variable]
    return values, names
