"""The ``GraphStore`` contract, run unchanged against every backend: the embedded store (LadybugDB)
and the Neo4j backend over Bolt (against the ArcadeDB test server started by the tests)."""

from __future__ import annotations

import pytest
from tiny_graph import (
    DIABETES,
    DOC_A,
    DOC_B,
    FLU,
    IMAGE,
    INSULIN,
    KIDNEY,
    METFORMIN,
    THIRST,
    tiny_entities,
    tiny_mentions,
    tiny_relations,
    write_batch,
)

from kgmm.errors import StoreError, ValidationError, WriteRefusedError
from kgmm.graphdata import store_to_data, store_to_hetero_data
from kgmm.schema import PROVENANCE_EXTRACTED, PROVENANCE_RETRIEVED, Entity, Mention, Relation, Source
from kgmm.store.base import Retraction


@pytest.fixture
def store(store_factory):
    return store_factory(0)


@pytest.fixture
def graph(store):
    write_batch(store)
    return store


def test_upsert_counts_new_rows_and_is_idempotent(store):
    assert write_batch(store) == (6, 3, 6, 3)
    first = store.stats()
    assert write_batch(store) == (0, 0, 0, 0)
    assert store.stats() == first
    assert (first.entities, first.relations, first.mentions, first.documents, first.images) == (6, 3, 6, 2, 1)


def test_upsert_entities_merges_aliases_and_keeps_first_name(store):
    store.upsert_entities([Entity(DIABETES, "Diabetes", "Disease", "medical", ["diabetes mellitus"], ["ICD10CM:E11"])])
    assert store.upsert_entities([
        Entity(DIABETES, "Diabetes Mellitus Type 2", "Symptom", "other", ["T2DM", "diabetes mellitus"], ["HP:0005978"]),
    ]) == 0
    entity = store.get_entity(DIABETES)
    assert (entity.name, entity.type, entity.domain) == ("Diabetes", "Disease", "medical")
    assert entity.aliases == ["diabetes mellitus", "T2DM", "Diabetes Mellitus Type 2"]
    assert entity.ontology_ids == ["ICD10CM:E11", "HP:0005978"]
    assert store.find_entities("t2dm", fuzzy=False)[0].entity.id == DIABETES


def test_upsert_entities_merges_duplicates_within_a_batch(store):
    assert store.upsert_entities([
        Entity(FLU, "Influenza", "Disease", "medical", ["flu"]),
        Entity(FLU, "Influenza", "Disease", "medical", ["grippe"]),
    ]) == 1
    assert store.get_entity(FLU).aliases == ["flu", "grippe"]


def test_upsert_relations_unions_sources_and_keeps_max_confidence(graph):
    graph.upsert_sources([Source.document("Glucophage (metformin) for diabetes.", "c.txt")])
    doc_c = Source.document("Glucophage (metformin) for diabetes.", "c.txt").id
    assert graph.upsert_relations([
        Relation(METFORMIN, "TREATS", DIABETES, 0.5, "dep_pattern", [doc_c, DOC_A.id], ["Glucophage for diabetes.", "x"]),
    ]) == 0
    (treats,) = [r for r in graph.neighbors(METFORMIN).relations if r.head == METFORMIN]
    assert treats.sources == [DOC_A.id, doc_c]
    assert treats.sentences == ["Metformin treats diabetes.", "Glucophage for diabetes."]
    assert treats.confidence == pytest.approx(0.8)
    assert graph.stats().relations_by_type == {"HAS_SYMPTOM": 1, "TREATS": 2}


def test_upsert_relations_needs_stored_entities(store):
    store.upsert_entities(tiny_entities()[:1])
    with pytest.raises(StoreError, match="upsert the entities first") as error:
        store.upsert_relations([Relation(METFORMIN, "TREATS", "medical:disease:unknown", 0.5, "x")])
    assert "medical:disease:unknown" in str(error.value)
    assert store.stats().relations == 0


