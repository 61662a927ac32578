"""README's configuration table, generated from the declarations (core/settings/).

    python -m backup_pipeline.core.settings.readme_table           # rewrite the table in README.md
    python -m backup_pipeline.core.settings.readme_table --check   # exit 1 when README's table is not current

The table stands between two markers in README.md; everything else in README is left as it is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from backup_pipeline.core.settings import SETTINGS
from backup_pipeline.core.settings.declaration import IN_ENTRIES, REQUIRED_IN_ENTRIES, Setting

README = Path(__file__).resolve().parents[3] / "README.md"
COMMAND = "python -m backup_pipeline.core.settings.readme_table"
BEGIN = f"<!-- settings table: generated from backup_pipeline/core/settings/ by `{COMMAND}`; edit those, not this -->"
END = "<!-- end of the settings table -->"


def render(settings: Iterable[Setting] = SETTINGS) -> str:
    """The Markdown table, one row per setting."""
    rows = ["| variable | databases file | meaning | default |", "|---|---|---|---|"]
    for setting in settings:
        cells = (_variable(setting), _file_field(setting), _meaning(setting), _default(setting))
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


def _variable(setting: Setting) -> str:
    if not setting.env:
        return "-"
    aliases = "".join(f" (or `{alias}`)" for alias in setting.aliases)
    return f"`{setting.env}`{aliases}"


def _file_field(setting: Setting) -> str:
    if setting.file_field is None:
        return "-"
    where = {IN_ENTRIES: " (entries only)", REQUIRED_IN_ENTRIES: " (each entry, required)"}
    return f"`{setting.file_field}`{where.get(setting.file_scope, '')}"


def _meaning(setting: Setting) -> str:
    if setting.bounds is None:
        return setting.help
    low, high = (_number(bound) for bound in setting.bounds)
    return f"{setting.help} ({low} to {high})"


def _default(setting: Setting) -> str:
    if setting.shown_default is not None:
        return setting.shown_default
    value = setting.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return _number(value) if isinstance(value, int | float) else f"`{value}`"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def with_table(readme: str, settings: Iterable[Setting] = SETTINGS) -> str:
    """`readme` with the generated table between the markers."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README has no settings table markers: put {BEGIN!r} and {END!r} where it goes")
    before, _, rest = readme.partition(BEGIN)
    _, _, after = rest.partition(END)
    return f"{before}{BEGIN}\n{render(settings)}\n{END}{after}"


def stale(readme: str, settings: Iterable[Setting] = SETTINGS) -> str | None:
    """Why README's table is not the one the declarations give; None when it is."""
    if with_table(readme, settings) != readme:
        return f"README.md's configuration table differs from the declarations in core/settings/: run `{COMMAND}`"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description="Write README's configuration table.")
    parser.add_argument("--check", action="store_true", help="only say whether the table is current (exit 1 if not)")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    if args.check:
        problem = stale(text)
        print(problem or f"{args.readme}: the configuration table is current")
        return 1 if problem else 0
    args.readme.write_text(with_table(text), encoding="utf-8")
    print(f"{args.readme}: configuration table written ({len(SETTINGS)} settings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
