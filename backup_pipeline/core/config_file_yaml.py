"""The databases file (BACKUP_CONFIG_FILE) as YAML: every mapping and list remembers the line of each of its
values, so a problem found later is reported with its line.

The file is read with limits, since every command and every code-location load reads it: at most
MAX_FILE_BYTES, and no YAML anchors or aliases (`&name`, `*name`), which no field of the file needs and which
let a few hundred bytes expand into gigabytes (an "alias bomb"); the first one found is refused with its line
before anything is built from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from backup_pipeline.core.errors import ConfigurationError

SEE_EXAMPLE = "(see deploy/README.md for an example)"
# A file listing a thousand databases is a few hundred KB; anything larger is a mistake (or an attack).
MAX_FILE_BYTES = 1024 * 1024


class MarkedMapping(dict):
    """A YAML mapping that remembers the line of each key and of each value."""

    def __init__(self, line: int):
        super().__init__()
        self.line, self.key_lines, self.value_lines = line, {}, {}


class MarkedList(list):
    def __init__(self, line: int):
        super().__init__()
        self.line, self.item_lines = line, []


class _AliasRefused(yaml.MarkedYAMLError):
    """An anchor or alias in the databases file, refused where the parser meets it."""


# libyaml's parser when PyYAML was built with it: a thousand entries compose in a quarter of the time.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _refuse_anchors(text: str) -> None:
    """Refuse anchors and aliases before any node is built: an alias bomb costs nothing but its own bytes."""
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = f"alias '*{event.anchor}'" if isinstance(event, yaml.AliasEvent) else f"anchor '&{event.anchor}'"
            raise _AliasRefused(
                problem=f"YAML {kind} is not allowed here: write each value out in full (anchors and aliases "
                "are refused, so a small file cannot expand into a huge one)",
                problem_mark=event.start_mark,
            )


class _MarkedLoader(_BaseLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self.problems: list[tuple[int, str]] = []

    def construct_marked_mapping(self, node: yaml.MappingNode):
        data = MarkedMapping(node.start_mark.line + 1)
        yield data
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            if not isinstance(key, str):
                self.problems.append((line, "field names must be plain words such as retention_days"))
            elif key in data:
                # A repeated field is a problem, not a silent override.
                self.problems.append((line, f"'{key}' is given twice (first on line {data.key_lines[key]})"))
            else:
                data[key] = self.construct_object(value_node, deep=True)
                data.key_lines[key], data.value_lines[key] = line, value_node.start_mark.line + 1

    def construct_marked_sequence(self, node: yaml.SequenceNode):
        data = MarkedList(node.start_mark.line + 1)
        yield data
        data.extend(self.construct_object(item, deep=True) for item in node.value)
        data.item_lines = [item.start_mark.line + 1 for item in node.value]


_MarkedLoader.add_constructor("tag:yaml.org,2002:map", _MarkedLoader.construct_marked_mapping)
_MarkedLoader.add_constructor("tag:yaml.org,2002:seq", _MarkedLoader.construct_marked_sequence)


# The last file read, by path, modification time and size: every load of the settings reads the file for its
# databases and again for its restore targets, and parsing a thousand entries costs a quarter of a second.
_LAST_READ: dict[tuple, tuple[Any, list[tuple[int, str]]]] = {}


def read_marked(path: Path) -> tuple[Any, list[tuple[int, str]]]:
    """The file's contents, and the problems found while reading it (repeated fields)."""
    try:
        stat = os.stat(path)
        key = (str(path), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = None  # reported by _parse
    if key is None or key not in _LAST_READ:
        parsed = _parse(path)
        _LAST_READ.clear()
        if key is not None:
            _LAST_READ[key] = parsed
    else:
        parsed = _LAST_READ[key]
    root, problems = parsed
    return root, list(problems)  # the caller adds its own problems to the list


def _parse(path: Path) -> tuple[Any, list[tuple[int, str]]]:
    try:
        text = _read_limited(path)
    except FileNotFoundError:
        raise ConfigurationError(
            f"BACKUP_CONFIG_FILE points at {path}, which does not exist: create it (see deploy/README.md) "
            "or unset BACKUP_CONFIG_FILE to back up DATABASE_URL alone"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read BACKUP_CONFIG_FILE {path}: {exc}") from None
    loader = _MarkedLoader(text)
    try:
        _refuse_anchors(text)
        root = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigurationError(f"{path}{line}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if root is None:
        raise ConfigurationError(f"{path} is empty: the file must be a mapping with a 'databases:' list {SEE_EXAMPLE}")
    return root, loader.problems


def _read_limited(path: Path) -> str:
    """The file's text, refused unread past MAX_FILE_BYTES."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigurationError(
            f"BACKUP_CONFIG_FILE {path} is larger than {MAX_FILE_BYTES // 1024} KB: a databases file is a few KB; "
            "check that it points at the right file"
        )
    return data.decode("utf-8")


def line_of(root: MarkedMapping, loc: tuple, at_key: bool = False) -> int:
    """The line of the value (or key) at pydantic location `loc`; the nearest enclosing one if it is missing."""
    node, line = root, root.line
    for depth, part in enumerate(loc, start=1):
        if isinstance(node, MarkedMapping) and part in node:
            line = node.key_lines[part] if at_key and depth == len(loc) else node.value_lines[part]
        elif isinstance(node, MarkedList) and isinstance(part, int) and part < len(node):
            line = node.item_lines[part]
        else:
            break
        node = node[part]
    return line
