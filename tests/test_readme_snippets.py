"""Every README snippet runs as written: the Python blocks are executed in order (in a fresh interpreter each, in a
folder with the repository's data/), and every `kgmm` command line of the bash blocks is parsed by the real command
line (its command and options exist, its values parse); those that need only the samples are run, and must succeed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
# Commands quick enough to run on the samples; others (training, benchmarks, shared data sets, models, servers)
# are parsed only.
RUNNABLE = {"stats", "search", "neighbors", "path", "cypher", "export", "repair", "--version"}


def _blocks(language: str) -> list[str]:
    body = README.split("## Quickstart", 1)[1].split("\n## ", 1)[1]  # past the quickstart's two install lines
    return re.findall(rf"```{language}\n(.*?)```", body, flags=re.S)


def _kgmm_lines() -> list[list[str]]:
    lines = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = [word.replace("\\$", "$") for word in shlex.split(line, comments=True)]
            if words and words[0] == "kgmm":
                lines.append(words[1:])
    return lines


KGMM_LINES = _kgmm_lines()


def _parse(args: list[str]) -> None:
    """Parse ``kgmm ARGS`` as the CLI would, without running it (raises the CLI's usage error)."""
    import typer.main

    from kgmm.cli import app

    command = typer.main.get_command(app)
    context = command.make_context("kgmm", list(args))
    with context:
        while hasattr(command, "commands"):  # a command group: resolve the subcommand
            protected = getattr(context, "_protected_args", None) or getattr(context, "protected_args", None) or []
            rest = [*protected, *context.args]
            if not rest:
                return
            name, command, rest = command.resolve_command(context, rest)
            context = command.make_context(name, rest, parent=context)


def test_readme_has_the_snippets_this_test_reads():
    assert len(KGMM_LINES) >= 40 and len(_blocks("python")) >= 4


@pytest.mark.parametrize("args", KGMM_LINES, ids=[" ".join(a)[:60] for a in KGMM_LINES])
def test_readme_kgmm_command_parses(args):
    _parse(args)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder like a clone's: data/ (the samples), sample photos named as README names them."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "data", folder / "data")
    images = sorted((REPO / "data" / "medical" / "images").iterdir())
    shutil.copy(images[0], folder / "photo1.jpg")  # Pillow reads the content, whatever the suffix
    shutil.copy(images[1], folder / "photo2.png")
    return folder


def _env(workspace) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "KGMM_STORE"}
    env["KGMM_CACHE_DIR"] = str(workspace / "cache")
    return env


@pytest.mark.slow
def test_readme_python_snippets_and_sample_commands_run(workspace):
    for block in _blocks("python"):
        result = subprocess.run([sys.executable, "-c", block], cwd=workspace, env=_env(workspace),
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"README snippet failed:\n{block}\n{result.stderr[-3000:]}"
        assert "nothing to draw" not in result.stderr, f"README snippet draws an empty graph:\n{block}"
    ran = 0
    for args in KGMM_LINES:
        if args[0] not in RUNNABLE or any("models/" in a or "shared" in a or "://" in a or a == "--image" for a in args):
            continue
        if "--store" in args and args[args.index("--store") + 1] != "my-graph":
            continue
        result = subprocess.run([sys.executable, "-m", "kgmm", *args], cwd=workspace, env=_env(workspace),
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"kgmm {' '.join(args)} failed:\n{result.stderr[-2000:]}"
        ran += 1
    assert ran >= 8