@pytest.mark.parametrize("relation_type", ["TREATS; DROP", "treats-with", "1TREATS", "A`B", "Entity", "mentioned_in"])
def test_upsert_relations_rejects_invalid_type_before_the_database(store, relation_type):
    store.upsert_entities(tiny_entities())
    with pytest.raises(ValidationError):
        store.upsert_relations([Relation(METFORMIN, relation_type, DIABETES, 0.5, "x")])
    assert store.stats().relations == 0


def test_upsert_mentions_before_sources_keeps_the_source_unknown(store):
    store.upsert_entities(tiny_entities())
    assert store.upsert_mentions(tiny_mentions()) == 6
    assert store.known_sources([DOC_A.id, DOC_B.id]) == set()
    assert store.stats().documents == 0
    assert store.upsert_sources([DOC_A]) == 1
    assert store.known_sources([DOC_A.id, DOC_B.id]) == {DOC_A.id}
    assert store.get_sources([DOC_A.id])[DOC_A.id].text == "Metformin treats diabetes."


def test_interrupted_ingest_redone_matches_a_clean_run(store_factory):
    clean = store_factory(0)
    write_batch(clean)
    expected = clean.stats()
    expected_relations = list(clean.iter_relations())
    store = store_factory(1)
    store.upsert_entities(tiny_entities())
    store.upsert_relations(tiny_relations())  # interrupted here: no mentions, no sources
    assert store.known_sources([DOC_A.id, DOC_B.id, IMAGE.id]) == set()
    write_batch(store)
    assert store.stats() == expected
    assert list(store.iter_relations()) == expected_relations


def test_hostile_values_round_trip_unchanged(store):
    hostile = [
        "O'Brien \"quoted\" `ticked` {braces}",
        "x'}) MATCH (n) DETACH DELETE n //",
        "line one\nline two\ttab \\ backslash $param",
        "Ünïcödé 漢字 😀 \u200b",
    ]
    entities = [Entity(f"test:thing:{i}", name, "Thing", "test", aliases=[name + " alias"]) for i, name in enumerate(hostile)]
    entities.append(Entity(hostile[1], hostile[0], "Thing", "test"))
    store.upsert_entities(entities)
    source = Source.document(hostile[2], hostile[3], title=hostile[1], metadata={"note": hostile[0]})
    store.upsert_sources([source])
    store.upsert_relations([Relation(hostile[1], "LINKS", "test:thing:0", 0.5, hostile[3], [source.id], [hostile[1]])])
    store.upsert_mentions([Mention(hostile[1], source.id, 0, 4, hostile[0], hostile[2])])

    for entity in entities:
        assert store.get_entity(entity.id) == entity
    assert store.get_sources([source.id])[source.id] == source
    (relation,) = store.iter_relations()
    assert (relation.head, relation.extractor, relation.sentences) == (hostile[1], hostile[3], [hostile[1]])
    assert store.mentions(hostile[1])[0][0].text == hostile[0]
    assert store.find_entities(hostile[3], fuzzy=False)[0].entity.name == hostile[3]
    assert store.cypher("MATCH (e:Entity {id: $id}) RETURN e.name AS name", {"id": hostile[1]}) == [{"name": hostile[0]}]
    assert store.stats().entities == 5


@pytest.mark.parametrize(
    ("query", "expected_id", "matched"),
    [
        ("Diabetes", DIABETES, "Diabetes"),
        ("DIABETES", DIABETES, "Diabetes"),
        ("  Diabetes   MELLITUS ", DIABETES, "diabetes mellitus"),
        ("glucophage", METFORMIN, "Glucophage"),
        (FLU, FLU, FLU),
    ],
)
def test_find_entities_exact_by_name_alias_or_id(graph, query, expected_id, matched):
    (match,) = graph.find_entities(query, limit=1, fuzzy=False)
    assert (match.entity.id, match.score, match.matched) == (expected_id, 1.0, matched)


@pytest.mark.parametrize(("query", "expected_id"), [("diabetis", DIABETES), ("Metfromin", METFORMIN), ("polydypsia", THIRST)])
def test_find_entities_tolerates_typos(graph, query, expected_id):
    matches = graph.find_entities(query, limit=3)
    assert matches[0].entity.id == expected_id
    assert 0.75 <= matches[0].score < 1.0
    assert graph.find_entities(query, fuzzy=False) == []


