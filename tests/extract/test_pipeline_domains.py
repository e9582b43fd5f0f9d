"""The medical and retail packs: lexicon entities, negation, relations, entity resolution."""

from __future__ import annotations

from kgmm.schema import Source


def _extract(extractor, text: str, **kwargs):
    return next(extractor.extract([Source.document(text, "test.txt", **kwargs)]))


def _names(extraction) -> dict[str, str]:
    return {e.id: e.name.lower() for e in extraction.entities}


def _triples(extraction) -> set[tuple[str, str, str]]:
    names = _names(extraction)
    return {(names[r.head], r.type, names[r.tail]) for r in extraction.relations}


def test_medical_negated_mentions_are_kept_but_make_no_facts(medical_extractor):
    extraction = _extract(medical_extractor, "Influenza presents with fever. The patient denies cough. No evidence of pneumonia.")
    flags = {m.text.lower(): m.negated for m in extraction.mentions}
    assert flags == {"influenza": False, "fever": False, "cough": True, "pneumonia": True}
    names = _names(extraction)
    negated_ids = {m.entity_id for m in extraction.mentions if m.negated}
    assert all(r.head not in negated_ids and r.tail not in negated_ids for r in extraction.relations)
    assert ("influenza", "HAS_SYMPTOM", "fever") in _triples(extraction)
    assert "cough" in names.values()  # the negated entity is still a node, with a negated mention


def test_medical_uncertain_mention_is_flagged(medical_extractor):
    extraction = _extract(medical_extractor, "Findings are suspicious for pneumonia.")
    mention = next(m for m in extraction.mentions if m.text == "pneumonia")
    assert mention.uncertain and not mention.negated


def test_medical_treats_relation_direction_from_schema(medical_extractor):
    extraction = _extract(medical_extractor, "Influenza was treated with oseltamivir.")
    assert ("oseltamivir", "TREATS", "influenza") in _triples(extraction)
    relation = extraction.relations[0]
    assert relation.extractor == "dep_pattern" and relation.confidence >= 0.6


def test_medical_drug_induced_disease_is_causes(medical_extractor):
    extraction = _extract(medical_extractor, "She developed lisinopril-induced cough.")
    assert ("lisinopril", "CAUSES", "cough") in _triples(extraction)


def test_medical_resolution_merges_case_plural_synonym_and_abbreviation(medical_extractor):
    text = (
        "Chronic obstructive pulmonary disease (COPD) was diagnosed. His COPD is stable. "
        "He had Headaches and one headache today. Salbutamol and albuterol were given."
    )
    extraction = _extract(medical_extractor, text)
    by_text = {m.text: m.entity_id for m in extraction.mentions}
    assert by_text["Chronic obstructive pulmonary disease"] == by_text["COPD"]
    assert by_text["Headaches"] == by_text["headache"]
    assert by_text["Salbutamol"] == by_text["albuterol"]
    assert sum(1 for e in extraction.entities if e.type == "Drug") == 1


def test_medical_abbreviations_match_only_in_capitals(medical_extractor):
    extraction = _extract(medical_extractor, "The results were odd but all tests were normal.")
    assert not extraction.mentions


def test_medical_entities_carry_ontology_ids(medical_extractor):
    extraction = _extract(medical_extractor, "The child has a fever.")
    fever = next(e for e in extraction.entities if e.name.lower() == "fever")
    assert fever.id.startswith("HP:") and fever.type == "Symptom"
    assert any(o.startswith("ICD10CM:") or o.startswith("DDXPLUS:") for o in fever.ontology_ids)


def test_retail_structured_attributes_become_facts(retail_extractor):
    source = Source.document(
        "Turtle Check Men Navy Blue Shirt", "catalogue.csv#1", key="p1", subject="Turtle Check Men Navy Blue Shirt",
        subject_type="Product", attributes={"Colour": "Navy Blue", "ArticleType": "Shirts", "Season": "Fall", "Usage": "Casual",
                                            "SubCategory": "Topwear", "Category": "Apparel"},
    )
    extraction = next(retail_extractor.extract([source]))
    triples = _triples(extraction)
    product = "turtle check men navy blue shirt"
    assert {(product, "HAS_COLOUR", "navy blue"), (product, "FOR_SEASON", "fall"), (product, "HAS_USAGE", "casual")} <= triples
    assert ("shirts", "IN_CATEGORY", "topwear") in triples and ("topwear", "IN_CATEGORY", "apparel") in triples
    structured = [r for r in extraction.relations if r.extractor == "structured"]
    assert structured and all(r.confidence == 1.0 for r in structured)


def test_retail_title_is_the_subject_of_a_description(retail_extractor):
    extraction = _extract(retail_extractor, "A red handbag in faux leather for formal evenings.", title="Lumen Women Red Handbag")
    triples = _triples(extraction)
    assert ("lumen women red handbag", "HAS_COLOUR", "red") in triples
    assert any(t[0] == "lumen women red handbag" and t[1] == "IS_A" for t in triples)
