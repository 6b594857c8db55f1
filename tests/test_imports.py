"""Dependency direction: types/geometry at the bottom, stages beside each other, runner on top.

Walks every module's import statements (no import is executed) so the layering in
DESIGN.md cannot drift.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

BOTTOM = {"pipeline.types", "pipeline.geometry"}
STAGES = {"sources", "detection", "reid", "tracking", "association", "export", "evaluation"}
TOP = {"pipeline.runner", "pipeline.cli", "pipeline.config"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] == "pipeline"}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_layering():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        for imported in _imports(path):
            if module in BOTTOM and imported != "pipeline" and imported not in BOTTOM:
                problems.append(f"{module} (bottom layer) imports {imported}")
            stage = _stage(module)
            if stage is None:
                continue
            if any(imported == top or imported.startswith(top + ".") for top in TOP):
                problems.append(f"{module} imports the top layer {imported}")
            other = _stage(imported)
            if other is not None and other != stage:
                problems.append(f"stage {stage} ({module}) imports stage {other} ({imported})")
    assert not problems, "\n".join(problems)


def test_tracking_never_imports_torch():
    for path in (PACKAGE / "tracking").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(name.split(".")[0] == "torch" for name in names), path
