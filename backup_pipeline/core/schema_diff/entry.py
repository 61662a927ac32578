"""A schema entry: one object of pg_dump's output (or one column, constraint or owner of it), under the kind
a difference in it is reported under."""

from __future__ import annotations

from dataclasses import dataclass

# The kinds a difference is reported under, in the order shown. The first five are those of earlier versions
# (their --json keys stay); "other" takes any entry type entries.py does not name, so nothing pg_dump prints is
# skipped.
KINDS = (
    "tables",
    "columns",
    "indexes",
    "constraints",
    "functions",
    "types",
    "sequences",
    "extensions",
    "schemas",
    "owners",
    "privileges",
    "policies",
    "triggers",
    "comments",
    "database",
    "other",
)


@dataclass(frozen=True)
class SchemaEntry:
    kind: str
    name: str
    table: str | None  # the table it belongs to (columns, indexes, constraints), for a table added or dropped whole
    definition: str
