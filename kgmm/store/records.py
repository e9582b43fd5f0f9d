"""What every backend shares: records to and from query rows, the merging rules of the contract, and
the lookup logic of ``find_entities`` (exact ranking, then a fuzzy index over names and aliases).

A backend reads what is stored for a batch's keys, merges it here in Python, and writes the result, so
both stores follow the same rules (see :mod:`kgmm.store.base`) by construction.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from kgmm.errors import ValidationError
from kgmm.schema import PROVENANCE_EXTRACTED, Entity, EntityMatch, Mention, Relation, Source, normalize_name

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


def alias_keys(aliases: Iterable[str]) -> list[str]:
    return [key for key in dict.fromkeys(normalize_name(alias) for alias in aliases) if key]


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


def source_row(source: Source, domain: str = "") -> dict[str, Any]:
    """Return the stored properties of a source (attributes and metadata as JSON text), with the domain pack it
    was extracted with."""
    return {
        "id": source.id, "kind": str(source.kind), "text": str(source.text), "origin": str(source.origin),
        "title": str(source.title), "image_path": source.image_path, "subject": source.subject,
        "subject_type": source.subject_type, "attributes": _to_json(source, "attributes", source.attributes),
        "metadata": _to_json(source, "metadata", source.metadata), "domain": str(domain or ""),
    }


def without_sources(sources: Sequence[str], sentences: Sequence[str], retracted: set[str]) -> tuple[list[str], list[str]]:
    """Return a relation's evidence lists with the ``retracted`` sources (and the sentences aligned with them) left
    out; sentences past the sources' length, which align with none, are kept."""
    kept_sources, kept_sentences = [], []
    for position, source_id in enumerate(sources):
        if source_id not in retracted:
            kept_sources.append(source_id)
            if position < len(sentences):
                kept_sentences.append(sentences[position])
    kept_sentences += list(sentences[len(sources):])
    return kept_sources, kept_sentences


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
        "uncertain": bool(mention.uncertain), "provenance": str(mention.provenance),
        "confidence": float(mention.confidence),
    }


def mention_from_row(entity_id: str, row: dict[str, Any]) -> Mention:
    """Return a stored mention; one written before provenance existed reads as extracted, confidence 1.0."""
    provenance, confidence = row.get("provenance"), row.get("confidence")
    return Mention(
        entity_id=entity_id,
        source_id=row["source_id"],
        start=row["start_char"],
        end=row["end_char"],
        text=row["text"] or "",
        sentence=row["sentence"] or "",
        negated=bool(row["negated"]),
        uncertain=bool(row["uncertain"]),
        provenance=provenance or PROVENANCE_EXTRACTED,
        confidence=1.0 if confidence is None else float(confidence),
    )


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


_RELATION_FIELDS = attrgetter("type", "head", "tail", "confidence", "extractor", "sources", "sentences")
_ENTITY_FIELDS = attrgetter("id", "name", "type", "domain", "aliases", "ontology_ids")


@dataclass
class RelationColumns:
    """A batch of one relation type as aligned columns, one row per (head, tail): what a bulk write sends.

    Built by :func:`relation_columns`, which folds repeated keys with :func:`merge_relations`; the list
    cells are the callers' own lists where nothing needed folding, so treat them as read-only.
    """

    type: str
    head: Sequence[str]
    tail: Sequence[str]
    confidence: Sequence[float]
    extractor: Sequence[str]
    sources: Sequence[list[str]]
    sentences: Sequence[list[str]]

    def __len__(self) -> int:
        return len(self.head)

    @property
    def has_evidence(self) -> bool:
        """Whether any row has sources or sentences (else both list columns are all empty)."""
        return any(self.sources) or any(self.sentences)

    def relation(self, position: int) -> Relation:
        return Relation(self.head[position], self.type, self.tail[position], float(self.confidence[position]),
                        self.extractor[position], list(self.sources[position]), list(self.sentences[position]))

    def row(self, position: int) -> dict[str, Any]:
        """Return one row as :func:`relation_row` does."""
        return relation_row(self.relation(position))

    def take(self, positions: Sequence[int]) -> RelationColumns:
        """Return the rows at ``positions``, in that order."""
        def pick(column: Sequence) -> list:
            return [column[position] for position in positions]

        return RelationColumns(self.type, pick(self.head), pick(self.tail), pick(self.confidence), pick(self.extractor),
                               pick(self.sources), pick(self.sentences))

    @classmethod
    def of(cls, relation_type: str, relations: Iterable[Relation]) -> RelationColumns:
        relations = list(relations)
        return cls(relation_type, [r.head for r in relations], [r.tail for r in relations],
                   [float(r.confidence) for r in relations], [r.extractor for r in relations],
                   [r.sources for r in relations], [r.sentences for r in relations])


