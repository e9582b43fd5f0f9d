"""A tiny hand-built medical graph the store tests share."""

from __future__ import annotations

from kgmm.schema import Entity, Mention, Relation, Source
from kgmm.store.base import GraphStore

METFORMIN = "medical:drug:metformin"
INSULIN = "medical:drug:insulin"
DIABETES = "medical:disease:diabetes"
THIRST = "medical:symptom:thirst"
FLU = "medical:disease:influenza"
KIDNEY = "medical:anatomy:kidney"

DOC_A = Source.document("Metformin treats diabetes.", "notes/a.txt", title="a.txt")
DOC_B = Source.document("Insulin treats diabetes. Diabetes causes thirst.", "notes/b.txt", title="b.txt")
IMAGE = Source(id="img:xray1", kind="image", text="Kidney ultrasound, no stones.", origin="images.csv#1",
               image_path="/data/xray1.png", metadata={"modality": "US"})


def tiny_entities() -> list[Entity]:
    return [
        Entity(METFORMIN, "Metformin", "Drug", "medical", aliases=["Glucophage"]),
        Entity(INSULIN, "Insulin", "Drug", "medical"),
        Entity(DIABETES, "Diabetes", "Disease", "medical", aliases=["diabetes mellitus"], ontology_ids=["ICD10CM:E11"]),
        Entity(THIRST, "Thirst", "Symptom", "medical", aliases=["polydipsia"]),
        Entity(FLU, "Influenza", "Disease", "medical", aliases=["flu"]),
        Entity(KIDNEY, "Kidney", "Anatomy", "medical"),
    ]


def tiny_relations() -> list[Relation]:
    return [
        Relation(METFORMIN, "TREATS", DIABETES, 0.8, "dep_pattern", [DOC_A.id], ["Metformin treats diabetes."]),
        Relation(INSULIN, "TREATS", DIABETES, 0.7, "dep_pattern", [DOC_B.id], ["Insulin treats diabetes."]),
        Relation(DIABETES, "HAS_SYMPTOM", THIRST, 0.6, "dep_pattern", [DOC_B.id], ["Diabetes causes thirst."]),
    ]


def tiny_mentions() -> list[Mention]:
    return [
        Mention(METFORMIN, DOC_A.id, 0, 9, "Metformin", "Metformin treats diabetes."),
        Mention(DIABETES, DOC_A.id, 17, 25, "diabetes", "Metformin treats diabetes."),
        Mention(INSULIN, DOC_B.id, 0, 7, "Insulin", "Insulin treats diabetes."),
        Mention(DIABETES, DOC_B.id, 15, 23, "diabetes", "Insulin treats diabetes."),
        Mention(THIRST, DOC_B.id, 41, 47, "thirst", "Diabetes causes thirst.", negated=False, uncertain=True),
        Mention(KIDNEY, IMAGE.id, 0, 6, "Kidney", "Kidney ultrasound, no stones."),
    ]


def write_batch(store: GraphStore) -> tuple[int, int, int, int]:
    """Write the tiny batch in ingest's order: entities, relations, mentions, then sources."""
    return (
        store.upsert_entities(tiny_entities()),
        store.upsert_relations(tiny_relations()),
        store.upsert_mentions(tiny_mentions()),
        store.upsert_sources([DOC_A, DOC_B, IMAGE]),
    )
