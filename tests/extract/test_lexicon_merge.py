"""merge_lexicons: the firmest source decides a concept's type; the cache key follows the code that builds it."""

from __future__ import annotations

from kgmm.domains import lexicon_index as lexicon_module
from kgmm.domains import load_domain
from kgmm.domains.lexicon_index import merge_lexicons
from kgmm.domains.lexicons import LexiconEntry, TypeAuthority

MEDICAL_TYPES = ("Disease", "Symptom", "Drug", "Finding", "Anatomy", "Procedure")

# Four hand-built lexicons shaped like the medical pack's: a phenotype list, a disease classification, a
# questionnaire (conditions, symptoms and history items) and a curated list.
PHENOTYPES = [
    LexiconEntry("HP:1", "Hypertension", "Symptom", authority=TypeAuthority.LISTED),
    LexiconEntry("HP:2", "Myalgia", "Symptom", ("Muscle pain",), authority=TypeAuthority.DEFINED),  # under Pain
    LexiconEntry("HP:3", "Glaucoma", "Symptom", authority=TypeAuthority.LISTED),
    LexiconEntry("HP:4", "Stroke", "Symptom", authority=TypeAuthority.LISTED),
]
CLASSIFICATION = [
    LexiconEntry("ICD:I10", "Essential hypertension", "Disease", ("hypertension",), authority=TypeAuthority.CLASSIFIED),
    LexiconEntry("ICD:M79.1", "Myalgia", "Disease", authority=TypeAuthority.CLASSIFIED),
    LexiconEntry("ICD:H40", "Glaucoma", "Disease", authority=TypeAuthority.CLASSIFIED),
    LexiconEntry("ICD:E11", "Type 2 diabetes mellitus", "Disease", ("Diabetes",), authority=TypeAuthority.CLASSIFIED),
    LexiconEntry("ICD:R50", "Fever", "Symptom", authority=TypeAuthority.DEFINED),
]
QUESTIONNAIRE = [
    LexiconEntry("Q:flu", "Influenza", "Disease", authority=TypeAuthority.DEFINED),
    LexiconEntry("Q:E_69", "Diabetes", "Finding", authority=TypeAuthority.LISTED),
    LexiconEntry("Q:E_107", "Stroke", "Finding", authority=TypeAuthority.LISTED),
    LexiconEntry("Q:E_91", "Fever", "Symptom", authority=TypeAuthority.DEFINED),
]
CURATED = [LexiconEntry("seed:glaucoma", "Glaucoma", "Procedure", authority=TypeAuthority.CURATED)]


def _types(*lexicons) -> dict[str, str]:
    index = merge_lexicons(list(lexicons), type_order=MEDICAL_TYPES)
    return {entry.name: entry.type for entry in index.entries.values()}


def test_merge_lexicons_disease_classification_outranks_phenotype_list():
    types = _types(PHENOTYPES, CLASSIFICATION, QUESTIONNAIRE)
    assert types["Hypertension"] == "Disease"  # named by the phenotype list, a synonym of the classification's I10
    assert types["Glaucoma"] == "Disease"


def test_merge_lexicons_disease_classification_outranks_history_item():
    assert _types(PHENOTYPES, CLASSIFICATION, QUESTIONNAIRE)["Diabetes"] == "Disease"


def test_merge_lexicons_defined_symptom_outranks_body_system_code():
    assert _types(PHENOTYPES, CLASSIFICATION, QUESTIONNAIRE)["Myalgia"] == "Symptom"


def test_merge_lexicons_equal_authority_falls_back_to_majority_then_type_order():
    types = _types(PHENOTYPES, CLASSIFICATION, QUESTIONNAIRE)
    assert types["Stroke"] == "Symptom"  # LISTED Symptom vs LISTED Finding: Symptom comes first
    assert types["Fever"] == "Symptom" and types["Influenza"] == "Disease"
    majority = [
        [LexiconEntry("a:x", "Xeroderma", "Symptom")],
        [LexiconEntry("b:x", "Xeroderma", "Finding")],
        [LexiconEntry("c:x", "Xeroderma", "Finding")],
    ]
    assert _types(*majority) == {"Xeroderma": "Finding"}


def test_merge_lexicons_curated_list_outranks_every_source():
    assert _types(PHENOTYPES, CLASSIFICATION, CURATED)["Glaucoma"] == "Procedure"


def test_merge_lexicons_keeps_ids_phrases_and_the_deciding_authority():
    index = merge_lexicons([PHENOTYPES, CLASSIFICATION, QUESTIONNAIRE], type_order=MEDICAL_TYPES)
    hypertension = index.entries["HP:1"]
    assert hypertension.authority == TypeAuthority.CLASSIFIED and "ICD:I10" not in hypertension.ontology_ids
    assert index.phrases["hypertension"] == "HP:1" and index.phrases["essential hypertension"] == "ICD:I10"
    assert index.phrases["diabetes"] == "Q:E_69" and index.phrases["muscle pain"] == "HP:2"
    assert "ICD:M79.1" in index.entries["HP:2"].ontology_ids


def test_lexicon_cache_key_follows_the_building_code(tmp_path, monkeypatch):
    pack_dir = tmp_path / "tiny"
    pack_dir.mkdir()
    (pack_dir / "pack.json").write_text(
        '{"name": "tiny", "entity_types": ["Disease", "Symptom"], "lexicons": ["lexicon.tsv"]}', encoding="utf-8"
    )
    (pack_dir / "lexicon.tsv").write_text("type\tname\tsynonyms\tclass\nDisease\tFrobnitis\t\t\n", encoding="utf-8")
    monkeypatch.setenv("KGMM_CACHE_DIR", str(tmp_path / "cache"))
    pack = load_domain(str(pack_dir))
    index = lexicon_module.load_lexicon_index(pack)
    assert index.entries["tiny:disease:frobnitis"].authority == TypeAuthority.CURATED
    first = {p.name for p in (tmp_path / "cache" / "lexicons").iterdir()}
    assert lexicon_module.load_lexicon_index(pack) == index  # read back from the cache
    assert {p.name for p in (tmp_path / "cache" / "lexicons").iterdir()} == first

    monkeypatch.setattr(lexicon_module, "_index_code", lambda: ["changed builder code"])
    lexicon_module.load_lexicon_index(pack)
    assert len({p.name for p in (tmp_path / "cache" / "lexicons").iterdir()} - first) == 1
