"""What every backend shares: records to and from query rows, the merging rules of the contract, and
the lookup logic of ``find_entities`` (exact ranking, then a fuzzy index over names and aliases).

A backend reads what is stored for a batch's keys, merges it here in Python, and writes the result, so
both stores follow the same rules (see :mod:`kgmm.store.base`) by construction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kgmm.errors import ValidationError
from kgmm.schema import Entity, EntityMatch, Mention, Relation, Source, normalize_name

SOURCE_COLUMNS = (
    "id", "kind", "text", "origin", "title", "image_path", "subject", "subject_type", "attributes", "metadata",
)
FUZZY_CUTOFF = 75.0
FUZZY_CEILING = 0.99  # 1.0 is kept for exact matches
# Exact hits are ranked (name before alias before id) after the query, so it returns a few spare rows.
EXACT_MATCH_SLACK = 100


def union(first: Iterable[str], second: Iterable[str]) -> list[str]:
    """Return the order-stable union of two string lists."""
    return list(dict.fromkeys([*first, *second]))


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def alias_keys(aliases: Iterable[str]) -> list[str]:
    return [key for key in dict.fromkeys(normalize_name(alias) for alias in aliases) if key]


# ---- rows <-> records -------------------------------------------------------------------------
def entity_from_row(row: dict[str, Any]) -> Entity:
    return Entity(
        id=row["id"],
        name=row["name"] or "",
        type=row["type"] or "",
        domain=row["domain"] or "",
        aliases=list(row["aliases"] or []),
        ontology_ids=list(row["ontology_ids"] or []),
    )


def entity_row(entity: Entity) -> dict[str, Any]:
    """Return the stored properties of a new entity (with the normalised keys lookups use)."""
    return {
        "id": entity.id, "name": str(entity.name), "type": entity.type, "domain": str(entity.domain),
        "aliases": [str(a) for a in entity.aliases], "ontology_ids": [str(o) for o in entity.ontology_ids],
        "name_key": normalize_name(entity.name), "alias_keys": alias_keys(entity.aliases),
    }


def source_from_row(row: dict[str, Any], prefix: str = "source_") -> Source:
    def value(column: str) -> Any:
        return row[prefix + column]

    return Source(
        id=value("id"),
        kind=value("kind"),
        text=value("text") or "",
        origin=value("origin") or "",
        title=value("title") or "",
        image_path=value("image_path"),
        subject=value("subject"),
        subject_type=value("subject_type"),
        attributes=json.loads(value("attributes") or "{}"),
        metadata=json.loads(value("metadata") or "{}"),
    )


def _to_json(source: Source, name: str, value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"source {source.id!r}: {name} must be JSON-serialisable ({e})") from e


def source_row(source: Source) -> dict[str, Any]:
    """Return the stored properties of a source (attributes and metadata as JSON text)."""
    return {
        "id": source.id, "kind": str(source.kind), "text": str(source.text), "origin": str(source.origin),
        "title": str(source.title), "image_path": source.image_path, "subject": source.subject,
        "subject_type": source.subject_type, "attributes": _to_json(source, "attributes", source.attributes),
        "metadata": _to_json(source, "metadata", source.metadata),
    }


def relation_from_row(row: dict[str, Any]) -> Relation:
    return Relation(
        head=row["head"],
        type=row["type"],
        tail=row["tail"],
        confidence=float(row["confidence"] if row["confidence"] is not None else 0.0),
        extractor=row["extractor"] or "",
        sources=list(row["sources"] or []),
        sentences=list(row["sentences"] or []),
    )


def relation_row(relation: Relation) -> dict[str, Any]:
    """Return a relation as a row keyed by its two ends."""
    return {
        "head": relation.head, "tail": relation.tail, "confidence": float(relation.confidence),
        "extractor": str(relation.extractor), "sources": [str(s) for s in relation.sources],
        "sentences": [str(s) for s in relation.sentences],
    }


def mention_key(mention: Mention) -> tuple[str, str, int, int]:
    return (mention.entity_id, mention.source_id, int(mention.start), int(mention.end))


def mention_row(key: tuple[str, str, int, int], mention: Mention) -> dict[str, Any]:
    entity_id, source_id, start, end = key
    return {
        "entity_id": entity_id, "source_id": source_id, "start_char": start, "end_char": end,
        "text": str(mention.text), "sentence": str(mention.sentence), "negated": bool(mention.negated),
        "uncertain": bool(mention.uncertain),
    }


def mention_from_row(entity_id: str, row: dict[str, Any]) -> Mention:
    return Mention(
        entity_id=entity_id,
        source_id=row["source_id"],
        start=row["start_char"],
        end=row["end_char"],
        text=row["text"] or "",
        sentence=row["sentence"] or "",
        negated=bool(row["negated"]),
        uncertain=bool(row["uncertain"]),
    )


# ---- merging rules --------------------------------------------------------------------------
def merge_evidence(
    sources: list[str], sentences: list[str], new_sources: Iterable[str], new_sentences: Iterable[str]
) -> tuple[list[str], list[str]]:
    """Return the union of two relations' sources and sentences.

    When both sides keep one sentence per source, a new source brings its own sentence along, so the
    lists stay aligned; otherwise each list is an order-stable union of its own.
    """
    new_sources, new_sentences = list(new_sources), list(new_sentences)
    if len(sources) == len(sentences) and len(new_sources) == len(new_sentences):
        merged_sources, merged_sentences = list(sources), list(sentences)
        seen = set(merged_sources)
        for source, sentence in zip(new_sources, new_sentences, strict=True):
            if source not in seen:
                seen.add(source)
                merged_sources.append(source)
                merged_sentences.append(sentence)
        return merged_sources, merged_sentences
    return union(sources, new_sources), union(sentences, new_sentences)


def merge_relations(relations: Iterable[Relation]) -> dict[tuple[str, str, str], Relation]:
    """Fold repeated (head, type, tail) keys of one batch into one relation each."""
    merged: dict[tuple[str, str, str], Relation] = {}
    for relation in relations:
        known = merged.get(relation.key)
        if known is None:
            sources, sentences = merge_evidence([], [], relation.sources, relation.sentences)
            merged[relation.key] = Relation(
                head=relation.head,
                type=relation.type,
                tail=relation.tail,
                confidence=float(relation.confidence),
                extractor=relation.extractor,
                sources=sources,
                sentences=sentences,
            )
        else:
            known.confidence = max(known.confidence, float(relation.confidence))
            known.sources, known.sentences = merge_evidence(
                known.sources, known.sentences, relation.sources, relation.sentences
            )
    return merged


def merge_stored_relation(stored: dict[str, Any], row: dict[str, Any]) -> dict[str, Any] | None:
    """Return the stored edge ``stored`` merged with the incoming ``row`` (both relation rows), or None
    when the incoming one adds nothing."""
    sources, sentences = merge_evidence(
        list(stored["sources"] or []), list(stored["sentences"] or []), row["sources"], row["sentences"]
    )
    confidence = max(float(stored["confidence"] or 0.0), row["confidence"])
    if (sources == list(stored["sources"] or []) and sentences == list(stored["sentences"] or [])
            and confidence == float(stored["confidence"] or 0.0)):
        return None
    return {"head": row["head"], "tail": row["tail"], "confidence": confidence, "sources": sources,
            "sentences": sentences}


def merge_entities(entities: Iterable[Entity]) -> dict[str, Entity]:
    """Fold repeated ids of one batch into one entity each (first name and type win)."""
    merged: dict[str, Entity] = {}
    for entity in entities:
        known = merged.get(entity.id)
        if known is None:
            merged[entity.id] = Entity(
                id=entity.id,
                name=entity.name,
                type=entity.type,
                domain=entity.domain,
                aliases=union(entity.aliases, ()),
                ontology_ids=union(entity.ontology_ids, ()),
            )
        else:
            absorb(known, entity)
    return merged


def absorb(known: Entity, incoming: Entity) -> bool:
    """Merge ``incoming``'s aliases and ontology ids into ``known``; a different name becomes an alias."""
    extra = [incoming.name] if incoming.name and incoming.name != known.name else []
    aliases = union(known.aliases, [*incoming.aliases, *extra])
    ontology_ids = union(known.ontology_ids, incoming.ontology_ids)
    changed = aliases != known.aliases or ontology_ids != known.ontology_ids
    known.aliases, known.ontology_ids = aliases, ontology_ids
    return changed


