"""Lexicon builders: right types, known terms resolve, false-positive synonyms are filtered, files regenerate."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache

import pytest

from kgmm.domains import builders, load_domain
from kgmm.domains.lexicons import LexiconEntry, build_lexicon
from kgmm.errors import DomainError
from kgmm.schema import entity_id, normalize_name

LEXICON_TYPES = {
    "hpo": {"Symptom", "Disease"},
    "icd10cm": {"Symptom", "Disease"},
    "ddxplus": {"Disease", "Symptom", "Finding"},
    "medical_seed": {"Drug", "Anatomy", "Procedure"},
    "fashion": {"Category", "SubCategory", "ArticleType", "Colour", "Season", "Usage", "Gender", "Brand"},
}


@cache
def lexicon(name: str) -> tuple[LexiconEntry, ...]:
    return tuple(build_lexicon(name))


def by_id(name: str) -> dict[str, LexiconEntry]:
    return {entry.id: entry for entry in lexicon(name)}


def by_name(name: str) -> dict[str, LexiconEntry]:
    return {entry.name.lower(): entry for entry in lexicon(name)}


def surfaces(name: str) -> set[str]:
    return {s.lower() for entry in lexicon(name) for s in (entry.name, *entry.synonyms)}


@pytest.mark.parametrize("name", sorted(LEXICON_TYPES))
def test_build_lexicon_entries_are_typed_named_and_unique(name):
    entries = lexicon(name)

    assert len(entries) > 100
    assert {e.type for e in entries} == LEXICON_TYPES[name]
    assert all(e.name.strip() and e.name == e.name.strip() for e in entries)
    assert all(s.strip() for e in entries for s in e.synonyms)
    assert len({e.id for e in entries}) == len(entries)
    # One surface form, one entry: the ruler never has to choose within a lexicon.
    counts = Counter(normalize_name(s) for e in entries for s in {normalize_name(x) for x in (e.name, *e.synonyms)})
    assert [s for s, n in counts.items() if n > 1] == []


def test_packs_name_only_registered_lexicons():
    for domain in ("medical", "retail"):
        for name in load_domain(domain).lexicons:
            assert name in LEXICON_TYPES
    with pytest.raises(DomainError, match="available: .*hpo"):
        build_lexicon("snomed")


@pytest.mark.parametrize(
    ("term", "usable"),
    [
        ("Pyrexia", True),
        ("COPD", True),
        ("MI", True),
        ("sore throat", True),
        ("Tall", False),
        ("Short", False),
        ("Small", False),
        ("Falls", False),
        ("ODD", False),
        ("the", False),
        ("Mi", False),
        ("S3", False),
        ("277000", False),
        ("of the", False),
        ("[EVALI]", False),
    ],
)
def test_is_usable_term_drops_prose_words(term, usable):
    assert builders.is_usable_term(term) is usable


def test_hpo_fever_and_filtered_synonyms():
    fever = by_id("hpo")["HP:0001945"]
    assert fever.name == "Fever" and fever.type == "Symptom"
    assert "Pyrexia" in fever.synonyms and "UMLS:C0015967" in fever.ontology_ids
    tall = by_id("hpo")["HP:0000098"]  # Tall stature, whose EXACT synonyms include "Tall"
    assert tall.name == "Tall stature" and "Tall" not in tall.synonyms
    found = surfaces("hpo")
    assert not {"tall", "short", "small", "falls", "odd", "sad"} & found
    assert "HP:0000118" not in by_id("hpo")  # the root itself is not a phenotype
    assert by_id("hpo")["HP:0003003"].name == "Colon cancer" and by_id("hpo")["HP:0003003"].type == "Disease"
    assert by_id("hpo")["ORPHA:558"].name == "Marfan syndrome" and by_id("hpo")["ORPHA:558"].type == "Disease"


def test_icd10cm_names_are_cleaned_and_residuals_skipped():
    entries = by_id("icd10cm")
    assert entries["ICD10CM:R50.9"].name == "Fever" and entries["ICD10CM:R50.9"].type == "Symptom"
    assert entries["ICD10CM:J18"].name == "Pneumonia" and "ICD10CM:J18.9" not in entries  # the category keeps the name
    assert entries["ICD10CM:N39.0"].name == "Urinary tract infection"
    assert entries["ICD10CM:B54"].name == "Malaria" and entries["ICD10CM:B54"].type == "Disease"
    assert entries["ICD10CM:I21"].name == "Acute myocardial infarction"
    names = [e.name for e in entries.values()]
    assert not any(n.lower().startswith("other") or "not elsewhere classified" in n.lower() for n in names)
    assert not any(n.endswith(", unspecified") or len(n.split()) > 6 for n in names)
    assert not any(code.startswith(("ICD10CM:V", "ICD10CM:W", "ICD10CM:Z")) for code in entries)


def test_clean_icd_description_strips_suffixes_and_prefixes():
    clean = builders.clean_icd_description
    assert clean("Fever, unspecified") == "Fever"
    assert clean("Unspecified jaundice") == "Jaundice"
    assert clean("Peptic ulcer, site unspecified") == "Peptic ulcer"
    assert clean("Hypothermia NOS") == "Hypothermia"
    assert clean("Pneumonia, unspecified organism") == "Pneumonia"
    assert clean("Urinary tract infection, site not specified") == "Urinary tract infection"
    assert (
        clean("E-cigarette product use associated lung injury [EVALI]")
        == "E-cigarette product use associated lung injury"
    )


def test_ddxplus_pneumonia_and_evidence_names():
    entries = by_id("ddxplus")
    pneumonia = by_name("ddxplus")["pneumonia"]
    assert pneumonia.type == "Disease" and pneumonia.id == "DDXPLUS:pneumonia"
    assert {"ICD10CM:J17", "ICD10CM:J18"} <= set(pneumonia.ontology_ids)
    assert entries["DDXPLUS:E_91"].name == "Fever" and entries["DDXPLUS:E_91"].type == "Symptom"
    assert entries["DDXPLUS:E_109"].name == "Deep vein thrombosis" and entries["DDXPLUS:E_109"].type == "Finding"
    assert "DVT" in entries["DDXPLUS:E_109"].synonyms
    assert "DDXPLUS:E_56" not in entries  # "How intense is the pain?" is not a phrase anyone writes
    nstemi = by_name("ddxplus")["possible nstemi / stemi"]
    assert {"NSTEMI", "STEMI"} <= set(nstemi.synonyms)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Do you have a fever (either felt or measured with a thermometer)?", ("Fever", [])),
        ("Have you had chills or shivers?", ("Chills or shivers", ["chills", "shivers"])),
        ("Have you ever had deep vein thrombosis (DVT)?", ("Deep vein thrombosis", ["DVT"])),
        ("Do you take corticosteroids?", ("Use of corticosteroids", [])),
        ("Do you have any family members who have asthma?", ("Family history of asthma", [])),
        ("Do you have pain somewhere, related to your reason for consulting?", ("Pain somewhere", [])),
        (
            "Do you wheeze while inhaling or is your breathing noisy after coughing spells?",
            ("Wheeze while inhaling", []),
        ),
        ("Do you have swollen or painful lymph nodes?", ("Swollen or painful lymph nodes", [])),
    ],
)
def test_evidence_name_strips_question_wrappers(question, expected):
    assert builders.evidence_name(question) == expected


def test_ddxplus_lexicon_file_names_its_source_licence_and_generator():
    data = json.loads(builders.DDXPLUS_LEXICON.read_text(encoding="utf-8"))
    assert "DDXPlus" in data["source"] and "CC BY 4.0" in data["licence"]
    assert "regenerate_ddxplus_lexicon" in data["generated_by"]
    assert len(data["conditions"]) == 49 and len(data["evidences"]) == 223
    fever = next(e for e in data["evidences"] if e["id"] == "DDXPLUS:E_91")
    assert fever["question"].startswith("Do you have a fever")


def test_medical_seed_drugs_anatomy_procedures():
    entries = by_name("medical_seed")
    metformin = entries["metformin"]
    assert metformin.id == "medical:drug:metformin" and "Glucophage" in metformin.synonyms
    assert "paracetamol" in entries["acetaminophen"].synonyms
    assert entries["liver"].type == "Anatomy" and "hepatic" in entries["liver"].synonyms
    assert entries["computed tomography"].type == "Procedure" and "CT" in entries["computed tomography"].synonyms
    types = Counter(e.type for e in lexicon("medical_seed"))
    assert types["Drug"] >= 150 and types["Anatomy"] >= 60 and types["Procedure"] >= 40


def test_medical_seed_classes_are_rows_of_their_own():
    rows = builders.read_seed_lexicon()
    names = {row["name"].lower() for row in rows}
    assert [c for row in rows for c in row["classes"] if c.lower() not in names] == []


def test_fashion_vocabulary_terms_and_ids():
    entries = by_name("fashion")
    navy = entries["navy blue"]
    assert navy.type == "Colour" and navy.id == entity_id("retail", "Colour", "Navy Blue") and "navy" in navy.synonyms
    shirts = entries["shirts"]
    assert shirts.type == "ArticleType" and "shirt" in shirts.synonyms
    assert "jean" not in surfaces("fashion") and "short" not in surfaces("fashion")
    assert entries["men"].type == "Gender" and "male" in entries["men"].synonyms
    assert entries["watches"].type == "ArticleType"  # also a sub-category: the article type keeps the name
    assert entries["puma"].type == "Brand" and entries["peter england"].type == "Brand"
    assert "gini & jony" in {s.lower() for s in entries["gini and jony"].synonyms}
    brands = {e.name.lower() for e in lexicon("fashion") if e.type == "Brand"}
    assert not {"and", "only", "w", "denim", "strapless"} & brands


def test_singular_handles_fashion_plurals():
    words = "Shirts Dresses Watches Scarves Accessories Booties Jeans Shorts Goods Ties".split()
    assert [builders.singular(w) for w in words] == [
        "Shirt",
        "Dress",
        "Watch",
        "Scarf",
        "Accessory",
        "Bootie",
        "Jeans",
        "Shorts",
        "Goods",
        "Tie",
    ]


def test_regenerate_ddxplus_lexicon_reproduces_shipped_file(tmp_path, shared_data):
    out = tmp_path / "ddxplus_lexicon.json"
    builders.regenerate_ddxplus_lexicon(
        shared_data / "ddxplus" / "release_conditions.json", shared_data / "ddxplus" / "release_evidences.json", out
    )
    assert out.read_text(encoding="utf-8") == builders.DDXPLUS_LEXICON.read_text(encoding="utf-8")


@pytest.mark.slow
def test_regenerate_fashion_vocabulary_reproduces_shipped_file(tmp_path, shared_data):
    out = tmp_path / "fashion_vocabulary.json"
    vocabulary = builders.regenerate_fashion_vocabulary(shared_data / "fashion" / "catalogue.csv", out)
    assert out.read_text(encoding="utf-8") == builders.FASHION_VOCABULARY.read_text(encoding="utf-8")
    assert vocabulary["products"] == 44307 and vocabulary["terms"]["Colour"]["Navy Blue"] == 1787
    assert all(brand["count"] >= 3 for brand in vocabulary["brands"].values())


def test_shipped_data_files_are_small():
    for path in (builders.DDXPLUS_LEXICON, builders.SEED_LEXICON, builders.FASHION_VOCABULARY):
        assert path.stat().st_size < 1_000_000


def test_builders_declare_how_firmly_they_type_an_entry():
    from kgmm.domains.lexicons import TypeAuthority

    hpo = by_id("hpo")
    assert (hpo["HP:0000822"].type, hpo["HP:0000822"].authority) == ("Symptom", TypeAuthority.LISTED)  # Hypertension
    assert (hpo["HP:0003326"].type, hpo["HP:0003326"].authority) == ("Symptom", TypeAuthority.DEFINED)  # Myalgia: Pain
    assert hpo["HP:0003003"].authority == TypeAuthority.DEFINED and hpo["ORPHA:558"].authority == TypeAuthority.DEFINED
    icd = by_id("icd10cm")
    assert (icd["ICD10CM:R50.9"].type, icd["ICD10CM:R50.9"].authority) == ("Symptom", TypeAuthority.DEFINED)
    assert (icd["ICD10CM:M79.1"].type, icd["ICD10CM:M79.1"].authority) == ("Disease", TypeAuthority.CLASSIFIED)
    ddxplus = by_id("ddxplus")
    assert ddxplus["DDXPLUS:pneumonia"].authority == TypeAuthority.DEFINED
    assert ddxplus["DDXPLUS:E_91"].authority == TypeAuthority.DEFINED  # a symptom question: fever
    assert (ddxplus["DDXPLUS:E_69"].type, ddxplus["DDXPLUS:E_69"].authority) == ("Finding", TypeAuthority.LISTED)
    assert {e.authority for e in lexicon("medical_seed")} == {TypeAuthority.CURATED}


def test_icd10cm_includes_notes_that_name_the_concept_become_synonyms():
    entries = by_id("icd10cm")
    assert "Hypertension" in entries["ICD10CM:I10"].synonyms  # includes: "hypertension (arterial) (benign) ..."
    assert "Diabetes" in entries["ICD10CM:E11"].synonyms  # includes: "diabetes NOS"
    assert "marijuana" not in {s.lower() for s in entries["ICD10CM:F12"].synonyms}  # an example of the content
    assert entries["ICD10CM:A53.9"].name == "Syphilis"  # no other code's inclusion term takes its name
