"""The product uses Dagster's public API only: no module under backup_pipeline/ imports from `dagster._*`.

Private modules move between Dagster releases without notice; the upper bound in pyproject.toml admits every
1.x release, so a private import would break a fresh install some day. Imports inside functions count too.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "backup_pipeline"


def _private(module: str | None) -> bool:
    top, _, rest = (module or "").partition(".")
    return top.startswith("dagster") and rest.startswith("_")


def private_dagster_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) for every import of a private Dagster module (dagster._core, dagster_aws._..., ...)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if _private(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if _private(node.module):
                found.append((node.lineno, node.module))
            elif node.module in ("dagster", "dagster_graphql", "dagster_aws", "dagster_postgres"):
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if a.name.startswith("_")]
    return found


def test_the_check_finds_private_imports_wherever_they_are():
    source = (
        "import dagster as dg\n"
        "from dagster import Definitions\n"
        "def f():\n"
        "    from dagster._core.storage import x\n"
        "    import dagster._daemon.controller\n"
        "class C:\n"
        "    def g(self):\n"
        "        from dagster import _check\n"
        "        from dagster_aws._utils import y\n"
    )
    assert private_dagster_imports(source) == [
        (4, "dagster._core.storage"),
        (5, "dagster._daemon.controller"),
        (8, "dagster._check"),
        (9, "dagster_aws._utils"),
    ]


def test_no_module_of_the_product_imports_private_dagster():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20  # the walk really sees the package
    offenders = {
        f"{path.relative_to(PACKAGE.parent)}:{line}": module
        for path in modules
        for line, module in private_dagster_imports(path.read_text())
    }
    assert offenders == {}, "private Dagster imports (use the public API, `import dagster as dg`)"
