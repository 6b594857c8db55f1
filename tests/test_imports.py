"""Dependency direction: types/geometry at the bottom, stages beside each other, the
composition root on top, and no import circles.

Walks every module's import statements (no import is executed, function-level imports
included) so the layering in docs/ARCHITECTURE.md cannot drift. Every module of the
package must belong to a layer: a new top-level module fails here until it is placed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

BOTTOM = {"pipeline", "pipeline.types", "pipeline.geometry", "pipeline.calibration",
          "pipeline.closing", "pipeline.int8", "pipeline.registry",
          "pipeline.precision"}
STAGES = {"sources", "detection", "reid", "tracking", "association", "export", "evaluation"}
# Top-level modules above the stages, by rank: a module imports only lower ranks
# (stages rank 1, the bottom 0). runtime and config know no stage: the components
# check their own options, and the loop's housekeeping takes what it is given.
# The two executors sit side by side above the camera worker (executor) and beside the
# assembly: neither imports it, and the assembly imports neither Ray module.
# footage_crops (`mtmc reid crops`) runs the sources and the detector for re-id training.
TOP = {"pipeline.runtime": 1, "pipeline.config": 1, "pipeline.executor": 2,
       "pipeline.search": 2, "pipeline.footage_crops": 2, "pipeline.review": 3,
       "pipeline.assembly": 3, "pipeline.ray_worker": 3, "pipeline.ray_executor": 4,
       "pipeline.runner": 6, "pipeline.cli": 7}


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, package: str = "pipeline") -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # "from pipeline.x import y" may name a submodule y
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == package}


def _modules(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = {_module_name(p, package): p for p in package.rglob("*.py")}
    return {name: {i for i in _imports(path, package.name) if i in modules and i != name}
            for name, path in modules.items()}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _rank(module: str) -> int | None:
    if module in BOTTOM:
        return 0
    if _stage(module) is not None:
        return 1
    return TOP.get(module)


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in _modules() if _rank(m) is None)
    assert not unplaced, f"modules in no layer (add them to TOP or a stage): {unplaced}"
    assert {"pipeline.runtime", "pipeline.runner", "pipeline.config"} <= set(_modules())


def test_layering():
    problems = []
    for module, imports in _modules().items():
        rank = _rank(module)
        for imported in imports:
            other = _rank(imported)
            if rank is None or other is None:
                continue  # reported by test_every_module_has_a_layer
            stage, other_stage = _stage(module), _stage(imported)
            if stage is not None and stage == other_stage:
                continue
            if other >= rank and imported not in BOTTOM:
                problems.append(f"{module} (rank {rank}) imports {imported} (rank {other})")
            if module in BOTTOM and imported not in BOTTOM:
                problems.append(f"{module} (bottom layer) imports {imported}")
    assert not problems, "\n".join(sorted(problems))


@pytest.mark.parametrize("package", ["pipeline", "benchmarks"])
def test_no_import_circles(package):
    """Neither the package nor the benchmarks (whose shared helpers live in
    ``benchmarks/lib``) import in a circle, function-level imports included."""
    graph = _modules(PACKAGE.parent / package)
    # a package's __init__ re-exports its modules: only edges between modules count
    edges = {m: {i for i in imports if not (m.startswith(i + ".") or i.startswith(m + "."))}
             for m, imports in graph.items()}
    circles = set()
    for start in edges:
        stack = [(start, (start,))]
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    circles.add(" -> ".join(min(path[i:] + path[:i] for i in range(len(path)))
                                            + (min(path),)))
                elif nxt not in path and len(path) < 6:
                    stack.append((nxt, (*path, nxt)))
    assert not circles, "import circles:\n" + "\n".join(sorted(circles))


def test_tracking_never_imports_torch():
    for path in (PACKAGE / "tracking").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(name.split(".")[0] == "torch" for name in names), path
