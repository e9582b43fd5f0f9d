"""README's quickstart: exactly two command lines, and CI runs the second verbatim."""

from __future__ import annotations

import re
import subprocess

from conftest import REPO


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_quickstart_has_two_self_contained_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = [b.strip() for b in _bash_blocks(quickstart)]
    assert len(blocks) == 2 and all("\n" not in b for b in blocks)
    for command in blocks:
        assert command.startswith("python3 -m venv .venv") and "pip install torch==2.13.0" in command
    assert blocks[0].endswith("kgmm demo")
    assert "pytest" in blocks[1]


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    test_command = _bash_blocks(quickstart)[1].strip()
    extracted = subprocess.run(
        ["awk", "/<!-- test-command -->/{getline; getline; print; exit}", str(REPO / "README.md")],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert extracted == test_command
    assert "awk '/<!-- test-command -->/" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
