"""A trained extraction model's output joins the pipeline through the pack's label mappings.

The model is replaced by a stand-in with fixed predictions: what is tested is the integration
(mapping, overlap with lexicon entities, negation, schema checks), not the model.
"""

from __future__ import annotations

import copy

from kgmm.schema import Source


class FixedModel:
    dataset = "bc5cdr"
    entity_types = ["Chemical", "Disease"]

    def __init__(self, predictions):
        self.predictions = predictions

    def predict_many(self, texts):
        return [self.predictions[text] for text in texts]


def _with_model(extractor, predictions):
    clone = copy.copy(extractor)
    clone.model = FixedModel(predictions)
    return clone


def test_model_entities_and_relations_are_mapped_to_the_pack(medical_extractor):
    text = "Zorblax exposure was followed by frobnitis in two patients."
    predictions = {text: ([(0, 7, "Chemical", "Zorblax"), (33, 42, "Disease", "frobnitis")], [(0, "CID", 1, 0.91)])}
    extraction = next(_with_model(medical_extractor, predictions).extract([Source.document(text, "t")]))
    types = {e.name: e.type for e in extraction.entities}
    assert types == {"Zorblax": "Drug", "frobnitis": "Disease"}
    (relation,) = extraction.relations
    assert (relation.type, relation.extractor, relation.confidence) == ("CAUSES", "model:bc5cdr", 0.91)


def test_model_relation_with_a_negated_entity_is_dropped(medical_extractor):
    text = "Zorblax was given and there was no frobnitis."
    start = text.index("frobnitis")
    predictions = {text: ([(0, 7, "Chemical", "Zorblax"), (start, start + 9, "Disease", "frobnitis")], [(0, "CID", 1, 0.9)])}
    extraction = next(_with_model(medical_extractor, predictions).extract([Source.document(text, "t")]))
    assert not extraction.relations
    assert any(m.text == "frobnitis" and m.negated for m in extraction.mentions)


def test_model_span_overlapping_a_lexicon_entity_keeps_the_lexicon_id(medical_extractor):
    text = "The patient had a fever."
    predictions = {text: ([(16, 23, "Disease", "a fever")], [])}
    extraction = next(_with_model(medical_extractor, predictions).extract([Source.document(text, "t")]))
    assert [e.id for e in extraction.entities] == ["HP:0001945"]


def test_model_relation_outside_the_schema_is_dropped(medical_extractor):
    text = "Zorblax exposure was followed by frobnitis."
    # CAUSES runs from Drug|Disease to Disease|Symptom|Finding: Disease -> Drug is not in the schema.
    predictions = {text: ([(0, 7, "Chemical", "Zorblax"), (33, 42, "Disease", "frobnitis")], [(1, "CID", 0, 0.9)])}
    extraction = next(_with_model(medical_extractor, predictions).extract([Source.document(text, "t")]))
    assert not [r for r in extraction.relations if r.extractor.startswith("model:")]


def test_a_handed_in_model_the_pack_cannot_map_is_refused_naming_it():
    import pytest

    from kgmm.errors import ExtractionError
    from kgmm.extract.pipeline import Extractor

    class ConllModel(FixedModel):
        entity_types = ["Peop", "Loc"]
        config: dict = {}

    with pytest.raises(ExtractionError, match=r"the model in m/ predicts \['Peop', 'Loc'\].*'medical' pack"):
        Extractor("medical", model=ConllModel({}), model_source="the model in m/")


def test_a_handed_in_model_reports_relations_only_when_it_finds_one():
    from kgmm.extract.pipeline import Extractor

    model = FixedModel({})
    model.config = {"min_one_relation": True}
    assert Extractor("medical", model=model).model is model and model.config["min_one_relation"] is False
