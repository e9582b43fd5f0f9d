"""Every install hint names something that exists: the extra of a MissingDependencyError is one pyproject
defines, and a base-install package is one of pyproject's dependencies."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def _hints() -> list[tuple[str, str, str | None]]:
    found = []
    for path in (ROOT / "kgmm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "MissingDependencyError":
                values = [arg.value for arg in node.args if isinstance(arg, ast.Constant)]
                found.append((str(path.relative_to(ROOT)), values[0], values[1] if len(values) > 1 else None))
    return found


def test_install_hints_name_real_extras_and_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    base = {re.split(r"[<>=\[ ;]", requirement)[0].lower() for requirement in project["dependencies"]}
    hints = _hints()
    assert len(hints) >= 5
    for where, package, extra in hints:
        if extra is None:
            assert package.lower() in base, f"{where}: {package} is not a dependency of kgmm"
        else:
            assert extra in extras, f"{where}: there is no extra kgmm[{extra}]"
            assert any(requirement.lower().startswith(package.lower()) for requirement in extras[extra]), where


def test_the_message_says_how_to_install():
    from kgmm.errors import MissingDependencyError

    assert str(MissingDependencyError("neo4j-viz", "notebooks")).endswith('pip install "kgmm[notebooks]"')
    assert str(MissingDependencyError("neo4j")) == "neo4j is not installed; install it with: pip install neo4j (kgmm depends on it)"
