"""The package map in README ("Architecture") holds: every import between histosynth's packages points down the
flow data -> snn -> gan -> evaluation -> search -> registry -> export -> serving, so there are no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import histosynth

pytestmark = pytest.mark.unit

SRC = Path(histosynth.__file__).parent
# Lowest first: a package may import only packages listed before it (plus the bare ``histosynth`` package).
LAYERS = ["errors", "defaults", "files", "config", "device", "tracking", "monitoring", "data", "snn", "gan", "evaluation", "search", "registry", "export", "serving", "stages", "cli", "__main__"]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("histosynth.") and not node.level:
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "histosynth":
            found.update(a.name for a in node.names if a.name in LAYERS)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("histosynth."))
    return found


def _package_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue
        pkg = rel.parts[0].removesuffix(".py")
        edges.setdefault(pkg, set()).update(_imports(path) - {pkg})
    return edges


def test_every_package_has_a_layer():
    assert sorted(_package_edges()) == sorted(LAYERS)


def test_imports_only_point_down_the_flow():
    upward = sorted(f"{pkg} -> {dep}" for pkg, deps in _package_edges().items() for dep in deps if LAYERS.index(dep) > LAYERS.index(pkg))
    assert upward == [], "a lower package imports a higher one (move the shared code down, or inject it)"
