"""A table of pg_dump's output split into its own line (its kind and options) and one line per column and per
inline constraint, so a change names the column."""

from __future__ import annotations

import re

from backup_pipeline.core.schema_diff.entry import SchemaEntry


def table_entries(name: str, entry_type: str, body: str) -> list[SchemaEntry]:
    """A table as its own line (its kind and options) plus one line per column and per inline constraint."""
    opening = re.match(
        r"^CREATE (?:UNLOGGED )?(?:FOREIGN )?TABLE \S+(?: (?:OF|PARTITION OF) \S+)? \($", body.split("\n")[0]
    )
    close = body.rfind("\n)")
    if not opening or close < 0:
        return [SchemaEntry("tables", name, None, body)]  # a shape we do not split: compared whole
    words = "partitioned table" if "\nPARTITION BY " in body[close:] else entry_type.lower()
    if body.startswith("CREATE UNLOGGED"):
        words = f"unlogged {words}"
    options = " ".join(body[close + 2 :].rstrip(";").split())
    entries = [SchemaEntry("tables", name, None, f"{words} {options}".strip())]
    for line in _column_lines(body[len(body.split("\n")[0]) + 1 : close]):
        if line.startswith("CONSTRAINT "):
            _, constraint, definition = line.split(" ", 2)
            entries.append(SchemaEntry("constraints", f"{name}.{_unquote(constraint)}", name, definition))
        else:
            column, definition = _split_identifier(line)
            entries.append(SchemaEntry("columns", f"{name}.{column}", name, definition))
    return entries


def _column_lines(text: str) -> list[str]:
    """The column list of pg_dump's CREATE TABLE: one item per 4-space-indented line (continuations joined)."""
    items: list[str] = []
    for line in text.split("\n"):
        if line.startswith("    ") and not line.startswith("     ") or not items:
            items.append(line.strip())
        else:
            items[-1] += "\n" + line
    return [item.rstrip(",") for item in items if item]


def _split_identifier(line: str) -> tuple[str, str]:
    found = re.match(r'^("(?:[^"]|"")+"|\S+)\s*(.*)$', line, re.DOTALL)
    return (_unquote(found.group(1)), found.group(2)) if found else (line, "")


def _unquote(identifier: str) -> str:
    if identifier.startswith('"') and identifier.endswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier
