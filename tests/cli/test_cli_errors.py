"""What a user sees when a command goes wrong: exit codes, one-line messages, help text (real subprocesses)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kgmm import __version__


def kgmm(*args: str, input: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kgmm", *args], capture_output=True, text=True, input=input, cwd=cwd,
                          timeout=300)


@pytest.mark.parametrize("args, message", [
    (("--bogus",), "No such option: --bogus"),
    (("nosuch",), "No such command 'nosuch'"),
    (("neighbors",), "Missing argument"),
    (("neighbors", "x", "--hops", "abc"), "Invalid value for '--hops'"),
    (("ingest", "--bogus", "x"), "No such option: --bogus"),
])
def test_cli_usage_error_prints_usage_and_one_line_rc_2(args, message):
    result = kgmm(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Usage: kgmm")
    assert message in result.stderr


def test_cli_version_prints_the_package_version():
    result = kgmm("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"kgmm {__version__}"


def test_cli_help_keeps_brackets_and_lists_formats():
    ask = kgmm("ask", "--help")
    assert "[brackets]" in " ".join(ask.stdout.split())
    ingest = " ".join(kgmm("ingest", "--help").stdout.split())
    for fmt in ("text", "jsonl", "csv", "medpix", "fashion", "flickr8k"):
        assert fmt in ingest.split("--format", 1)[1].split("--text-column")[0]
