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


def _stats(store) -> dict:
    import json

    result = kgmm("stats", "--store", str(store), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def notes_store(tmp_path_factory, samples):
    store = tmp_path_factory.mktemp("cli") / "store"
    result = kgmm("ingest", str(samples / "medical" / "notes"), "--domain", "medical", "--store", str(store))
    assert result.returncode == 0, result.stderr
    return store


def test_cli_cypher_is_read_only_unless_write_and_the_graph_can_be_rebuilt(notes_store, samples, tmp_path):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(notes_store, store)
    before = _stats(store)
    refused = kgmm("cypher", "MATCH (n:Entity) DETACH DELETE n", "--store", str(store))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("error: refused: the Cypher query writes") and "--write" in refused.stderr
    assert _stats(store) == before
    assert kgmm("cypher", "MATCH (n:Entity) DETACH DELETE n", "--write", "--store", str(store)).returncode == 0
    assert _stats(store)["entities"] == 0
    notes = str(samples / "medical" / "notes")
    assert kgmm("ingest", notes, "--domain", "medical", "--store", str(store)).returncode == 0
    assert _stats(store)["entities"] == 0  # the sources are known: a plain ingest cannot rebuild them
    repaired = kgmm("repair", "--store", str(store))
    assert repaired.returncode == 0, repaired.stderr
    assert _stats(store) == before


def test_cli_ingest_with_another_domain_warns_and_names_the_fix(notes_store, samples, tmp_path):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(notes_store, store)
    result = kgmm("ingest", str(samples / "medical" / "notes"), "--store", str(store))  # the general pack
    assert result.returncode == 0
    assert "extracted with the 'medical' pack, not 'general'" in result.stderr and "--reextract" in result.stderr


@pytest.mark.parametrize("make_args, message", [
    (lambda d: [str(d / "missing.txt")], "nothing to ingest"),
    (lambda d: [str(d / "empty.txt"), str(d / "binary.csv")], "nothing to ingest"),
    (lambda d: [str(d / "good.txt"), "--format", "bogus"], "unknown format 'bogus'; choose one of: auto, text"),
    (lambda d: [str(d / "good.txt"), "--domain", "nosuch"], "no domain 'nosuch'; available: general, medical"),
])
def test_cli_ingest_that_reads_nothing_exits_2_and_creates_no_store(tmp_path, make_args, message):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "binary.csv").write_bytes(b"\x00\x01" * 500)
    (tmp_path / "good.txt").write_text("Aspirin treats headache.", encoding="utf-8")
    result = kgmm("ingest", *make_args(tmp_path), "--store", str(tmp_path / "store"))
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "store").exists()


def test_cli_search_does_not_echo_a_huge_query(notes_store):
    result = kgmm("search", "zq" * 50_000, "--store", str(notes_store))
    assert result.returncode == 0
    assert "no entity matches 'zqzq" in result.stdout and len(result.stdout) < 400


def test_cli_missing_default_store_names_the_demo_store(tmp_path):
    (tmp_path / "kgmm-demo-store").mkdir()
    import os

    env_free = {k: v for k, v in os.environ.items() if k != "KGMM_STORE"}
    result = subprocess.run([sys.executable, "-m", "kgmm", "stats"], capture_output=True, text=True, cwd=tmp_path,
                            env=env_free, timeout=120)
    assert result.returncode == 2 and "pass --store kgmm-demo-store" in result.stderr


@pytest.mark.slow
def test_cli_ctrl_c_during_ingest_keeps_what_was_committed_and_a_rerun_goes_on(tmp_path):
    import signal
    import time

    from kgmm.store import open_store

    sentence = "Marie Curie worked in Paris with Pierre Curie. "
    (tmp_path / "long.txt").write_text(sentence * 10_000, encoding="utf-8")  # 470k characters: 5 parts
    store = tmp_path / "store"
    process = subprocess.Popen([sys.executable, "-m", "kgmm", "ingest", str(tmp_path / "long.txt"), "--store",
                                str(store), "--batch-size", "1"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    committed = 0
    while committed == 0 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        if (store / "graph.lbdb").exists():
            try:
                with open_store(store, read_only=True) as reader:  # no write lock needed
                    committed = reader.stats().documents
            except Exception:  # the writer may be creating the database
                continue
    assert committed >= 1 and process.poll() is None, "the ingest should commit its first part and still run"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    line = [row for row in stderr.splitlines() if row.startswith("interrupted: committed")]
    assert len(line) == 1 and "run the same command again" in line[0]
    result = kgmm("ingest", str(tmp_path / "long.txt"), "--store", str(store), "--json")
    assert result.returncode == 0, result.stderr
    assert _stats(store)["documents"] == 5
