"""Store / triples -> PyG tensors: indices, HeteroData, stable vocabularies, save and load."""

from __future__ import annotations

import pytest
import torch

from kgmm.errors import ValidationError
from kgmm.graphdata import Vocabulary
from kgmm.graphdata.tensors import (
    graph_to_data,
    load_graph_tensors,
    load_vocabularies,
    save_graph_tensors,
    store_to_data,
    store_to_hetero_data,
    to_hetero_data,
    triples_to_data,
)
from kgmm.schema import Entity, Relation

METFORMIN = "medical:drug:metformin"
INSULIN = "medical:drug:insulin"
DIABETES = "medical:disease:diabetes"
THIRST = "medical:symptom:thirst"
FLU = "medical:disease:influenza"


def tiny_entities() -> list[Entity]:
    return [
        Entity(METFORMIN, "Metformin", "Drug", "medical"),
        Entity(INSULIN, "Insulin", "Drug", "medical"),
        Entity(DIABETES, "Diabetes", "Disease", "medical"),
        Entity(THIRST, "Thirst", "Symptom", "medical"),
        Entity(FLU, "Influenza", "Disease", "medical"),
    ]


def tiny_relations() -> list[Relation]:
    return [
        Relation(METFORMIN, "TREATS", DIABETES, 0.8, "test"),
        Relation(INSULIN, "TREATS", DIABETES, 0.7, "test"),
        Relation(DIABETES, "HAS_SYMPTOM", THIRST, 0.6, "test"),
    ]


def edges(data) -> set[tuple[str, str, str]]:
    ids, relations = data.entity_vocab.keys, data.relation_vocab.keys
    return {(ids[h], relations[r], ids[t])
            for (h, t), r in zip(data.edge_index.t().tolist(), data.edge_type.tolist(), strict=True)}


@pytest.fixture
def tiny_store(tmp_path):
    from kgmm.store import open_store

    store = open_store(tmp_path / "s")
    store.upsert_entities(tiny_entities())
    store.upsert_relations(tiny_relations())
    yield store
    store.close()


def test_store_to_data_indices_types_and_edges(tiny_store):
    data = store_to_data(tiny_store)
    assert data.num_nodes == 5
    assert data.entity_vocab.keys == sorted(e.id for e in tiny_entities())  # new keys are appended sorted
    assert data.relation_vocab.keys == ["HAS_SYMPTOM", "TREATS"]
    assert data.entity_type_vocab.keys == ["Disease", "Drug", "Symptom"]
    assert edges(data) == {(r.head, r.type, r.tail) for r in tiny_relations()}
    types = data.entity_type_vocab.keys
    assert types[int(data.node_type[data.entity_vocab.index(METFORMIN)])] == "Drug"
    assert data.entity_names[data.entity_vocab.index(THIRST)] == "Thirst"
    by_edge = dict(zip([(data.entity_vocab.key(h), data.entity_vocab.key(t)) for h, t in data.edge_index.t().tolist()],
                       data.edge_confidence.tolist(), strict=True))
    assert by_edge[(METFORMIN, DIABETES)] == pytest.approx(0.8)
    assert by_edge[(DIABETES, THIRST)] == pytest.approx(0.6)


def test_store_to_hetero_data_local_indices_and_global_ids(tiny_store):
    hetero = store_to_hetero_data(tiny_store)
    assert set(hetero.node_types) == {"Drug", "Disease", "Symptom"}
    assert hetero["Drug"].entity_ids == [INSULIN, METFORMIN]
    assert hetero["Drug"].node_index.tolist() == [hetero.entity_vocab.index(INSULIN), hetero.entity_vocab.index(METFORMIN)]
    treats = hetero["Drug", "TREATS", "Disease"]
    pairs = {(hetero["Drug"].entity_ids[h], hetero["Disease"].entity_ids[t]) for h, t in treats.edge_index.t().tolist()}
    assert pairs == {(METFORMIN, DIABETES), (INSULIN, DIABETES)}
    symptom = hetero["Disease", "HAS_SYMPTOM", "Symptom"]
    assert symptom.edge_index.tolist() == [[hetero["Disease"].entity_ids.index(DIABETES)], [0]]
    assert symptom.edge_confidence.tolist() == pytest.approx([0.6])


