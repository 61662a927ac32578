"""`backup-db diff NAME`: the live database's schema against a backup's, so that after a migration the user
sees exactly what rolling back to that backup would undo. Read-only: nothing is run through Dagster.
"""

from __future__ import annotations

from backup_pipeline.cli.context import CliContext
from backup_pipeline.cli.output import Progress, age, paint, print_json
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.schema_diff import NOT_COMPARED, SchemaDiff, diff_backup_schema, line_changes

KIND_TITLES = {
    "tables": ("Tables and views", "table or view", "tables or views"),
    "columns": ("Columns (with their defaults)", "column", "columns"),
    "indexes": ("Indexes", "index", "indexes"),
    "constraints": ("Constraints", "constraint", "constraints"),
    "functions": ("Functions and procedures", "function", "functions"),
    "types": ("Types, enums and domains", "type", "types"),
    "sequences": ("Sequences", "sequence", "sequences"),
    "extensions": ("Extensions", "extension", "extensions"),
    "schemas": ("Schemas", "schema", "schemas"),
    "owners": ("Owners", "owner", "owners"),
    "privileges": ("Privileges (GRANT and REVOKE)", "privilege entry", "privilege entries"),
    "policies": ("Row security and policies", "policy", "policies"),
    "triggers": ("Triggers and rules", "trigger or rule", "triggers or rules"),
    "comments": ("Comments", "comment", "comments"),
    "database": ("The database itself (encoding, locale, settings)", "database setting", "database settings"),
    "other": ("Other objects", "other object", "other objects"),
}
# Kinds whose definitions are short enough to show on the object's line.
ONE_LINE_KINDS = ("columns", "indexes", "constraints", "owners")
MAX_LINES_SHOWN = 12
SHOWN_CHARS = 160


def diff_backup(ctx: CliContext, args) -> int:
    name = ctx.backup_name(args.name, args.type)
    live = ctx.source()
    progress = Progress()
    diff = diff_backup_schema(ctx.catalog(with_encryption_key=True), name, live, log=progress.line)
    if args.json:
        print_json({**diff.as_dict(), "live_server": live.server})
    else:
        print(diff_text(diff, live))
    return 0


def diff_text(diff: SchemaDiff, live: PostgresTarget) -> str:
    manifest = diff.manifest
    label = f", label {manifest.label}" if manifest.label else ""
    lines = [
        f"Schema of backup {manifest.name} ({age(manifest.created)} old{label}) against the live database "
        f"{live.dbname} on {live.server}:"
    ]
    lines += [paint(f"Note: {note}.", "yellow") for note in diff.notes]
    compared = (
        f"Compared: every object pg_dump {diff.pg_dump_version} dumps from the database, as {', '.join(diff.kinds)}. "
        f"Not compared: {'; '.join(NOT_COMPARED)}."
    )
    if diff.empty:
        lines.append(paint("No differences: restoring this backup would leave the schema as it is now.", "green"))
        lines.append(compared)
        return "\n".join(lines)
    lines.append(
        "  + only in the live database (a rollback to the backup removes it)\n"
        "  - only in the backup (a rollback brings it back)\n"
        "  ~ in both, defined differently (backup -> live)"
    )
    summary = []
    for kind, kind_diff in diff.kinds.items():
        if kind_diff.empty:
            continue
        title, one, many = KIND_TITLES[kind]
        lines.append(f"\n{title}")
        for change in kind_diff.added:
            lines.append(paint(f"  + {change.name}", "green") + _definition(kind, change.live))
        for change in kind_diff.removed:
            lines.append(paint(f"  - {change.name}", "red") + _definition(kind, change.backup))
        for change in kind_diff.changed:
            lines.append(paint(f"  ~ {change.name}", "yellow") + _changed(kind, change.backup, change.live))
            if kind not in ONE_LINE_KINDS and kind not in ("functions", "tables"):
                shown = line_changes(change.backup, change.live)
                lines += [f"      {_short(line)}" for line in shown[:MAX_LINES_SHOWN]]
                if len(shown) > MAX_LINES_SHOWN:
                    lines.append(f"      … and {len(shown) - MAX_LINES_SHOWN} more lines (see --json)")
        counts = [
            f"{len(items)} {word}"
            for items, word in (
                (kind_diff.added, "added"),
                (kind_diff.removed, "removed"),
                (kind_diff.changed, "changed"),
            )
            if items
        ]
        total = len(kind_diff.added) + len(kind_diff.removed) + len(kind_diff.changed)
        summary.append(f"{total} {one if total == 1 else many} ({', '.join(counts)})")
    lines.append(f"\nSince the backup: {'; '.join(summary)}.")
    lines.append(compared)
    return "\n".join(lines)


def _definition(kind: str, definition: str | None) -> str:
    if kind in ONE_LINE_KINDS and definition:
        return f"  {_short(definition)}"
    if kind == "tables" and definition and not definition.startswith("table"):
        return f"  ({_short(definition.split(':', 1)[0])})"
    if kind not in ("tables", "functions") and definition:
        return f"  {_short(definition)}"
    return ""


def _changed(kind: str, before: str | None, after: str | None) -> str:
    if kind == "functions":
        return "  (its body or signature details differ)"
    if kind in ONE_LINE_KINDS or kind == "tables":
        return f"  {_short(before)} -> {_short(after)}"
    return ""


def _short(text: str | None) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 1] + "…"