def test_find_entities_fuzzy_index_sees_new_entities(graph):
    assert graph.find_entities("pneumonai") == []  # builds the fuzzy index
    graph.upsert_entities([Entity("medical:disease:pneumonia", "Pneumonia", "Disease", "medical")])
    assert graph.find_entities("pneumonai", limit=1)[0].entity.id == "medical:disease:pneumonia"


def test_find_entities_exact_match_ranks_before_fuzzy_ones(graph):
    matches = graph.find_entities("flu", limit=5)
    assert matches[0].entity.id == FLU and matches[0].score == 1.0
    assert all(match.score < 1.0 for match in matches[1:])


def test_neighbors_one_hop_ignores_direction_and_mentions(graph):
    sub = graph.neighbors(DIABETES, hops=1)
    assert sub.entities[0].id == DIABETES
    assert {e.id for e in sub.entities} == {DIABETES, METFORMIN, INSULIN, THIRST}
    assert {r.key for r in sub.relations} == {r.key for r in tiny_relations()}


def test_neighbors_two_hops_reaches_the_other_drug(graph):
    one = graph.neighbors(METFORMIN, hops=1)
    assert [e.id for e in one.entities] == [METFORMIN, DIABETES]
    assert [r.key for r in one.relations] == [(METFORMIN, "TREATS", DIABETES)]
    two = graph.neighbors(METFORMIN, hops=2)
    assert [e.id for e in two.entities][:2] == [METFORMIN, DIABETES]
    assert {e.id for e in two.entities} == {METFORMIN, DIABETES, INSULIN, THIRST}
    assert len(two.relations) == 3
    treats = next(r for r in two.relations if r.head == METFORMIN)
    assert treats.sources == [DOC_A.id] and treats.sentences == ["Metformin treats diabetes."]


def test_subgraph_caps_entities_nearest_first(graph):
    sub = graph.subgraph([METFORMIN], hops=2, limit=2)
    assert [e.id for e in sub.entities] == [METFORMIN, DIABETES]
    assert [r.key for r in sub.relations] == [(METFORMIN, "TREATS", DIABETES)]


def test_subgraph_of_unknown_or_isolated_seed(graph):
    assert graph.subgraph(["medical:drug:unknown"], hops=2).entities == []
    isolated = graph.neighbors(FLU, hops=2)
    assert [e.id for e in isolated.entities] == [FLU] and isolated.relations == []


def test_subgraph_rejects_hops_out_of_range(graph):
    with pytest.raises(ValidationError, match="hops"):
        graph.neighbors(DIABETES, hops=5)


def test_shortest_path_in_path_order_either_direction(graph):
    path = graph.shortest_path(METFORMIN, THIRST)
    assert [e.id for e in path.entities] == [METFORMIN, DIABETES, THIRST]
    assert [r.key for r in path.relations] == [(METFORMIN, "TREATS", DIABETES), (DIABETES, "HAS_SYMPTOM", THIRST)]
    back = graph.shortest_path(INSULIN, METFORMIN)
    assert [e.id for e in back.entities] == [INSULIN, DIABETES, METFORMIN]
    assert back.relations[1].key == (METFORMIN, "TREATS", DIABETES)


def test_shortest_path_none_when_unreachable_or_too_far(graph):
    assert graph.shortest_path(METFORMIN, FLU) is None
    graph.upsert_mentions([Mention(KIDNEY, DOC_A.id, 30, 36, "kidney", "Kidney.")])
    assert graph.shortest_path(METFORMIN, KIDNEY) is None  # only co-mentioned: MENTIONED_IN is no path
    assert KIDNEY not in {e.id for e in graph.neighbors(METFORMIN, hops=2).entities}
    assert graph.shortest_path(METFORMIN, THIRST, max_hops=1) is None
    assert [e.id for e in graph.shortest_path(FLU, FLU).entities] == [FLU]


