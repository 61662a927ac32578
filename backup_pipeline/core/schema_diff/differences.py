"""The two sides' entries compared, entry by entry, and the answer: what was added, removed or changed since
the backup."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.schema_diff.entry import KINDS, SchemaEntry

# What diff never compares, said in every answer so that "no differences" is never read as more than it is.
NOT_COMPARED = (
    "table rows (diff compares the schema only)",
    "roles, tablespaces and other objects of the whole server (not in a database's dump)",
)


@dataclass
class Change:
    name: str
    backup: str | None  # its definition in the backup; None: the backup does not have it
    live: str | None  # its definition in the live database; None: the live database does not have it


@dataclass
class KindDiff:
    added: list[Change] = field(default_factory=list)  # in the live database only: a rollback removes them
    removed: list[Change] = field(default_factory=list)  # in the backup only: a rollback brings them back
    changed: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass
class SchemaDiff:
    manifest: Manifest
    live_database: str
    kinds: dict[str, KindDiff]
    duration_s: float
    pg_dump_version: str = ""  # of the client that read both sides
    notes: list[str] = field(default_factory=list)  # what the reader must know to trust the answer

    @property
    def empty(self) -> bool:
        return all(k.empty for k in self.kinds.values())

    def as_dict(self) -> dict:
        return {
            "backup": self.manifest.name,
            "label": self.manifest.label,
            "live_database": self.live_database,
            "identical": self.empty,
            **{
                kind: {
                    "added": [{"name": c.name, "live": c.live} for c in diff.added],
                    "removed": [{"name": c.name, "backup": c.backup} for c in diff.removed],
                    "changed": [{"name": c.name, "backup": c.backup, "live": c.live} for c in diff.changed],
                }
                for kind, diff in self.kinds.items()
            },
            "compared": list(self.kinds),
            "not_compared": list(NOT_COMPARED),
            "notes": self.notes,
            "pg_dump_version": self.pg_dump_version,
            "backup_pg_dump_version": self.manifest.pg_dump_version,
            "duration_s": self.duration_s,
        }


def compare_entries(
    backup: dict[tuple[str, str], SchemaEntry], live: dict[tuple[str, str], SchemaEntry]
) -> dict[str, KindDiff]:
    """Entry by entry. Columns, indexes and constraints of a table added or dropped whole are not listed again:
    the table's line says it; nor is the owner of an object that is itself added or dropped."""
    only_one_side = set(backup) ^ set(live)
    whole = {name for (kind, name) in only_one_side if kind == "tables"}
    gone_or_new = {name for (_kind, name) in only_one_side}
    kinds = {kind: KindDiff() for kind in KINDS}
    for key in sorted(set(backup) | set(live), key=lambda k: (KINDS.index(k[0]), k[1])):
        before, after = backup.get(key), live.get(key)
        entry = before or after
        if entry.kind in ("columns", "indexes", "constraints") and entry.table in whole:
            continue
        if entry.kind == "owners" and (before is None or after is None):
            continue
        if entry.name.endswith(")") and " (" in entry.name and entry.name.rsplit(" (", 1)[0] in gone_or_new:
            continue  # a second entry of an object added or dropped whole (its OWNED BY, its ROW SECURITY)
        diff = kinds[entry.kind]
        if before is None:
            diff.added.append(Change(entry.name, None, after.definition))
        elif after is None:
            diff.removed.append(Change(entry.name, before.definition, None))
        elif before.definition != after.definition:
            diff.changed.append(Change(entry.name, before.definition, after.definition))
    return kinds


def line_changes(before: str | None, after: str | None) -> list[str]:
    """The lines that differ between two definitions, as `- old` and `+ new` (trailing commas ignored, so an
    enum value added at the end shows as one line)."""
    old = [line.strip().rstrip(",") for line in (before or "").splitlines() if line.strip()]
    new = [line.strip().rstrip(",") for line in (after or "").splitlines() if line.strip()]
    return [
        f"{line[0]} {line[1:].strip()}"
        for line in difflib.unified_diff(old, new, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
