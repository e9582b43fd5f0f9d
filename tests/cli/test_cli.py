"""The command line: every result command's --json, clear errors, cheap start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from kgmm.cli import app

runner = CliRunner()


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory, samples):
    store = tmp_path_factory.mktemp("demo") / "store"
    result = runner.invoke(app, ["demo", "--store", str(store), "--data", str(samples), "--json"])
    return store, _json(result)


def test_cli_demo_reports_both_domains_with_sources(demo_store):
    _, result = demo_store
    assert set(result["ingest"]) == {"medical", "retail"}
    assert result["stats"]["images"] >= 7 and result["stats"]["documents"] >= 12
    assert result["neighbourhoods"], "the demo shows at least one neighbourhood"
    facts = [r for n in result["neighbourhoods"] for r in n["relations"]]
    assert facts and all(r["evidence"] and r["evidence"][0]["source"].get("title") is not None for r in facts)


def test_cli_demo_twice_adds_nothing(demo_store, samples):
    store, first = demo_store
    again = _json(runner.invoke(app, ["demo", "--store", str(store), "--data", str(samples), "--json"]))
    assert all(report["sources_new"] == 0 for report in again["ingest"].values())
    assert again["stats"] == first["stats"]


def test_cli_stats_json(demo_store):
    store, first = demo_store
    stats = _json(runner.invoke(app, ["stats", "--store", str(store), "--json"]))
    assert stats["entities"] == first["stats"]["entities"]
    assert sum(stats["relations_by_type"].values()) == stats["relations"]


def test_cli_search_tolerates_case_and_typos(demo_store):
    store, _ = demo_store
    result = _json(runner.invoke(app, ["search", "INFLUENZZA", "--store", str(store), "--json"]))
    assert result["results"][0]["name"].lower() == "influenza"
    assert result["results"][0]["mentions"][0]["source"]["kind"] in ("document", "image")


def test_cli_neighbors_shows_facts_with_sentences(demo_store):
    store, _ = demo_store
    result = _json(runner.invoke(app, ["neighbors", "influenza", "--store", str(store), "--json"]))
    treats = [r for r in result["relations"] if r["type"] == "TREATS" and r["tail_name"].lower() == "influenza"]
    assert any(r["head_name"].lower() == "oseltamivir" for r in treats)
    assert all("influenza" in r["evidence"][0]["sentence"].lower() for r in treats)


def test_cli_path_between_two_entities(demo_store):
    store, _ = demo_store
    result = _json(runner.invoke(app, ["path", "oseltamivir", "influenza", "--store", str(store), "--json"]))
    assert result["found"] and len(result["relations"]) >= 1


def test_cli_cypher_with_parameter(demo_store):
    store, _ = demo_store
    result = _json(
        runner.invoke(
            app,
            ["cypher", "MATCH (e:Entity) WHERE e.type = $t RETURN count(*) AS n", "-p", "t=Drug", "--store", str(store), "--json"],
        )
    )
    assert result["rows"][0]["n"] >= 3


@pytest.mark.parametrize("fmt, suffix", [("graphml", "graphml"), ("networkx", "pkl"), ("pyg", "pt")])
def test_cli_export_formats(demo_store, tmp_path, fmt, suffix):
    store, first = demo_store
    out = tmp_path / f"graph.{suffix}"
    result = _json(runner.invoke(app, ["export", "--format", fmt, "--out", str(out), "--store", str(store), "--json"]))
    assert out.stat().st_size > 0
    assert result["nodes"] == first["stats"]["entities"]
    assert result["edges"] == first["stats"]["relations"]


def test_cli_unknown_domain_names_the_choices(tmp_path, samples):
    result = subprocess.run(
        [sys.executable, "-m", "kgmm", "ingest", str(samples / "medical" / "notes"), "--domain", "medicl", "--store", str(tmp_path / "s")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "no domain 'medicl'; available: general, medical, retail" in result.stderr


def test_cli_missing_store_says_how_to_build_one(tmp_path):
    result = runner.invoke(app, ["stats", "--store", str(tmp_path / "nowhere")])
    assert result.exit_code != 0
    assert "kgmm ingest" in str(result.exception)


def test_import_kgmm_loads_no_heavy_library():
    code = (
        "import sys, kgmm, kgmm.cli; "
        "heavy = {'torch', 'spacy', 'ladybug', 'transformers', 'neo4j', 'torch_geometric', 'pandas'}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
