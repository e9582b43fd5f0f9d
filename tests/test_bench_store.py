"""``kgmm bench store`` on a tiny triples file: what it loads, what the second load adds, what it times.

The numbers themselves are the benchmark's business; these tests check the counts and the shape of the
report, never a time.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from kgmm.bench.store import bench_store
from kgmm.cli import app
from kgmm.errors import KgmmError
from kgmm.store import open_store

TRIPLES = (
    "Jack Frost|starred_actors|Scott MacDonald\n"
    "Jack Frost|directed_by|Troy Miller\n"
    "Jack Frost|has_genre|Comedy\n"
    "Big Fish|has_genre|Comedy\n"
    "Big Fish|directed_by|Tim Burton\n"
    "Ed Wood|directed_by|Tim Burton\n"
    "Ed Wood|starred_actors|johnny depp\n"
    "Big Fish|has_genre|comedy\n"  # one more spelling: the same entity, the same relation
)


@pytest.fixture
def triples(tmp_path):
    path = tmp_path / "kb.txt"
    path.write_text(TRIPLES, encoding="utf-8")
    return path


def check_report(report: dict) -> None:
    assert report["triples"] == 8
    assert report["entities"] == 8 and report["relations"] == 7
    assert report["first_load"]["new_entities"] == 8 and report["first_load"]["new_relations"] == 7
    second = report["second_load"]
    assert (second["new_entities"], second["new_relations"], second["relations_after"]) == (0, 0, 7)
    assert report["targets"]["second_load_adds_nothing"] is True
    two_hop = report["two_hop"]
    assert two_hop["movies"] == 2 and two_hop["repeats"] == 2
    assert two_hop["statements_per_call"] >= 3  # the seed, at least one level, the relations among them
    assert 0 < two_hop["graphstore_p50_ms"] < 5_000 and 0 < two_hop["raw_p50_ms"] < 5_000
    assert two_hop["ratio"] == pytest.approx(two_hop["graphstore_p50_ms"] / two_hop["raw_p50_ms"], abs=0.002)
    for movie in two_hop["per_movie"]:
        assert movie["movie"] in {"Jack Frost", "Big Fish", "Ed Wood"}
        assert movie["entities"] >= 4 and movie["relations"] >= 3


def test_bench_store_embedded_loads_twice_and_times_two_hops(triples):
    report = bench_store(None, triples=triples, movies=2, repeats=2)

    assert report["store"] == "embedded"
    check_report(report)
    assert "embedded_at_least_200k_per_s" in report["targets"] and "graphrag" not in report


def test_bench_store_keeps_a_store_in_a_new_directory_and_refuses_a_full_one(triples, tmp_path):
    bench_store(tmp_path / "store", triples=triples, movies=1, repeats=1)
    assert (tmp_path / "store" / "graph.lbdb").exists()

    with pytest.raises(KgmmError, match="not a new or empty directory"):
        bench_store(tmp_path / "store", triples=triples)


def test_bench_store_refuses_graphrag_on_an_embedded_store_and_a_missing_file(triples, tmp_path):
    with pytest.raises(KgmmError, match="needs a Bolt store"):
        bench_store(None, triples=triples, compare_graphrag=True)
    with pytest.raises(KgmmError, match="no triples file"):
        bench_store(None, triples=tmp_path / "missing.txt")


def test_bench_store_names_the_install_line_when_neo4j_graphrag_is_missing(triples, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "neo4j_graphrag" else find_spec(name, *args))

    with pytest.raises(KgmmError, match=r'neo4j-graphrag is not installed.*pip install -e "\.\[bench\]"'):
        bench_store("bolt://127.0.0.1:9", triples=triples, compare_graphrag=True)  # refused before connecting


def test_cli_bench_store_prints_one_json_object(triples):
    result = CliRunner().invoke(app, ["bench", "store", "--triples", str(triples), "--movies", "2", "--repeats", "2",
                                      "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["title"] == "store benchmark (embedded, 8 triples)"
    check_report(report)


@pytest.mark.bolt
def test_bench_store_bolt_loads_twice_and_compares_with_graphrag(triples, bolt_server, bolt_store_factory):
    databases = []
    for index in (1, 2):  # the factory empties the database it opens
        store = bolt_store_factory(index)
        databases.append(store.database)
        store.close()
    graphrag = importlib.util.find_spec("neo4j_graphrag") is not None

    report = bench_store(bolt_server.uri, triples=triples, user=bolt_server.user, password=bolt_server.password,
                         database=databases[0], compare_graphrag=graphrag, graphrag_database=databases[1],
                         movies=2, repeats=2)

    assert report["store"] == "bolt"
    check_report(report)
    if graphrag:
        run = report["graphrag"]
        assert run["nodes"] == 8 and run["relationships"] == 7  # its MERGE folds the repeated relation too
        assert run["relationships_per_s"] > 0 and run["ratio_kgmm_over_graphrag"] > 0
        assert run["second_run_duplicated_nodes"] is True and run["second_run_nodes"] == 16
    for database in databases:  # the run empties both databases again
        with open_store(bolt_server.uri, user=bolt_server.user, password=bolt_server.password,
                        database=database) as store:
            assert store.cypher("MATCH (n) RETURN count(n) AS n") == [{"n": 0}]


@pytest.mark.bolt
def test_bench_store_refuses_a_bolt_database_that_is_not_empty(triples, bolt_server, bolt_store_factory):
    from kgmm.schema import Entity

    store = bolt_store_factory(1)
    store.upsert_entities([Entity("general:concept:x", "x", "Concept", "general")])

    with pytest.raises(KgmmError, match="holds 1 nodes"):
        bench_store(bolt_server.uri, triples=triples, user=bolt_server.user, password=bolt_server.password,
                    database=store.database)


def test_bulk_columns_fold_a_batch_exactly_as_the_merge_rules():
    """The columnar path the bulk loads take (records.relation_columns / entity_columns) against the reference
    merge functions, on a random batch full of repeated keys, evidence and spellings."""
    import random

    from kgmm.schema import Entity, Relation
    from kgmm.store import records

    rng = random.Random(1)
    relations = []
    for _ in range(2000):
        sources = [f"s{rng.randint(0, 5)}" for _ in range(rng.randint(0, 3))]
        sentences = [f"x{rng.randint(0, 5)}" for _ in range(len(sources) if rng.random() < 0.7 else rng.randint(0, 3))]
        relations.append(Relation(f"h{rng.randint(0, 40)}", rng.choice("AB"), f"t{rng.randint(0, 40)}", rng.random(),
                                  rng.choice(["e1", "e2"]), sources, sentences))
    expected = records.merge_relations(relations)
    columns = records.relation_columns(relations)
    folded = [column.relation(i) for column in columns.values() for i in range(len(column))]
    assert {relation.key: relation for relation in folded} == expected
    for relation_type, column in columns.items():  # first-seen order within a type
        assert [(column.head[i], column.tail[i]) for i in range(len(column))] == [
            (head, tail) for head, type_, tail in expected if type_ == relation_type]

    entities = [Entity(f"e{n}", rng.choice([f"n{n}", f"N{n}"]), "T", "d",
                       [f"a{rng.randint(0, 4)}" for _ in range(rng.randint(0, 3))],
                       [f"o{rng.randint(0, 3)}" for _ in range(rng.randint(0, 2))])
                for n in (rng.randint(0, 300) for _ in range(2000))]
    batch = records.entity_columns(entities)
    assert {batch.id[i]: batch.entity(i) for i in range(len(batch))} == records.merge_entities(entities)


@pytest.mark.bolt
def test_bench_store_arcadedb_starts_and_stops_its_own_server(triples):
    if importlib.util.find_spec("arcadedb_embedded") is None:
        pytest.skip('needs arcadedb-embedded: pip install -e ".[test]"')
    graphrag = importlib.util.find_spec("neo4j_graphrag") is not None

    report = bench_store("arcadedb", triples=triples, compare_graphrag=graphrag, movies=1, repeats=1)

    assert report["location"].startswith("temporary ArcadeDB server at bolt://127.0.0.1:")
    assert report["warm_up_triples"] == 20_000
    assert report["first_load"]["new_relations"] == 7 and report["second_load"]["new_relations"] == 0
    if graphrag:
        assert report["graphrag"]["database"] == "kg_graphrag" and report["graphrag"]["nodes"] == 8
