"""What only the Neo4j backend has: URIs and credentials, server failures named clearly, the schema it
creates, and writes that survive the server dying mid-batch. Runs against the ArcadeDB Bolt test server."""

from __future__ import annotations

import pytest
from tiny_graph import DIABETES, METFORMIN, tiny_entities, write_batch

from kgmm.errors import StoreError, ValidationError
from kgmm.store import open_store
from kgmm.store import queries as _queries_package  # noqa: F401  (the package imports cleanly)
from kgmm.store.neo4j import Neo4jStore, split_credentials
from kgmm.store.queries import neo4j as queries

pytestmark = pytest.mark.bolt


@pytest.mark.parametrize(
    ("uri", "bare", "user", "password"),
    [
        ("bolt://localhost:7687", "bolt://localhost:7687", None, None),
        ("bolt://neo4j:s%40cret@db.example.org:7687", "bolt://db.example.org:7687", "neo4j", "s@cret"),
        ("neo4j+s://alice@cluster.example.org", "neo4j+s://cluster.example.org", "alice", None),
    ],
)
def test_split_credentials_keeps_secrets_out_of_the_uri(uri, bare, user, password):
    assert split_credentials(uri) == (bare, user, password)


@pytest.mark.parametrize("uri", ["bolt://neo4j:pa/ss@db.example.org:7687", "bolt://neo4j:se#cret@host", "bolt://host:notaport"])
def test_unreadable_credentials_or_port_fail_without_showing_the_password(uri):
    with pytest.raises(StoreError) as error:
        split_credentials(uri)
    message = str(error.value)
    assert "pa/ss" not in message and "se#cret" not in message
    assert "percent-encode" in message or "invalid port" in message


def test_open_store_picks_the_neo4j_backend_and_hides_the_password(bolt_server):
    uri = bolt_server.uri.replace("bolt://", f"bolt://{bolt_server.user}:{bolt_server.password}@")
    with open_store(uri, database="kg") as store:
        assert isinstance(store, Neo4jStore)
        assert bolt_server.password not in store.uri and bolt_server.password not in repr(store)
        assert store.stats().entities >= 0


def test_credentials_from_the_environment(bolt_server, monkeypatch):
    monkeypatch.setenv("NEO4J_USER", bolt_server.user)
    monkeypatch.setenv("NEO4J_PASSWORD", bolt_server.password)
    monkeypatch.setenv("NEO4J_DATABASE", "kg_b")
    with open_store(bolt_server.uri) as store:
        assert store.database == "kg_b" and store.user == bolt_server.user


def test_unreachable_server_is_one_clear_sentence(bolt_server):
    import kgmm_bolt_server

    uri = f"bolt://127.0.0.1:{kgmm_bolt_server.free_port()}"
    with pytest.raises(StoreError) as error:
        open_store(uri, user="neo4j", password="whatever-password")
    message = str(error.value)
    assert uri in message and "cannot reach" in message and "docker compose" in message


def test_wrong_password_names_the_uri_and_the_fix(bolt_server):
    with pytest.raises(StoreError) as error:
        open_store(bolt_server.uri, user=bolt_server.user, password="not-the-password", database="kg")
    message = str(error.value)
    assert bolt_server.uri in message and "wrong user or password" in message and "NEO4J_PASSWORD" in message
    assert "not-the-password" not in message


def test_missing_password_says_where_to_put_it(bolt_server, monkeypatch):
    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    with pytest.raises(StoreError, match="NEO4J_PASSWORD"):
        open_store(bolt_server.uri, user=bolt_server.user, database="kg")


def test_missing_database_names_it_and_the_fix(bolt_server):
    with pytest.raises(StoreError) as error:
        open_store(bolt_server.uri, user=bolt_server.user, password=bolt_server.password, database="no_such_db")
    message = str(error.value)
    assert bolt_server.uri in message and "no_such_db" in message and "--database" in message


def test_schema_is_created_idempotently(bolt_store_factory):
    store = bolt_store_factory(0)
    bolt_store_factory(0)  # a second open creates nothing new and does not fail
    constraints = store.cypher(queries.show_constraints())
    unique = {(tuple(row["labelsOrTypes"]), tuple(row["properties"])) for row in constraints}
    assert {(("Entity",), ("id",)), (("Source",), ("id",))} <= unique


def test_schema_file_matches_what_the_store_runs():
    from conftest import REPO

    text = (REPO / "graph" / "schema.cypher").read_text()
    statements = [line.rstrip(";") for line in text.splitlines() if line.strip() and not line.startswith("//")]
    assert statements == list(queries.SCHEMA)


