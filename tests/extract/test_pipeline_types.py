"""Entity types of common clinical words in the medical pack, and the relations that depend on them."""

from __future__ import annotations

import pytest

from kgmm.schema import Source


def _extract(extractor, text: str):
    return next(extractor.extract([Source.document(text, "t")]))


def _types(extraction) -> dict[str, str]:
    return {e.name.lower(): e.type for e in extraction.entities}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Metformin is used to treat diabetes.", {"metformin": "Drug", "diabetes": "Disease"}),
        ("The patient has hypertension.", {"hypertension": "Disease"}),
        ("She reports myalgia and fatigue.", {"myalgia": "Symptom", "fatigue": "Symptom"}),
    ],
)
def test_medical_common_words_get_clinical_types(medical_extractor, text, expected):
    assert _types(_extract(medical_extractor, text)) == expected


def test_medical_metformin_treats_diabetes(medical_extractor):
    extraction = _extract(medical_extractor, "Metformin is used to treat diabetes.")
    names = {e.id: e.name for e in extraction.entities}
    assert {(names[r.head], r.type, names[r.tail]) for r in extraction.relations} == {
        ("Metformin", "TREATS", "Diabetes")
    }


def test_medical_symptoms_reported_together_are_not_disease_and_symptom(medical_extractor):
    # Typed as a disease, myalgia became the head of a co-occurrence HAS_SYMPTOM to fatigue.
    assert _extract(medical_extractor, "She reports myalgia and fatigue.").relations == []