def test_vocabulary_keeps_old_indices_when_the_graph_grows():
    before = graph_to_data(tiny_entities(), tiny_relations())
    grown_entities = [Entity("medical:drug:aspirin", "Aspirin", "Drug", "medical"),
                      Entity("medical:anatomy:kidney", "Kidney", "Anatomy", "medical"), *tiny_entities()]
    grown_relations = [Relation("medical:drug:aspirin", "CAUSES", "medical:anatomy:kidney", 0.5, "test"),
                       *tiny_relations()]
    after = graph_to_data(grown_entities, grown_relations, entity_vocab=before.entity_vocab,
                          relation_vocab=before.relation_vocab, entity_type_vocab=before.entity_type_vocab)
    before.entity_vocab.check_compatible(after.entity_vocab)
    assert after.entity_vocab.keys[:5] == before.entity_vocab.keys
    assert after.entity_vocab.keys[5:] == ["medical:anatomy:kidney", "medical:drug:aspirin"]
    assert after.relation_vocab.keys == ["HAS_SYMPTOM", "TREATS", "CAUSES"]
    assert after.entity_type_vocab.keys == ["Disease", "Drug", "Symptom", "Anatomy"]
    assert torch.equal(after.node_type[:5], before.node_type)
    assert len(before.entity_vocab) == 5  # the given vocabulary is copied, not changed


def test_vocabulary_entity_gone_from_graph_keeps_its_index():
    old = Vocabulary(["medical:drug:retired", METFORMIN], name="entities")
    data = graph_to_data(tiny_entities(), tiny_relations(), entity_vocab=old)
    assert data.entity_vocab.index("medical:drug:retired") == 0
    assert int(data.node_type[0]) == -1 and data.entity_names[0] == ""
    assert data.entity_vocab.index(METFORMIN) == 1
    hetero = to_hetero_data(data)
    assert sum(hetero[t].num_nodes for t in hetero.node_types) == 5


def test_graph_to_data_merges_repeated_edges_and_rejects_unknown_entities():
    relations = [*tiny_relations(), Relation(METFORMIN, "TREATS", DIABETES, 0.9, "again")]
    data = graph_to_data(tiny_entities(), relations)
    assert data.edge_index.size(1) == 3
    first = (data.entity_vocab.index(METFORMIN), data.entity_vocab.index(DIABETES))
    position = data.edge_index.t().tolist().index(list(first))
    assert position == 0 and data.edge_confidence[position].item() == pytest.approx(0.9)
    with pytest.raises(ValidationError, match="medical:drug:ghost"):
        graph_to_data(tiny_entities(), [Relation("medical:drug:ghost", "TREATS", DIABETES, 1.0, "test")])


def test_save_and_load_round_trip(tmp_path):
    data = graph_to_data(tiny_entities(), tiny_relations())
    save_graph_tensors(data, tmp_path / "graph")
    tensors = torch.load(tmp_path / "graph" / "tensors.pt", weights_only=True)
    assert set(tensors) == {"edge_index", "edge_type", "edge_confidence", "node_type"}
    loaded = load_graph_tensors(tmp_path / "graph")
    for key in ("edge_index", "edge_type", "edge_confidence", "node_type"):
        assert torch.equal(loaded[key], data[key])
    assert loaded.num_nodes == data.num_nodes and loaded.entity_names == data.entity_names
    assert loaded.entity_vocab == data.entity_vocab and loaded.relation_vocab == data.relation_vocab
    vocabularies = load_vocabularies(tmp_path / "graph")
    assert set(vocabularies) == {"entity_vocab", "relation_vocab", "entity_type_vocab"}
    with pytest.raises(ValidationError, match="save_graph_tensors"):
        load_graph_tensors(tmp_path / "nothing")


def test_triples_file_to_data(tmp_path):
    path = tmp_path / "kb.txt"
    path.write_text("Heat|directed_by|Michael Mann\nHeat|starred_actors|Al Pacino\n"
                    "Heat|directed_by|Michael Mann\nInsider|starred_actors|Al Pacino\n", encoding="utf-8")
    data = triples_to_data(path)
    assert data.num_nodes == 4 and data.edge_index.size(1) == 3
    assert data.relation_vocab.keys == ["DIRECTED_BY", "STARRED_ACTORS"]
    assert ("general:concept:heat", "DIRECTED_BY", "general:concept:michael mann") in edges(data)
    assert data.entity_names[data.entity_vocab.index("general:concept:al pacino")] == "Al Pacino"
    assert data.entity_type_vocab.keys == ["Concept"]


def test_vocabulary_index_map_is_a_read_only_view():
    vocabulary = Vocabulary(["a", "b"], name="entities")
    view = vocabulary.index_map()
    vocabulary.add("c")
    assert dict(view) == {"a": 0, "b": 1, "c": 2}
    with pytest.raises(TypeError):
        view["d"] = 3