def test_mentions_come_with_their_sources(graph):
    mentions = graph.mentions(DIABETES)
    assert [(m.source_id, m.start, m.end, m.text) for m, _ in mentions] == sorted(
        [(DOC_A.id, 17, 25, "diabetes"), (DOC_B.id, 15, 23, "diabetes")]
    )
    by_source = {source.id: source for _, source in mentions}
    assert by_source[DOC_A.id] == DOC_A
    [(thirst, _)] = graph.mentions(THIRST)
    assert (thirst.uncertain, thirst.negated) == (True, False)
    [(kidney, image)] = graph.mentions(KIDNEY)
    assert image == IMAGE and image.metadata == {"modality": "US"}
    assert len(graph.mentions(DIABETES, limit=1)) == 1


def test_search_shows_each_sentence_once(graph):
    from kgmm.app.answers import search

    # a second mention of diabetes in a sentence it is already mentioned in, and one in a new sentence
    graph.upsert_mentions([Mention(DIABETES, DOC_B.id, 15, 19, "diab", "Insulin treats diabetes."),
                           Mention(DIABETES, DOC_B.id, 25, 33, "Diabetes", "Diabetes causes thirst.")])
    [result] = [r for r in search(graph, "diabetes")["results"] if r["id"] == DIABETES]
    shown = sorted((m["source"]["id"], m["sentence"]) for m in result["mentions"])
    assert shown == sorted([(DOC_A.id, "Metformin treats diabetes."), (DOC_B.id, "Insulin treats diabetes."),
                            (DOC_B.id, "Diabetes causes thirst.")])


def test_stats_counts_per_type_and_kind(graph):
    stats = graph.stats()
    assert stats.entities_by_type == {"Anatomy": 1, "Disease": 2, "Drug": 2, "Symptom": 1}
    assert stats.relations_by_type == {"HAS_SYMPTOM": 1, "TREATS": 2}
    assert (stats.documents, stats.images, stats.mentions) == (2, 1, 6)


def test_stats_of_empty_store(store):
    stats = store.stats()
    assert (stats.entities, stats.relations, stats.documents, stats.images, stats.mentions) == (0, 0, 0, 0, 0)
    assert list(store.iter_entities()) == [] and list(store.iter_relations()) == []
    assert store.find_entities("anything") == []
    assert store.shortest_path(METFORMIN, DIABETES) is None


def test_cypher_with_parameters_reads_typed_relations(graph):
    rows = graph.cypher(
        "MATCH (d:Entity)-[r:TREATS]->(x:Entity {id: $disease}) RETURN d.name AS drug, r.confidence AS confidence "
        "ORDER BY confidence DESC",
        {"disease": DIABETES},
    )
    assert rows == [{"drug": "Metformin", "confidence": 0.8}, {"drug": "Insulin", "confidence": 0.7}]


def test_get_relations_returns_stored_facts_with_evidence(graph):
    keys = [(METFORMIN, "TREATS", DIABETES), (DIABETES, "TREATS", METFORMIN), (INSULIN, "TREATS", DIABETES),
            (METFORMIN, "CAUSES", DIABETES), (METFORMIN, "TREATS", DIABETES)]
    found = graph.get_relations(keys)
    assert sorted(found) == sorted([(METFORMIN, "TREATS", DIABETES), (INSULIN, "TREATS", DIABETES)])
    expected = {relation.key: relation for relation in tiny_relations()}
    for key, relation in found.items():
        assert (relation.sources, relation.sentences, relation.extractor) == (
            expected[key].sources, expected[key].sentences, expected[key].extractor)
        assert relation.confidence == pytest.approx(expected[key].confidence)
    assert graph.get_relations([]) == {}
    assert graph.get_relations([(METFORMIN, "NEVER_STORED", DIABETES)]) == {}
    with pytest.raises(ValidationError, match="invalid relation type"):
        graph.get_relations([(METFORMIN, "TREATS`) DETACH DELETE (a", DIABETES)])


def test_known_and_get_sources(graph):
    assert graph.known_sources([DOC_A.id, "doc:missing"]) == {DOC_A.id}
    assert graph.get_sources([IMAGE.id, "doc:missing"]) == {IMAGE.id: IMAGE}


def test_to_networkx_keys_edges_by_relation_type(graph):
    nx_graph = graph.to_networkx()
    assert nx_graph.number_of_nodes() == 6 and nx_graph.number_of_edges() == 3
    assert nx_graph.nodes[DIABETES]["aliases"] == ["diabetes mellitus"]
    assert nx_graph.nodes[THIRST]["type"] == "Symptom"
    edge = nx_graph.edges[METFORMIN, DIABETES, "TREATS"]
    assert (edge["confidence"], edge["extractor"], edge["sources"]) == (0.8, "dep_pattern", [DOC_A.id])


def test_store_to_data_data_has_vocabularies_and_typed_edges(graph):
    data = store_to_data(graph)
    entity_ids, relation_types, entity_types = data.entity_vocab.keys, data.relation_vocab.keys, data.entity_type_vocab.keys
    assert data.num_nodes == 6 and sorted(entity_ids) == sorted(e.id for e in tiny_entities())
    assert data.edge_index.shape == (2, 3) and data.edge_type.shape == (3,)
    assert relation_types == ["HAS_SYMPTOM", "TREATS"]
    assert entity_types == ["Anatomy", "Disease", "Drug", "Symptom"]
    triples = {
        (entity_ids[h], relation_types[t], entity_ids[d])
        for h, t, d in zip(data.edge_index[0].tolist(), data.edge_type.tolist(), data.edge_index[1].tolist(), strict=True)
    }
    assert triples == {r.key for r in tiny_relations()}
    types = dict(zip(entity_ids, (entity_types[i] for i in data.node_type.tolist()), strict=True))
    assert types[KIDNEY] == "Anatomy" and types[METFORMIN] == "Drug"


def test_store_to_data_keeps_a_given_vocabulary(graph):
    first = store_to_data(graph)
    again = store_to_data(graph, entity_vocab=first.entity_vocab, relation_vocab=first.relation_vocab)
    assert again.entity_vocab == first.entity_vocab and torch_equal(again.edge_index, first.edge_index)


def test_store_to_data_hetero_has_one_node_type_per_entity_type(graph):
    data = store_to_hetero_data(graph)
    assert sorted(data.node_types) == ["Anatomy", "Disease", "Drug", "Symptom"]
    assert sorted(data.edge_types) == [("Disease", "HAS_SYMPTOM", "Symptom"), ("Drug", "TREATS", "Disease")]
    treats = data["Drug", "TREATS", "Disease"].edge_index
    assert treats.shape == (2, 2)
    drugs, diseases = data["Drug"].entity_ids, data["Disease"].entity_ids
    assert {(drugs[h], diseases[t]) for h, t in treats.t().tolist()} == {(METFORMIN, DIABETES), (INSULIN, DIABETES)}
    assert data["Disease"].num_nodes == 2 and sorted(diseases) == [DIABETES, FLU]


def test_store_to_data_of_empty_store(store):
    data = store_to_data(store)
    assert data.num_nodes == 0 and data.edge_index.shape == (2, 0) and data.entity_vocab.keys == []


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_iter_sources_and_mentions_list_everything_stored(graph):
    assert sorted(s.id for s in graph.iter_sources()) == sorted(s.id for s in (DOC_A, DOC_B, IMAGE))
    assert {s.id: s for s in graph.iter_sources()}[IMAGE.id] == IMAGE
    mentions = list(graph.iter_mentions())
    assert sorted((m.entity_id, m.source_id, m.start, m.end) for m in mentions) == sorted(
        (m.entity_id, m.source_id, m.start, m.end) for m in tiny_mentions()
    )
    assert next(m for m in mentions if m.entity_id == THIRST).uncertain


def test_copy_store_between_backends_checks_counts(graph, store_factory):
    from kgmm.store.transfer import copy_store

    target = store_factory(1)
    result = copy_store(graph, target, batch_size=2)
    assert result["target_stats"] == result["source_stats"]
    assert result["copied"] == {"entities": 6, "relations": 3, "mentions": 6, "sources": 3}
    assert sorted(map(repr, target.iter_relations())) == sorted(map(repr, graph.iter_relations()))
    assert copy_store(graph, target)["copied"] == {"entities": 0, "relations": 0, "mentions": 0, "sources": 0}
    with pytest.raises(StoreError, match="into itself"):
        copy_store(graph, graph)


