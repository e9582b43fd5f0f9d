"""kgmm.app.viz: the graph view (neo4j-viz) of a store, a neighbourhood and a QA answer, and its offline HTML."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kgmm.errors import ValidationError
from kgmm.store import open_store

sys.path.insert(0, str(Path(__file__).parent / "store"))
from tiny_graph import DIABETES, METFORMIN, THIRST, write_batch  # noqa: E402


@pytest.fixture
def store(tmp_path):
    graph_store = open_store(tmp_path / "store")
    write_batch(graph_store)
    yield graph_store
    graph_store.close()


def _data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="neo4j-viz-data">(.*?)</script>', html, re.S)
    assert match, "no graph data in the page"
    return json.loads(match.group(1))


def test_view_of_a_neighbourhood_colours_types_and_lists_sources(store):
    from kgmm.app.viz import HIGHLIGHT, type_colour, visualization

    view = visualization(store.neighbors(DIABETES, hops=1), store=store)
    nodes = {node.id: node for node in view.nodes}
    assert set(nodes) >= {DIABETES, METFORMIN, THIRST}
    assert nodes[DIABETES].caption == "Diabetes"
    assert str(nodes[METFORMIN].color.as_hex()).lower() == type_colour("Drug").lower()
    assert nodes[DIABETES].properties["aliases"] == "diabetes mellitus"
    assert "a.txt" in nodes[DIABETES].properties["sources"] or "b.txt" in nodes[DIABETES].properties["sources"]
    captions = {(r.source, r.caption, r.target) for r in view.relationships}
    assert (METFORMIN, "TREATS", DIABETES) in captions
    highlighted = visualization(store.neighbors(DIABETES, hops=1), highlight=[THIRST])
    colour = {node.id: str(node.color.as_hex()).lower() for node in highlighted.nodes}
    assert colour[THIRST] == HIGHLIGHT.lower() and colour[DIABETES] != HIGHLIGHT.lower()


def test_qa_answer_path_is_highlighted():
    from kgmm.app.viz import HIGHLIGHT, visualization

    result = {"answers": [{"entity": "b", "name": "B", "score": 0.9, "path": [
        {"head": "a", "head_name": "A", "relation": "R", "tail": "b", "tail_name": "B", "sources": ["doc:1"],
         "sentences": ["A r B."]}]}]}
    view = visualization(result)
    assert {node.id for node in view.nodes} == {"a", "b"}
    (edge,) = view.relationships
    assert edge.caption == "R" and str(edge.color.as_hex()).lower() == HIGHLIGHT.lower()
    assert edge.properties["sentence"] == "A r B."


def test_standalone_html_is_offline_and_holds_the_graph(store, tmp_path):
    from kgmm.app.viz import write_html

    written = write_html(store, tmp_path / "graph.html")
    html = (tmp_path / "graph.html").read_text(encoding="utf-8")
    assert written["nodes"] == store.stats().entities and written["edges"] == store.stats().relations
    data = _data(html)
    assert {node["id"] for node in data["nodes"]} >= {DIABETES, METFORMIN}
    # Nothing is fetched at run time: no script or stylesheet from the network.
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', html)


def test_hostile_names_stay_data(tmp_path):
    from kgmm.app.viz import write_html
    from kgmm.schema import Entity, Subgraph

    name = '</script><script>alert("x")</script> `drop` \'quote\''
    write_html(Subgraph([Entity("x:y:z", name, "Thing", "x")], []), tmp_path / "hostile.html")
    html = (tmp_path / "hostile.html").read_text(encoding="utf-8")
    assert '<script>alert("x")</script>' not in html
    assert _data(html)["nodes"][0]["caption"] == name


def test_bad_inputs(store):
    from kgmm.app.viz import as_subgraph

    with pytest.raises(ValidationError, match="cannot draw a str"):
        as_subgraph("diabetes")
    with pytest.raises(ValidationError, match="more than a view draws"):
        as_subgraph(store, limit=2)


def test_cli_export_html(store, tmp_path):
    from kgmm.cli import app

    location = store.path if hasattr(store, "path") else tmp_path / "store"
    store.close()
    runner = CliRunner()
    out = tmp_path / "view.html"
    result = runner.invoke(app, ["export", "--format", "html", "--out", str(out), "--store", str(location),
                                 "--around", "metformin", "--hops", "1", "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.output.strip().splitlines()[-1])
    assert written["format"] == "html" and 2 <= written["nodes"] < 6
    assert {node["id"] for node in _data(out.read_text(encoding="utf-8"))["nodes"]} >= {METFORMIN, DIABETES}


def test_cypher_rows_as_table_and_graph(store):
    from kgmm.app.viz import cypher

    result = cypher(store, "MATCH (a:Entity)-[r:TREATS]->(b:Entity) RETURN a, r, b, r.confidence AS confidence")
    table = result.table()
    assert len(result) == 2 and set(table["a"]) == {"Metformin", "Insulin"} and set(table["r"]) == {"TREATS"}
    assert "<table" in result._repr_html_()
    drawn = result.subgraph()
    assert {entity.id for entity in drawn.entities} == {METFORMIN, DIABETES, "medical:drug:insulin"}
    assert len(drawn.relations) == 2
    with pytest.raises(ValidationError, match="empty"):
        cypher(store, "  ")


def test_explore_widget_adds_a_nodes_neighbours(store):
    from kgmm.app.viz import explore

    widget = explore(store.neighbors(METFORMIN, hops=1), store=store)
    assert {str(node.id) for node in widget.nodes} == {METFORMIN, DIABETES}
    widget.kgmm_expand(DIABETES)
    ids = {str(node.id) for node in widget.nodes}
    assert ids >= {METFORMIN, DIABETES, THIRST, "medical:drug:insulin"}
    relationships = [str(r.id) for r in widget.relationships]
    assert len(relationships) == len(set(relationships)) == 3  # the Metformin edge is not added twice
    widget.kgmm_expand(DIABETES)
    assert len(widget.nodes) == len(ids)