def test_a_server_lacking_a_needed_capability_fails_clearly(bolt_server, monkeypatch):
    # A server (or a user) that refuses the schema statements and lacks the constraint kgmm needs.
    monkeypatch.setattr(queries, "SCHEMA", ("CREATE FULLTEXT INDEX kgmm_names IF NOT EXISTS FOR (e:Entity) ON EACH [e.name]",))
    monkeypatch.setattr(queries, "REQUIRED_CONSTRAINTS", (("Entity", "id"), ("Entity", "kgmm_missing_key")))
    with pytest.raises(StoreError) as error:
        open_store(bolt_server.uri, user=bolt_server.user, password=bolt_server.password, database="kg")
    message = str(error.value)
    assert bolt_server.uri in message and ":Entity(kgmm_missing_key)" in message and "graph/schema.cypher" in message


def test_optional_schema_statements_may_be_refused(bolt_server, monkeypatch):
    refused = "CREATE FULLTEXT INDEX kgmm_names IF NOT EXISTS FOR (e:Entity) ON EACH [e.name]"
    monkeypatch.setattr(queries, "SCHEMA", (*queries.SCHEMA, refused))
    with open_store(bolt_server.uri, user=bolt_server.user, password=bolt_server.password, database="kg") as store:
        from kgmm.schema import Entity

        store.cypher("MATCH (n) DETACH DELETE n", write=True)
        store.upsert_entities([Entity("t:refused", "Refused Index", "Thing", "test")])
        assert store.get_entity("t:refused").name == "Refused Index"  # opened and usable despite the refused index


def test_entities_carry_their_type_as_a_label_and_relations_are_typed(bolt_store_factory):
    store = bolt_store_factory(0)
    write_batch(store)
    labels = store.cypher("MATCH (e:Entity {id: $id}) RETURN labels(e) AS labels", {"id": METFORMIN})[0]["labels"]
    assert sorted(labels) == ["Drug", "Entity"]
    rows = store.cypher("MATCH (d:Drug)-[r:TREATS]->(x:Disease {id: $id}) RETURN d.id AS drug ORDER BY drug", {"id": DIABETES})
    assert [row["drug"] for row in rows] == ["medical:drug:insulin", METFORMIN]
    provenance = store.cypher("MATCH (:Entity {id: $id})-[m:MENTIONED_IN]->(s:Source) RETURN s.kind AS kind, m.text AS text",
                              {"id": METFORMIN})
    assert provenance == [{"kind": "document", "text": "Metformin"}]


def test_entity_type_that_would_clash_with_the_store_labels_is_refused(bolt_store_factory):
    store = bolt_store_factory(0)
    from kgmm.schema import Entity

    with pytest.raises(ValidationError, match="reserved"):
        store.upsert_entities([Entity("x:source:a", "A", "Source", "x")])
    assert store.stats().entities == 0


def test_read_only_store_refuses_writes(bolt_store_factory, bolt_server):
    write_batch(bolt_store_factory(0))
    with open_store(bolt_server.uri, user=bolt_server.user, password=bolt_server.password, database="kg",
                    read_only=True) as reader:
        with pytest.raises(StoreError, match="read-only"):
            reader.upsert_entities(tiny_entities())
        with pytest.raises(StoreError, match="read-only"):
            reader.cypher("MATCH (e:Entity) SET e.name = 'x'")
        assert reader.get_entity(METFORMIN).name == "Metformin"


def test_cypher_error_names_the_server_and_its_message(bolt_store_factory):
    store = bolt_store_factory(0)
    with pytest.raises(StoreError) as error:
        store.cypher("MATCH (n RETURN n")
    assert store.uri in str(error.value)


def test_small_batches_give_the_same_graph(bolt_store_factory):
    small = bolt_store_factory(1, batch_size=1)
    write_batch(small)
    write_batch(small)
    stats = small.stats()
    assert (stats.entities, stats.relations, stats.mentions, stats.documents, stats.images) == (6, 3, 6, 2, 1)


def test_entity_created_meanwhile_by_another_writer_is_merged_not_duplicated(bolt_store_factory, bolt_server, monkeypatch):
    from kgmm.schema import Entity

    store = bolt_store_factory(0)
    other = open_store(bolt_server.uri, user=bolt_server.user, password=bolt_server.password, database="kg")
    original = queries.create_entities
    raced = {"done": False}

    def create_after_a_rival(entity_type):
        if not raced["done"]:  # the rival commits the same new entity between our look-up and our write
            raced["done"] = True
            other.upsert_entities([Entity(METFORMIN, "Metformin", "Drug", "medical")])
        return original(entity_type)

    monkeypatch.setattr(queries, "create_entities", create_after_a_rival)
    assert store.upsert_entities([Entity(METFORMIN, "Metformin", "Drug", "medical", aliases=["Glucophage"])]) == 0
    other.close()
    assert store.stats().entities == 1
    assert store.get_entity(METFORMIN).aliases == ["Glucophage"]