UNCAPTIONED = Source(id="img:uncaptioned", kind="image", text="", origin="photos/scan.png",
                     image_path="/data/scan.png")


def retrieved(entity_id: str, source_id: str, similarity: float) -> Mention:
    """A link found by image-text retrieval: no text, no span, the similarity as confidence."""
    return Mention(entity_id, source_id, 0, 0, "", "", provenance=PROVENANCE_RETRIEVED, confidence=similarity)


def _provenance(mentions) -> list[tuple]:
    return sorted((m.entity_id, m.source_id, m.start, m.end, m.provenance, round(m.confidence, 6)) for m in mentions)


def test_retrieved_mention_round_trips_with_provenance_and_confidence(graph):
    from kgmm.app.answers import search, stats_dict

    assert graph.upsert_mentions([retrieved(KIDNEY, UNCAPTIONED.id, 0.42), retrieved(FLU, UNCAPTIONED.id, 0.17)]) == 2
    graph.upsert_sources([UNCAPTIONED])
    [(link, source)] = graph.mentions(FLU)
    assert (link.provenance, link.confidence, link.text, link.sentence, link.start, link.end) == (
        PROVENANCE_RETRIEVED, pytest.approx(0.17), "", "", 0, 0)
    assert source == UNCAPTIONED
    stored = [m for m in graph.iter_mentions() if m.source_id == UNCAPTIONED.id]
    assert _provenance(stored) == sorted([(FLU, UNCAPTIONED.id, 0, 0, PROVENANCE_RETRIEVED, 0.17),
                                          (KIDNEY, UNCAPTIONED.id, 0, 0, PROVENANCE_RETRIEVED, 0.42)])
    extracted = [m for m in graph.iter_mentions() if m.source_id != UNCAPTIONED.id]
    assert {(m.provenance, m.confidence) for m in extracted} == {(PROVENANCE_EXTRACTED, 1.0)}
    stats = graph.stats()
    assert (stats.mentions, stats.retrieved_links, stats.images) == (8, 2, 2)
    assert stats_dict(graph)["retrieved_links"] == 2
    shown = search(graph, "influenza")["results"][0]["mentions"]
    assert [(m["provenance"], m["confidence"], m["source"]["id"]) for m in shown] == [
        (PROVENANCE_RETRIEVED, pytest.approx(0.17), UNCAPTIONED.id)]


@pytest.mark.parametrize("field, value, message", [
    ("provenance", "guessed", "expected one of: extracted, retrieved"),
    ("provenance", "Retrieved", "expected one of: extracted, retrieved"),
    ("confidence", 1.5, r"in \[0, 1\], got 1.5"),
    ("confidence", -0.1, r"in \[0, 1\], got -0.1"),
    ("confidence", float("nan"), r"in \[0, 1\], got nan"),
    ("confidence", "high", r"in \[0, 1\], got 'high'"),
])
def test_upsert_mentions_refuses_invalid_provenance_or_confidence_before_writing(graph, field, value, message):
    bad = retrieved(FLU, IMAGE.id, 0.5)
    setattr(bad, field, value)
    with pytest.raises(ValidationError, match=message):
        graph.upsert_mentions([retrieved(KIDNEY, DOC_A.id, 0.5), bad])
    assert graph.stats().mentions == 6
    assert _provenance(graph.iter_mentions()) == _provenance(tiny_mentions())


def test_extracted_and_retrieved_mentions_of_one_pair_coexist(graph):
    assert graph.upsert_mentions([retrieved(KIDNEY, IMAGE.id, 0.9)]) == 1
    assert graph.upsert_mentions([retrieved(KIDNEY, IMAGE.id, 0.3)]) == 0  # same key: the stored link stays
    by_span = {(m.start, m.end): m for m, _ in graph.mentions(KIDNEY)}
    assert sorted(by_span) == [(0, 0), (0, 6)]
    assert (by_span[0, 6].provenance, by_span[0, 6].confidence, by_span[0, 6].text) == (PROVENANCE_EXTRACTED, 1.0, "Kidney")
    assert (by_span[0, 0].provenance, by_span[0, 0].confidence, by_span[0, 0].text) == (
        PROVENANCE_RETRIEVED, pytest.approx(0.9), "")
    assert (graph.stats().mentions, graph.stats().retrieved_links) == (7, 1)