def entity_list_update(entity: Entity) -> dict[str, Any]:
    """Return the merged lists of a stored entity, as written back by an update."""
    return {"id": entity.id, "aliases": entity.aliases, "ontology_ids": entity.ontology_ids,
            "alias_keys": alias_keys(entity.aliases)}


# ---- lookups ----------------------------------------------------------------------------------
def rank_exact_matches(rows: Iterable[dict[str, Any]], key: str) -> list[EntityMatch]:
    """Rank the entities an exact lookup returned: by name, then by alias, then by id."""
    ranked = []
    for row in rows:
        entity = entity_from_row(row)
        if normalize_name(entity.name) == key and key:
            ranked.append((0, entity, entity.name))
        elif key and (alias := next((a for a in entity.aliases if normalize_name(a) == key), None)) is not None:
            ranked.append((1, entity, alias))
        else:
            ranked.append((2, entity, entity.id))
    ranked.sort(key=lambda item: (item[0], item[1].id))
    return [EntityMatch(entity=entity, score=1.0, matched=matched) for _, entity, matched in ranked]


@dataclass
class AliasIndex:
    """Normalised names and aliases of every entity, for fuzzy lookups."""

    keys: list[str] = field(default_factory=list)
    refs: list[list[tuple[str, str]]] = field(default_factory=list)  # per key: (entity id, surface form)

    @classmethod
    def build(cls, rows: Iterable[dict[str, Any]]) -> AliasIndex:
        """Build the index from rows of entity id, name and aliases."""
        positions: dict[str, int] = {}
        index = cls()
        for row in rows:
            for surface in [row["name"] or "", *(row["aliases"] or [])]:
                key = normalize_name(surface)
                if not key:
                    continue
                position = positions.get(key)
                if position is None:
                    position = positions[key] = len(index.keys)
                    index.keys.append(key)
                    index.refs.append([])
                if all(ref[0] != row["id"] for ref in index.refs[position]):
                    index.refs[position].append((row["id"], surface))
        return index

    def best(self, key: str, limit: int, exclude: set[str]) -> list[tuple[str, float, str]]:
        """Return up to ``limit`` (entity id, score in [0, 1), surface form) close to ``key``, best first."""
        from rapidfuzz import fuzz, process

        best: dict[str, tuple[float, str]] = {}
        candidates = process.extract(key, self.keys, scorer=fuzz.WRatio, limit=limit * 4 + 8, score_cutoff=FUZZY_CUTOFF)
        for _, score, position in candidates:
            for entity_id, surface in self.refs[position]:
                if entity_id not in exclude and score > best.get(entity_id, (-1.0, ""))[0]:
                    best[entity_id] = (score, surface)
        chosen = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
        return [(entity_id, min(FUZZY_CEILING, score / 100.0), surface) for entity_id, (score, surface) in chosen]
