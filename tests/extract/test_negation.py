"""Negation and uncertainty on hand-made entity spans (no lexicon needed)."""

from __future__ import annotations

import pytest

spacy = pytest.importorskip("spacy")


@pytest.fixture(scope="module")
def nlp():
    from kgmm.extract import negation  # noqa: F401
    from kgmm.extract.pipeline import load_statistical_pipeline

    nlp = load_statistical_pipeline(disable=["ner"])
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
    ruler.add_patterns(
        [{"label": "Symptom", "pattern": p} for p in ("fever", "chest pain", "cough", "chills", "headache")]
        + [{"label": "Disease", "pattern": p} for p in ("pneumonia", "fracture", "non-hodgkin lymphoma")]
    )
    nlp.add_pipe("kgmm_negation")
    return nlp


def _flags(nlp, text: str) -> dict[str, tuple[bool, bool]]:
    return {ent.text.lower(): (ent._.negated, ent._.uncertain) for ent in nlp(text).ents}


@pytest.mark.parametrize(
    "text, entity, negated, uncertain",
    [
        ("The patient denies fever.", "fever", True, False),
        ("No evidence of pneumonia.", "pneumonia", True, False),
        ("Pneumonia was ruled out.", "pneumonia", True, False),
        ("She has fever and cough.", "fever", False, False),
        ("Possible pneumonia in the left lung.", "pneumonia", False, True),
        ("Cannot exclude fracture.", "fracture", False, True),
        ("History of non-Hodgkin lymphoma.", "non-hodgkin lymphoma", False, False),
        ("No change in the cough.", "cough", False, False),
    ],
)
def test_negation_marks_entity(nlp, text, entity, negated, uncertain):
    assert _flags(nlp, text)[entity] == (negated, uncertain)


def test_negation_scope_covers_a_list(nlp):
    flags = _flags(nlp, "He denies fever, chills or headache.")
    assert all(flags[name][0] for name in ("fever", "chills", "headache"))


def test_negation_scope_stops_at_but(nlp):
    flags = _flags(nlp, "She denies fever but reports chest pain.")
    assert flags["fever"] == (True, False)
    assert flags["chest pain"] == (False, False)
