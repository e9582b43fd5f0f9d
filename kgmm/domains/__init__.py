"""Domain packs: entity types, lexicons and the relation schema that configure extraction.

A pack is a folder with ``pack.json``. The built-in packs live beside this file; a user's own pack
is any folder with the same layout (``kgmm ingest --domain path/to/pack``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from kgmm.errors import DomainError
from kgmm.schema import is_valid_label

PACKS_DIR = Path(__file__).parent
BUILTIN_DOMAINS = ("general", "medical", "retail")


@dataclass(frozen=True)
class RelationRule:
    """One relation type of a domain schema: which entity types it joins and what signals it.

    ``triggers`` are lemmas on (or modifying) the dependency path between the two entities;
    ``dep_labels`` are dependency labels that signal the relation when they join the two directly
    ("Cupertino, California": ``appos``).
    """

    type: str
    head: tuple[str, ...]
    tail: tuple[str, ...]
    triggers: tuple[str, ...] = ()
    dep_labels: tuple[str, ...] = ()

    def allows(self, head_type: str, tail_type: str) -> bool:
        return head_type in self.head and tail_type in self.tail


@dataclass(frozen=True)
class DomainPack:
    """A parsed ``pack.json``.

    Args:
        name (str): the domain's name, used in entity ids.
        path (Path): the pack folder (lexicon files are read from it).
        entity_types (tuple[str, ...]): the types entities of this domain may have.
        statistical_labels (dict): spaCy NER label -> entity type, for labels this domain keeps.
        lexicons (tuple[str, ...]): names of registered lexicon builders (see ``kgmm.domains.lexicons``).
        negation (bool): run the clinical negation/uncertainty component.
        concepts (bool): keep noun-chunk heads that no other component typed, as ``Concept`` entities.
        relations (tuple[RelationRule, ...]): the relation schema.
        cooccurrence (dict): relation type -> confidence for same-sentence pairs with no trigger.
        subject_relations (dict): entity type -> relation type linking a source's subject to it.
        title_subject_type (str, optional): treat a titled source with no subject as being about an
            entity of this type named by its title (a product page).
        subject_anchor_types (tuple[str, ...]): entity types that stand for the subject in its text
            ("a navy shirt": the ArticleType); attributes that modify them attach with more confidence.
        attribute_hierarchy (tuple[tuple[str, str], ...]): (child type, parent type) pairs of structured
            attributes that are linked to each other when a source carries both (a taxonomy: article type
            within sub-category), by the first relation rule the pack has between the two types.
        condition_types (tuple[str, ...]): the entity types a diagnosis ranks (``Disease``), from a store's graph.
        finding_types (tuple[str, ...]): the entity types that count as a case's findings for them.
        model_labels (dict): entity type of a trained extraction model -> entity type of this pack.
        model_relations (dict): relation type of a trained extraction model -> relation type of this pack.
    """

    name: str
    path: Path
    entity_types: tuple[str, ...]
    statistical_labels: dict = field(default_factory=dict)
    lexicons: tuple[str, ...] = ()
    negation: bool = False
    concepts: bool = False
    relations: tuple[RelationRule, ...] = ()
    cooccurrence: dict = field(default_factory=dict)
    subject_relations: dict = field(default_factory=dict)
    title_subject_type: str | None = None
    subject_anchor_types: tuple[str, ...] = ()
    attribute_hierarchy: tuple[tuple[str, str], ...] = ()
    condition_types: tuple[str, ...] = ()
    finding_types: tuple[str, ...] = ()
    model_labels: dict = field(default_factory=dict)
    model_relations: dict = field(default_factory=dict)
    description: str = ""

    def rules_for(self, head_type: str, tail_type: str) -> list[RelationRule]:
        """Return the relation rules whose schema admits (head_type, tail_type)."""
        return [rule for rule in self.relations if rule.allows(head_type, tail_type)]

    def relation_types(self) -> list[str]:
        return [rule.type for rule in self.relations]


def available_domains() -> list[str]:
    return sorted(p.name for p in PACKS_DIR.iterdir() if (p / "pack.json").is_file())


@lru_cache(maxsize=16)
def load_domain(name_or_path: str) -> DomainPack:
    """Load a built-in pack by name, or a user's pack from a folder holding ``pack.json``.

    Raises:
        DomainError: no such pack, or its ``pack.json`` is malformed.
    """
    path = Path(name_or_path)
    if not (path / "pack.json").is_file():
        path = PACKS_DIR / str(name_or_path)
    if not (path / "pack.json").is_file():
        raise DomainError(
            f"no domain {name_or_path!r}; available: {', '.join(available_domains())} "
            "(or a folder with a pack.json, made by `kgmm domain init NAME`)"
        )
    try:
        raw = json.loads((path / "pack.json").read_text(encoding="utf-8"))
        return _parse_pack(raw, path)
    except (ValueError, KeyError, TypeError) as e:
        raise DomainError(f"{path / 'pack.json'}: malformed domain pack ({e}); compare with {PACKS_DIR / 'general' / 'pack.json'}") from e


def _known_types(types, entity_types: tuple[str, ...], field_name: str) -> tuple[str, ...]:
    unknown = sorted(set(types) - set(entity_types))
    if unknown:
        raise ValueError(f"{field_name} names unknown entity types {unknown}")
    return tuple(types)


def _parse_pack(raw: dict, path: Path) -> DomainPack:
    entity_types = tuple(raw["entity_types"])
    relations = tuple(
        RelationRule(
            type=r["type"],
            head=tuple(r["head"]),
            tail=tuple(r["tail"]),
            triggers=tuple(r.get("triggers", ())),
            dep_labels=tuple(r.get("dep_labels", ())),
        )
        for r in raw.get("relations", [])
    )
    for label in entity_types + tuple(r.type for r in relations):
        if not is_valid_label(label):
            raise ValueError(f"invalid label {label!r}: use letters, digits and underscores")
    for rule in relations:
        unknown = set(rule.head + rule.tail) - set(entity_types)
        if unknown:
            raise ValueError(f"relation {rule.type} names unknown entity types {sorted(unknown)}")
    hierarchy = tuple((str(child), str(parent)) for child, parent in raw.get("attribute_hierarchy", ()))
    for child, parent in hierarchy:
        if {child, parent} - set(entity_types):
            raise ValueError(f"attribute_hierarchy names unknown entity types {sorted({child, parent} - set(entity_types))}")
    for mapped in raw.get("model_labels", {}).values():
        if mapped not in entity_types:
            raise ValueError(f"model_labels maps to unknown entity type {mapped!r}")
    for mapped in raw.get("model_relations", {}).values():
        if mapped not in {r.type for r in relations}:
            raise ValueError(f"model_relations maps to unknown relation type {mapped!r}")
    return DomainPack(
        name=raw["name"],
        path=path,
        entity_types=entity_types,
        statistical_labels=dict(raw.get("statistical_labels", {})),
        lexicons=tuple(raw.get("lexicons", ())),
        negation=bool(raw.get("negation", False)),
        concepts=bool(raw.get("concepts", False)),
        relations=relations,
        cooccurrence=dict(raw.get("cooccurrence", {})),
        subject_relations=dict(raw.get("subject_relations", {})),
        title_subject_type=raw.get("title_subject_type"),
        subject_anchor_types=tuple(raw.get("subject_anchor_types", ())),
        attribute_hierarchy=hierarchy,
        condition_types=_known_types(raw.get("condition_types", ()), entity_types, "condition_types"),
        finding_types=_known_types(raw.get("finding_types", ()), entity_types, "finding_types"),
        model_labels=dict(raw.get("model_labels", {})),
        model_relations=dict(raw.get("model_relations", {})),
        description=raw.get("description", ""),
    )
