"""`kgmm bench retrieval` and `kgmm bench graph-memory` on a tiny triples file (no timing asserted)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from kgmm.cli import app

runner = CliRunner()


def _triples(path):
    lines = [f"film{i}|directed_by|director{i % 3}" for i in range(12)]
    lines += [f"film{i}|has_genre|genre{i % 2}" for i in range(12)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bench_retrieval_reports_latency_and_subgraph_sizes(tmp_path):
    triples = _triples(tmp_path / "kb.txt")
    result = runner.invoke(app, ["bench", "retrieval", "--triples", str(triples), "--nodes", "5", "--repeats", "20", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["num_nodes"] == 12 + 3 + 2 and report["num_edges"] == 24
    timings = report["all"]
    assert 0 < timings["p50_ms"] <= timings["p95_ms"] <= timings["max_ms"] < 5_000
    assert 1 <= timings["mean_nodes"] <= 5 and timings["mean_candidates"] >= timings["mean_nodes"]


def test_bench_graph_memory_reports_resident_memory(tmp_path):
    triples = _triples(tmp_path / "kb.txt")
    result = runner.invoke(app, ["bench", "graph-memory", "--triples", str(triples), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert any(key.endswith("mb") for key in report)