def relation_columns(relations: Iterable[Relation]) -> dict[str, RelationColumns]:
    """Group a batch by relation type into columns, folding repeated keys as :func:`merge_relations` does."""
    groups: dict[str, list[tuple]] = {}
    for row in map(_RELATION_FIELDS, relations):
        group = groups.get(row[0])
        if group is None:
            group = groups[row[0]] = []
        group.append(row)
    by_type: dict[str, RelationColumns] = {}
    for relation_type, rows in groups.items():
        _, heads, tails, confidences, extractors, sources, sentences = zip(*rows, strict=True)
        columns = RelationColumns(relation_type, heads, tails, confidences, extractors, sources, sentences)
        if len(set(zip(heads, tails, strict=True))) != len(heads) or (columns.has_evidence and _needs_folding(columns)):
            columns = _fold_columns(columns)
        by_type[relation_type] = columns
    return by_type


def _fold_columns(columns: RelationColumns) -> RelationColumns:
    """Fold the rows of repeated keys (and rows whose evidence repeats itself) with :func:`merge_relations`,
    each into the position of its key's first row."""
    counts = Counter(zip(columns.head, columns.tail, strict=True))
    repeated = {key for key, count in counts.items() if count > 1}
    where: dict[tuple[str, str], list[int]] = {}
    for position, key in enumerate(zip(columns.head, columns.tail, strict=True)):
        if key in repeated:
            where.setdefault(key, []).append(position)
    folded: dict[int, Relation] = {}
    dropped: set[int] = set()
    for positions in where.values():
        (folded[positions[0]],) = merge_relations(columns.relation(position) for position in positions).values()
        dropped.update(positions[1:])
    for position, (sources, sentences) in enumerate(zip(columns.sources, columns.sentences, strict=True)):
        if (sources or sentences) and position not in folded and position not in dropped:
            (folded[position],) = merge_relations([columns.relation(position)]).values()
    keep = [position for position in range(len(columns)) if position not in dropped] if dropped else range(len(columns))
    result = columns.take(keep)
    for index, position in enumerate(keep):
        merged = folded.get(position)
        if merged is not None:
            result.confidence[index], result.extractor[index] = merged.confidence, merged.extractor  # type: ignore[index]
            result.sources[index], result.sentences[index] = merged.sources, merged.sentences  # type: ignore[index]
    return result


def _needs_folding(columns: RelationColumns) -> bool:
    """Whether some row's evidence repeats itself (merge_evidence would change it)."""
    for sources, sentences in zip(columns.sources, columns.sentences, strict=True):
        if (sources or sentences) and merge_evidence([], [], sources, sentences) != (list(sources), list(sentences)):
            return True
    return False


@dataclass
class EntityColumns:
    """A batch of entities as aligned columns, one row per id (built by :func:`entity_columns`)."""

    id: Sequence[str]
    name: Sequence[str]
    type: Sequence[str]
    domain: Sequence[str]
    aliases: Sequence[list[str]]
    ontology_ids: Sequence[list[str]]

    def __len__(self) -> int:
        return len(self.id)

    def entity(self, position: int) -> Entity:
        return Entity(self.id[position], self.name[position], self.type[position], self.domain[position],
                      list(self.aliases[position]), list(self.ontology_ids[position]))

    def take(self, positions: Sequence[int]) -> EntityColumns:
        def pick(column: Sequence) -> list:
            return [column[position] for position in positions]

        return EntityColumns(pick(self.id), pick(self.name), pick(self.type), pick(self.domain), pick(self.aliases),
                             pick(self.ontology_ids))


def entity_columns(entities: Iterable[Entity]) -> EntityColumns:
    """Return a batch as columns, folding repeated ids as :func:`merge_entities` does."""
    rows = list(map(_ENTITY_FIELDS, entities))
    if not rows:
        return EntityColumns([], [], [], [], [], [])
    ids, names, types, domains, aliases, ontology_ids = zip(*rows, strict=True)
    columns = EntityColumns(ids, names, types, domains, aliases, ontology_ids)
    repeats = any(_repeats(values) for values in aliases if values) or any(
        _repeats(values) for values in ontology_ids if values)
    if len(set(ids)) == len(ids) and not repeats:
        return columns
    merged = list(merge_entities(
        Entity(*row[:4], list(row[4]), list(row[5])) for row in rows  # type: ignore[misc]
    ).values())
    return EntityColumns([e.id for e in merged], [e.name for e in merged], [e.type for e in merged],
                         [e.domain for e in merged], [e.aliases for e in merged], [e.ontology_ids for e in merged])


def _repeats(values: Sequence[str]) -> bool:
    return len(values) > 1 and len(set(values)) != len(values)


def adds_to_stored(sources: Sequence[str], sentences: Sequence[str], confidence: float,
                   stored_confidence: float | None) -> bool:
    """Whether an incoming relation may change the stored edge of its key: it brings evidence (which the
    stored lists may lack) or a higher confidence. When False, :func:`merge_stored_relation` returns None."""
    return bool(sources or sentences) or float(confidence) > float(stored_confidence or 0.0)


def may_change_entity(aliases: Sequence[str], ontology_ids: Sequence[str], name: str, stored_name: str | None) -> bool:
    """Whether an incoming entity may change the stored entity of its id: it brings aliases or ontology ids,
    or a name other than the stored one. When False, :func:`absorb` changes nothing."""
    return bool(aliases or ontology_ids) or bool(name and name != stored_name)


