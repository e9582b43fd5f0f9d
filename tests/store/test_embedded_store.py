"""The embedded (LadybugDB) store on tiny hand-built graphs."""

from __future__ import annotations

import pytest
from tiny_graph import (
    DIABETES,
    DOC_A,
    DOC_B,
    IMAGE,
    INSULIN,
    METFORMIN,
    THIRST,
    tiny_entities,
    tiny_relations,
    write_batch,
)

from kgmm.errors import StoreError, ValidationError
from kgmm.schema import PROVENANCE_RETRIEVED, Mention, Relation, Source
from kgmm.store import embedded as embedded_module
from kgmm.store import open_store
from kgmm.store.embedded import EmbeddedStore
from kgmm.store.queries import ladybug as queries


@pytest.fixture
def store(tmp_path):
    with EmbeddedStore(tmp_path / "store") as opened:
        yield opened


@pytest.fixture
def graph(store):
    write_batch(store)
    return store


def test_open_store_creates_directory_with_database(tmp_path):
    location = tmp_path / "nested" / "kg"
    with open_store(location) as store:
        assert isinstance(store, EmbeddedStore)
        assert store.uri == str(location)
    assert (location / "graph.lbdb").is_file()


def test_open_store_rejects_non_empty_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(StoreError, match="not a kgmm store") as error:
        open_store(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_open_store_rejects_a_file(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        open_store(path)


def test_open_store_rejects_a_corrupt_database(tmp_path):
    (tmp_path / "graph.lbdb").write_text("not a database")
    with pytest.raises(StoreError, match="not a valid") as error:
        open_store(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_open_store_read_only_needs_an_existing_store(tmp_path):
    with pytest.raises(StoreError, match="no kgmm store"):
        open_store(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()


def test_reopen_sees_the_same_data(tmp_path):
    with open_store(tmp_path / "kg") as store:
        write_batch(store)
        before = store.stats()
    with open_store(tmp_path / "kg", read_only=True) as reopened:
        assert reopened.stats() == before
        assert reopened.get_entity(DIABETES).aliases == ["diabetes mellitus"]
        assert {r.key for r in reopened.iter_relations()} == {r.key for r in tiny_relations()}


def test_release_memory_reopens_the_database_and_the_store_goes_on(tmp_path):
    with open_store(tmp_path / "kg") as store:
        store.upsert_entities(tiny_entities()[:2])
        database = embedded_module._open_databases[store._key].database
        store.release_memory()
        assert embedded_module._open_databases[store._key].database is not database  # a fresh handle
        assert store.stats().entities == 2
        write_batch(store)
        assert {r.key for r in store.iter_relations()} == {r.key for r in tiny_relations()}
    assert store._key not in embedded_module._open_databases
    with open_store(tmp_path / "kg", read_only=True) as reopened:
        assert reopened.get_entity(DIABETES).aliases == ["diabetes mellitus"]


def test_release_memory_keeps_a_database_another_store_uses(tmp_path):
    first, second = open_store(tmp_path / "kg"), open_store(tmp_path / "kg")
    database = embedded_module._open_databases[first._key].database
    first.release_memory()
    assert embedded_module._open_databases[first._key].database is database
    first.upsert_entities(tiny_entities()[:2])
    assert second.stats().entities == 2
    first.close()
    second.close()


def test_open_same_directory_twice_shares_the_database(tmp_path):
    first = open_store(tmp_path / "kg")
    second = open_store(tmp_path / "kg")
    first.upsert_entities(tiny_entities()[:2])
    assert second.stats().entities == 2
    first.close()
    assert second.get_entity(METFORMIN).name == "Metformin"
    second.close()
    with pytest.raises(StoreError, match="closed"):
        second.stats()


def test_read_only_store_refuses_writes(graph, tmp_path):
    graph.close()
    with open_store(graph.path, read_only=True) as reader:
        with pytest.raises(StoreError, match="read-only"):
            reader.upsert_entities(tiny_entities())
        with pytest.raises(StoreError, match="read-only"):
            reader.cypher("MATCH (e:Entity) SET e.name = 'x'")
        assert reader.get_entity(METFORMIN).name == "Metformin"


@pytest.mark.parametrize("bulk", [False, True], ids=["load-from", "copy"])
@pytest.mark.parametrize("scan", [False, True], ids=["per-key", "scan"])
def test_upsert_paths_give_the_same_graph(tmp_path, monkeypatch, bulk, scan):
    monkeypatch.setattr(embedded_module, "_COPY_FROM_ROWS", 1 if bulk else 10**9)
    monkeypatch.setattr(embedded_module, "_SCAN_ROWS_PER_LOOKUP", 10**9 if scan else 0)
    with open_store(tmp_path / "kg") as store:
        write_batch(store)
        write_batch(store)
        store.upsert_relations([Relation(METFORMIN, "TREATS", DIABETES, 0.95, "classifier", [DOC_B.id], ["Again."])])
        stats = store.stats()
        treats = {r.head: r for r in store.iter_relations() if r.type == "TREATS"}
    assert (stats.entities, stats.relations, stats.mentions, stats.documents) == (6, 3, 6, 2)
    assert treats[METFORMIN].sources == [DOC_A.id, DOC_B.id]
    assert treats[METFORMIN].confidence == pytest.approx(0.95)


def test_upsert_relations_rejects_type_differing_only_in_case(graph):
    with pytest.raises(ValidationError, match="'TREATS'"):
        graph.upsert_relations([Relation(INSULIN, "Treats", THIRST, 0.5, "x")])


def test_failed_write_rolls_back_the_whole_batch(store, monkeypatch):
    store.upsert_entities(tiny_entities())
    original = store._merge_relation_rows

    def fail(*args, **kwargs):
        original(*args, **kwargs)
        raise StoreError("simulated crash")

    monkeypatch.setattr(store, "_merge_relation_rows", fail)
    with pytest.raises(StoreError, match="simulated crash"):
        store.upsert_relations(tiny_relations())
    assert store.stats().relations == 0
    monkeypatch.undo()
    assert store.upsert_relations(tiny_relations()) == 3


def test_cypher_error_names_the_store_and_the_database_message(graph):
    with pytest.raises(StoreError) as error:
        graph.cypher("MATCH (n:NoSuchTable) RETURN n")
    assert graph.uri in str(error.value) and "NoSuchTable" in str(error.value)
    assert isinstance(error.value.__cause__, RuntimeError)
    with pytest.raises(ValidationError):
        graph.cypher("   ")


def test_iter_pages_through_everything(graph, monkeypatch):
    import kgmm.store.base

    monkeypatch.setattr(embedded_module, "PAGE_SIZE", 2)  # node-offset windows
    monkeypatch.setattr(kgmm.store.base, "PAGE_SIZE", 1)  # keyset pages (sources)
    assert sorted(e.id for e in graph.iter_entities()) == sorted(e.id for e in tiny_entities())
    assert sorted(r.key for r in graph.iter_relations()) == sorted(r.key for r in tiny_relations())
    assert sorted(s.id for s in graph.iter_sources()) == sorted([DOC_A.id, DOC_B.id, IMAGE.id])


def test_queries_validate_labels_before_building_text():
    assert "`TREATS`" in queries.create_relation_table("TREATS")
    for bad in ["TREATS]->(x) DETACH DELETE x //", "", "a b", "Source"]:
        with pytest.raises(ValidationError):
            queries.relation_table_of(bad)
    with pytest.raises(ValidationError):
        queries.shortest_path(["TREATS"], 0)




def test_labels_with_a_trailing_newline_are_invalid():
    from kgmm.schema import is_valid_label

    assert is_valid_label("TREATS") and not is_valid_label("TREATS\n") and not is_valid_label(None)


# The schema of a store written before mentions had provenance (kgmm 0.x): MENTIONED_IN without its two columns.
_OLD_SCHEMA = (
    "CREATE NODE TABLE Source(id STRING, kind STRING, text STRING, origin STRING, title STRING, image_path STRING, "
    "subject STRING, subject_type STRING, attributes STRING, metadata STRING, PRIMARY KEY(id))",
    "CREATE NODE TABLE Entity(id STRING, name STRING, type STRING, domain STRING, aliases STRING[], "
    "ontology_ids STRING[], name_key STRING, alias_keys STRING[], PRIMARY KEY(id))",
    "CREATE REL TABLE MENTIONED_IN(FROM Entity TO Source, start_char INT64, end_char INT64, text STRING, "
    "sentence STRING, negated BOOLEAN, uncertain BOOLEAN)",
    "CREATE (:Entity {id: 'medical:drug:metformin', name: 'Metformin', type: 'Drug', domain: 'medical', "
    "aliases: [], ontology_ids: [], name_key: 'metformin', alias_keys: []})",
    "CREATE (:Source {id: 'doc:a', kind: 'document', text: 'Metformin helps.', origin: 'a.txt', title: 'a.txt', "
    "attributes: '{}', metadata: '{}'})",
    "MATCH (e:Entity), (s:Source) CREATE (e)-[:MENTIONED_IN {start_char: 0, end_char: 9, text: 'Metformin', "
    "sentence: 'Metformin helps.', negated: false, uncertain: false}]->(s)",
)


@pytest.fixture
def old_store(tmp_path):
    """The directory of a store written by the previous schema, with one mention."""
    import ladybug

    location = tmp_path / "old"
    location.mkdir()
    database = ladybug.Database(str(location / embedded_module.DATABASE_FILE))
    connection = ladybug.Connection(database)
    for statement in _OLD_SCHEMA:
        connection.execute(statement)
    connection.close()
    database.close()
    return location


def _mention_columns(store: EmbeddedStore) -> set[str]:
    return {row["name"] for row in store.cypher(queries.table_columns(queries.MENTIONED_IN))}


def test_old_store_read_only_reads_mentions_as_extracted(old_store):
    with open_store(old_store, read_only=True) as reader:
        assert "provenance" not in _mention_columns(reader)  # a read-only open leaves the schema alone
        [(mention, source)] = reader.mentions(METFORMIN)
        assert (mention.text, mention.provenance, mention.confidence, source.id) == ("Metformin", "extracted", 1.0, "doc:a")
        assert [(m.start, m.end, m.provenance, m.confidence) for m in reader.iter_mentions()] == [(0, 9, "extracted", 1.0)]
        stats = reader.stats()
        assert (stats.mentions, stats.retrieved_links, stats.documents) == (1, 0, 1)


def test_old_store_source_domains_read_as_unknown_and_a_writable_open_adds_the_column(old_store):
    with open_store(old_store, read_only=True) as reader:
        assert reader.source_domains(["doc:a"]) == {"doc:a": ""}
    with open_store(old_store) as store:
        assert store.source_domains(["doc:a"]) == {"doc:a": ""}
        store.upsert_sources([Source.document("New text.", "b.txt")], domain="medical")
        assert store.source_domains([Source.document("New text.", "b.txt").id]) == {
            Source.document("New text.", "b.txt").id: "medical"}


def test_cypher_read_only_store_refuses_writes_while_another_process_writes(graph):
    """A read-only open needs no write lock: ``kgmm cypher`` runs beside an ingest that holds it."""
    import subprocess
    import sys

    code = ("import sys; from kgmm.store import open_store; s = open_store(sys.argv[1], read_only=True); "
            "print(s.cypher('MATCH (e:Entity) RETURN count(e) AS n')[0]['n'])")
    result = subprocess.run([sys.executable, "-c", code, str(graph.path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == graph.stats().entities


def test_old_store_writable_open_adds_the_provenance_columns(old_store):
    with open_store(old_store) as store:
        assert {"provenance", "confidence"} <= _mention_columns(store)
        [(mention, _)] = store.mentions(METFORMIN)
        assert (mention.provenance, mention.confidence) == ("extracted", 1.0)
        link = Mention(METFORMIN, "doc:a", 0, 0, "", "", provenance=PROVENANCE_RETRIEVED, confidence=0.4)
        assert store.upsert_mentions([link]) == 1
    with open_store(old_store, read_only=True) as reader:
        assert sorted((m.start, m.end, m.provenance, m.confidence) for m in reader.iter_mentions()) == [
            (0, 0, PROVENANCE_RETRIEVED, 0.4), (0, 9, "extracted", 1.0)]
        assert (reader.stats().mentions, reader.stats().retrieved_links) == (2, 1)
    with open_store(old_store) as reopened:  # the migration runs once
        assert reopened.stats().retrieved_links == 1
