"""The layering of kgmm/: no module imports a layer above its own (at module or function level), and no
package-level import cycle. ``TYPE_CHECKING`` imports are annotations only and do not count.

Layers, lowest first: the shared base (schema, errors, utils), then sources, domains, extract, store, graphdata,
nn, tasks, app, bench and cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "kgmm"
BASE = {"schema", "errors", "utils", "__init__", "__main__"}
LAYERS = ["sources", "domains", "extract", "store", "graphdata", "nn", "tasks", "app", "bench", "cli"]


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def _type_checking_blocks(tree: ast.Module) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(module: str, tree: ast.Module) -> set[str]:
    """The kgmm modules ``module`` imports when it runs (``kgmm.`` left off)."""
    skipped = _type_checking_blocks(tree)
    targets = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        targets.update(name.removeprefix("kgmm.") for name in names if name.startswith("kgmm."))
    return targets


def _layer(module: str) -> int | None:
    top = module.split(".")[0]
    return None if top in BASE else LAYERS.index(top) if top in LAYERS else None


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {target for target in _imports(name, tree) if target in modules} for name, tree in modules.items()}


def test_every_module_belongs_to_a_layer():
    loose = sorted(name for name in _modules() if name not in BASE and name.split(".")[0] not in LAYERS)
    assert loose == [], f"modules outside the layers: {loose}; move each into the package of its layer"


def test_no_import_runs_upward():
    upward = set()
    for module, targets in _graph().items():
        for target in targets:
            here, there = _layer(module), _layer(target)
            if here is not None and there is not None and there > here:
                upward.add((module, target))
    assert sorted(upward) == [], "imports of a higher layer; hand the object in instead"


def test_no_import_cycle_between_layers_packages():
    """A cycle among the packages of the layers (e.g. store -> graphdata -> store) is an upward import."""
    packages: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        source = module.split(".")[0]
        for target in targets:
            if target.split(".")[0] != source:
                packages.setdefault(source, set()).add(target.split(".")[0])
    seen: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in seen:
            return None
        seen.add(node)
        for nxt in sorted(packages.get(node, ())):
            cycle = visit(nxt, path + [node])
            if cycle:
                return cycle
        return None

    for start in sorted(packages):
        assert visit(start, []) is None
