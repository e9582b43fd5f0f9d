"""The command line against a Neo4j (Bolt) store: the same commands, --user/--database, and copying a
graph between the embedded store and the server with `kgmm export --to/--from`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from kgmm.cli import app
from kgmm.store import open_store

pytestmark = pytest.mark.bolt
runner = CliRunner()


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def bolt_env(bolt_server, bolt_store_factory):
    bolt_store_factory(1)  # empties database kg_b
    bolt_store_factory(2)  # and kg_c
    return {"NEO4J_PASSWORD": bolt_server.password, "NEO4J_USER": "", "NEO4J_DATABASE": ""}


def test_ingest_and_query_a_bolt_store(bolt_server, bolt_env, samples):
    store = ["--store", bolt_server.uri, "--user", bolt_server.user, "--database", "kg_b"]
    ingested = _json(runner.invoke(app, ["ingest", str(samples / "medical"), "--domain", "medical", *store, "--json"], env=bolt_env))
    assert ingested["store"] == bolt_server.uri and ingested["sources_new"] > 0
    stats = _json(runner.invoke(app, ["stats", *store, "--json"], env=bolt_env))
    assert stats["entities"] > 0 and stats["relations"] > 0 and stats["documents"] > 0
    again = _json(runner.invoke(app, ["ingest", str(samples / "medical"), "--domain", "medical", *store, "--json"], env=bolt_env))
    assert again["sources_new"] == 0
    assert _json(runner.invoke(app, ["stats", *store, "--json"], env=bolt_env)) == stats
    found = _json(runner.invoke(app, ["search", "influenza", *store, "--json"], env=bolt_env))
    assert found["results"]
    rows = _json(runner.invoke(app, ["cypher", "MATCH (e:Entity) RETURN count(e) AS n", *store, "--json"], env=bolt_env))["rows"]
    assert rows == [{"n": stats["entities"]}]


def test_export_copies_embedded_to_bolt_and_back(bolt_server, bolt_env, samples, tmp_path):
    local = tmp_path / "local"
    _json(runner.invoke(app, ["ingest", str(samples / "medical"), "--domain", "medical", "--store", str(local), "--json"]))
    bolt = ["--user", bolt_server.user, "--database", "kg_c"]
    copied = _json(runner.invoke(app, ["export", "--store", str(local), "--to", bolt_server.uri, *bolt, "--json"], env=bolt_env))
    assert copied["target_stats"] == copied["source_stats"] and copied["copied"]["relations"] > 0
    back = tmp_path / "back"
    returned = _json(runner.invoke(app, ["export", "--from", bolt_server.uri, "--store", str(back), *bolt, "--json"], env=bolt_env))
    assert returned["target_stats"] == copied["source_stats"]
    with open_store(local) as original, open_store(back) as copy:
        assert sorted(map(repr, original.iter_relations())) == sorted(map(repr, copy.iter_relations()))
        assert sorted(map(repr, original.iter_entities())) == sorted(map(repr, copy.iter_entities()))
        assert sorted(map(repr, original.iter_sources())) == sorted(map(repr, copy.iter_sources()))
        assert sorted(map(repr, original.iter_mentions())) == sorted(map(repr, copy.iter_mentions()))
    again = _json(runner.invoke(app, ["export", "--store", str(local), "--to", bolt_server.uri, *bolt, "--json"], env=bolt_env))
    assert again["copied"] == {"entities": 0, "relations": 0, "mentions": 0, "sources": 0}


def test_unreachable_server_is_one_line_and_exit_code_2(tmp_path):
    from conftest import load_bolt_server_script

    uri = f"bolt://127.0.0.1:{load_bolt_server_script().free_port()}"
    done = subprocess.run([sys.executable, "-m", "kgmm", "stats", "--store", uri], capture_output=True, text=True,
                          env={**os.environ, "NEO4J_PASSWORD": "x" * 8}, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and uri in lines[0] and "cannot reach" in lines[0]
