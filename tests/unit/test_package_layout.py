"""The three wings: core/ never imports Dagster, imports flow core <- defs <- cli, and there are no circles."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.unit.import_graph import PACKAGE_ROOT, cycles, imports_of, internal_graph, package_modules

WINGS = ("core", "defs", "cli")
# What each wing may import of the package besides itself (the package root only carries __version__).
MAY_IMPORT = {"core": {""}, "defs": {"", "core"}, "cli": {"", "core", "defs"}}


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else ""


def test_core_never_imports_dagster_in_its_source():
    offenders = {
        name: sorted(i for i in imports_of(path) if i.split(".")[0].startswith("dagster"))
        for name, path in package_modules().items()
        if wing(name) == "core"
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_importing_all_of_core_loads_no_dagster():
    core = [name for name in package_modules() if wing(name) == "core"]
    code = f"import sys\nfor m in {core!r}: __import__(m)\nprint(sorted(m for m in sys.modules if m.startswith('dagster')))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PACKAGE_ROOT.parent, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_imports_flow_from_cli_to_defs_to_core_never_back():
    backwards = [
        f"{module} imports {target}"
        for module, targets in internal_graph().items()
        if wing(module) in MAY_IMPORT
        for target in sorted(targets)
        if wing(target) != wing(module) and wing(target) not in MAY_IMPORT[wing(module)]
    ]
    assert backwards == []


@pytest.mark.parametrize("wing_name", WINGS)
def test_no_import_circles(wing_name):
    # With imports flowing one way between wings (above), a circle could only lie within one wing.
    graph = internal_graph()
    within = {m: {t for t in targets if wing(t) == wing_name} for m, targets in graph.items() if wing(m) == wing_name}
    assert cycles(within) == []


def test_the_circle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