def test_mention_written_without_provenance_reads_as_extracted(graph):
    graph.cypher(
        "MATCH (e:Entity {id: $entity_id}), (s:Source {id: $source_id}) CREATE (e)-[:MENTIONED_IN "
        "{start_char: 50, end_char: 56, text: 'kidney', sentence: 'Kidney.', negated: false, uncertain: false}]->(s)",
        {"entity_id": KIDNEY, "source_id": DOC_B.id}, write=True,
    )
    [old] = [m for m, _ in graph.mentions(KIDNEY) if m.source_id == DOC_B.id]
    assert (old.provenance, old.confidence) == (PROVENANCE_EXTRACTED, 1.0)
    assert (graph.stats().mentions, graph.stats().retrieved_links) == (7, 0)


def test_copy_store_carries_mention_provenance(graph, store_factory):
    from kgmm.store.transfer import copy_store

    graph.upsert_mentions([retrieved(KIDNEY, UNCAPTIONED.id, 0.42), retrieved(KIDNEY, IMAGE.id, 0.25)])
    graph.upsert_sources([UNCAPTIONED])
    target = store_factory(1)
    result = copy_store(graph, target, batch_size=3)
    assert result["target_stats"]["retrieved_links"] == result["source_stats"]["retrieved_links"] == 2
    assert _provenance(target.iter_mentions()) == _provenance(graph.iter_mentions())
    assert {(m.start, m.provenance) for m, _ in target.mentions(KIDNEY)} == {
        (0, PROVENANCE_RETRIEVED), (0, PROVENANCE_EXTRACTED)}


HOSTILE = [
    "x'}) DETACH DELETE n //",
    "`}) MATCH (m) DETACH DELETE m //",
    '"}) SET n.name = "pwned" //',
    "Robert'); DROP DATABASE kg; --",
]


def test_cypher_injection_in_names_and_labels_is_data_never_code(graph, general_extractor, tmp_path):
    from kgmm.app.ingest import ingest
    from kgmm.schema import entity_id

    before = graph.stats()
    hostile = [Entity(entity_id("general", "Concept", name), name, "Concept", "general", aliases=[name + "`"]) for name in HOSTILE]
    assert graph.upsert_entities(hostile) == len(HOSTILE)
    graph.upsert_relations([Relation(hostile[0].id, "RELATED_TO", hostile[1].id, 0.5, HOSTILE[2], [HOSTILE[3]], [HOSTILE[0]])])
    for label in ["TREATS]->() DETACH DELETE n //", "TREATS`]->(x) DETACH DELETE x //", "A {x: 1}"]:
        with pytest.raises(ValidationError):
            graph.upsert_relations([Relation(METFORMIN, label, DIABETES, 0.5, "x")])
        with pytest.raises(ValidationError):
            graph.upsert_entities([Entity("x:y:z", "z", label, "x")])
    # Hostile text through the whole ingest path.
    note = tmp_path / "notes" / "hostile.txt"
    note.parent.mkdir()
    note.write_text("Robert `Tables'} works for Acme Corp in Paris. MATCH (n) DETACH DELETE n // said Acme Corp.")
    ingest([note.parent], graph, extractor=general_extractor, progress=False)

    after = graph.stats()
    assert after.entities >= before.entities + len(HOSTILE) and after.relations >= before.relations + 1
    for entity in hostile:
        assert graph.get_entity(entity.id) == entity
        assert graph.find_entities(entity.name, fuzzy=False)[0].entity.id == entity.id
    assert {r.key for r in tiny_relations()} <= {r.key for r in graph.iter_relations()}
    assert graph.get_entity(METFORMIN).name == "Metformin"
    assert graph.get_sources([DOC_A.id])[DOC_A.id] == DOC_A


