"""A real crash: kill -9 an ingest mid-run, run it again, and get the graph a clean run builds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from kgmm.errors import StoreError
from kgmm.store import open_store

pytestmark = pytest.mark.slow

PEOPLE = ["Marie Curie", "Albert Einstein", "Ada Lovelace", "Alan Turing", "Grace Hopper", "Niels Bohr"]
PLACES = ["Paris", "Berlin", "London", "Princeton", "Warsaw", "Copenhagen"]
ORGS = ["Acme Corp", "Globex", "Initech", "Umbrella Labs", "Stark Industries", "Wayne Enterprises"]


def _corpus(path, count: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            person, place, org = PEOPLE[i % 6], PLACES[(i // 6) % 6], ORGS[(i // 36) % 6]
            text = f"{person} works for {org} in {place}. Report number {i} was filed by {person} in {place}."
            handle.write(json.dumps({"id": i, "text": text}) + "\n")


def _ingest_command(corpus, store) -> list[str]:
    return [sys.executable, "-m", "kgmm", "ingest", str(corpus), "--store", str(store), "--batch-size", "40", "--json"]


def _snapshot(store_dir) -> tuple:
    with open_store(store_dir) as store:
        stats = store.stats()
        relations = sorted((r.head, r.type, r.tail, tuple(sorted(r.sources))) for r in store.iter_relations())
    return stats, relations


def _stored_documents(store_dir) -> int:
    try:
        with open_store(store_dir, read_only=True) as store:
            return store.stats().documents
    except StoreError:  # the writer may hold the store at that instant
        return 0


def test_ingest_killed_mid_run_then_rerun_matches_clean_run(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    _corpus(corpus, 1200)
    subprocess.run(_ingest_command(corpus, tmp_path / "clean"), check=True, capture_output=True)

    crashed = tmp_path / "crashed"
    process = subprocess.Popen(_ingest_command(corpus, crashed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    # Kill once a few batches are stored, well before the run can finish.
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        if (crashed / "graph.lbdb").exists() and _stored_documents(crashed) >= 80:
            break
    assert process.poll() is None, "the ingest finished before it could be killed; use a larger corpus"
    process.send_signal(signal.SIGKILL)
    process.wait()

    partial, _ = _snapshot(crashed)
    assert 0 < partial.documents < 1200
    subprocess.run(_ingest_command(corpus, crashed), check=True, capture_output=True)
    assert _snapshot(crashed) == _snapshot(tmp_path / "clean")