def test_relation_types_differing_only_in_case_are_refused_in_one_batch(store):
    store.upsert_entities(tiny_entities())
    with pytest.raises(ValidationError, match="differ only in case"):
        store.upsert_relations([Relation(METFORMIN, "TREATS", DIABETES, 0.5, "x"), Relation(INSULIN, "treats", DIABETES, 0.5, "x")])
    assert store.stats().relations == 0


@pytest.mark.parametrize("query", [
    "MATCH (n:Entity) DETACH DELETE n",
    "CREATE (:Entity {id: 'intruder'})",
    "MATCH (e:Entity) SET e.name = 'x' RETURN e.id AS id",
])
def test_cypher_is_read_only_unless_asked_to_write(graph, query):
    before = graph.stats()
    with pytest.raises(WriteRefusedError, match="--write"):
        graph.cypher(query)
    assert graph.stats() == before
    assert graph.get_entity(METFORMIN).name == "Metformin" and graph.get_entity("intruder") is None


def test_cypher_runs_one_statement_so_a_read_cannot_smuggle_a_write(graph):
    before = graph.stats()
    for query in ("MATCH (e:Entity) RETURN count(e) AS n; MATCH (n) DETACH DELETE n",
                  "COMMIT; MATCH (n) DETACH DELETE n"):
        with pytest.raises(StoreError):
            graph.cypher(query)
    assert graph.stats() == before


def test_cypher_writes_when_asked(graph):
    rows = graph.cypher("MATCH (e:Entity {id: $id}) SET e.name = $name RETURN e.name AS name",
                        {"id": FLU, "name": "Grippe"}, write=True)
    assert rows == [{"name": "Grippe"}] and graph.get_entity(FLU).name == "Grippe"


def test_sources_remember_the_domain_they_were_extracted_with(store):
    store.upsert_entities(tiny_entities())
    store.upsert_sources([DOC_A, IMAGE], domain="medical")
    store.upsert_sources([DOC_B])
    assert store.source_domains([DOC_A.id, DOC_B.id, IMAGE.id, "doc:unknown"]) == {
        DOC_A.id: "medical", DOC_B.id: "", IMAGE.id: "medical"}


def test_retract_sources_takes_back_their_extraction_and_nothing_else(graph):
    before = graph.stats()
    # DOC_B also backs Metformin -> Diabetes, and an image link (retrieved) points at it.
    graph.upsert_relations([Relation(METFORMIN, "TREATS", DIABETES, 0.8, "dep_pattern", [DOC_B.id], ["b says so"])])
    graph.upsert_mentions([Mention(KIDNEY, DOC_B.id, 0, 0, "", "", provenance=PROVENANCE_RETRIEVED, confidence=0.5)])

    assert graph.retract_sources([DOC_B.id, "doc:never-stored"]) == Retraction(
        sources=1, mentions=3, relations_removed=2, relations_updated=1, entities_removed=2)

    assert graph.known_sources([DOC_A.id, DOC_B.id, IMAGE.id]) == {DOC_A.id, IMAGE.id}
    assert graph.get_entity(INSULIN) is None and graph.get_entity(THIRST) is None  # nothing left of them
    assert graph.get_entity(DIABETES) is not None and graph.get_entity(FLU) is not None  # still used / never touched
    (treats,) = list(graph.iter_relations())
    assert (treats.head, treats.sources, treats.sentences) == (METFORMIN, [DOC_A.id], ["Metformin treats diabetes."])
    assert [(m.entity_id, m.provenance) for m in graph.iter_mentions() if m.source_id == DOC_B.id] == [
        (KIDNEY, PROVENANCE_RETRIEVED)]
    assert graph.retract_sources([DOC_B.id]).mentions == 0  # again: nothing extracted is left

    write_batch(graph)  # extracted again: the graph is whole again
    after = graph.stats()
    assert (after.entities, after.relations, after.documents, after.mentions) == (
        before.entities, before.relations, before.documents, before.mentions + 1)


def test_sources_without_mentions_are_those_whose_entities_are_gone(graph):
    assert graph.sources_without_mentions() == []
    graph.cypher("MATCH (e:Entity {id: $id}) DETACH DELETE e", {"id": KIDNEY}, write=True)
    assert [source.id for source in graph.sources_without_mentions()] == [IMAGE.id]
