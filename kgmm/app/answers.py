"""Questions a user asks of a stored graph, answered as plain JSON-ready dicts with their sources.

The CLI, notebooks and tests call these; each fact carries the documents/images and sentences
that stated it, and each mention its provenance ("extracted" from text, or "retrieved" by similarity).
"""

from __future__ import annotations

from kgmm.errors import EntityNotFoundError
from kgmm.schema import Entity, Relation, Source, Subgraph
from kgmm.store.base import GraphStore
from kgmm.utils import shorten


def entity_dict(entity: Entity) -> dict:
    return {
        "id": entity.id,
        "name": entity.name,
        "type": entity.type,
        "domain": entity.domain,
        "aliases": list(entity.aliases),
        "ontology_ids": list(entity.ontology_ids),
    }


def source_dict(source: Source) -> dict:
    return {"id": source.id, "kind": source.kind, "title": source.title, "origin": source.origin, "image_path": source.image_path}


def relation_dict(relation: Relation, names: dict[str, str], sources: dict[str, Source], *, max_sources: int = 3) -> dict:
    """Describe a relation with its endpoints' names and up to ``max_sources`` sources (with sentences)."""
    evidence = []
    for index, source_id in enumerate(relation.sources[:max_sources]):
        source = sources.get(source_id)
        sentence = relation.sentences[index] if index < len(relation.sentences) else ""
        evidence.append({"source": source_dict(source) if source else {"id": source_id}, "sentence": sentence})
    return {
        "head": relation.head,
        "head_name": names.get(relation.head, relation.head),
        "type": relation.type,
        "tail": relation.tail,
        "tail_name": names.get(relation.tail, relation.tail),
        "confidence": relation.confidence,
        "extractor": relation.extractor,
        "evidence_count": len(relation.sources),
        "evidence": evidence,
    }


def resolve_entity(store: GraphStore, name: str) -> Entity:
    """Return the best stored match for ``name`` (id, name or alias; case and typo tolerant)."""
    entity = store.get_entity(name)
    if entity is not None:
        return entity
    matches = store.find_entities(name, limit=1)
    if not matches:
        shown = shorten(name)
        raise EntityNotFoundError(f"no entity matches {shown!r} in {store.uri}; try `kgmm search {shown!r}` or `kgmm stats`")
    return matches[0].entity


def subgraph_dict(store: GraphStore, subgraph: Subgraph, *, max_sources: int = 3) -> dict:
    names = {e.id: e.name for e in subgraph.entities}
    source_ids = [sid for r in subgraph.relations for sid in r.sources[:max_sources]]
    sources = store.get_sources(source_ids)
    return {
        "entities": [entity_dict(e) for e in subgraph.entities],
        "relations": [relation_dict(r, names, sources, max_sources=max_sources) for r in subgraph.relations],
    }


def search(store: GraphStore, name: str, *, limit: int = 10, sentences: int = 3) -> dict:
    """Look an entity up by name and show where each match is mentioned: up to ``sentences`` distinct
    sentences (two mentions in one sentence show it once)."""
    results = []
    for match in store.find_entities(name, limit=limit):
        mentions = _distinct_sentences(store.mentions(match.entity.id, limit=4 * sentences), sentences)
        results.append(
            {
                **entity_dict(match.entity),
                "score": round(match.score, 3),
                "matched": match.matched,
                "mentions": [
                    {"text": m.text, "sentence": m.sentence, "negated": m.negated, "uncertain": m.uncertain,
                     "provenance": m.provenance, "confidence": m.confidence, "source": source_dict(s)}
                    for m, s in mentions
                ],
            }
        )
    return {"query": name, "results": results}


def _distinct_sentences(mentions: list, limit: int) -> list:
    """The first mention of each (source, sentence), at most ``limit`` of them."""
    kept: dict[tuple[str, str], tuple] = {}
    for mention, source in mentions:
        kept.setdefault((source.id if source else mention.source_id, mention.sentence), (mention, source))
    return list(kept.values())[:limit]


def neighbourhood(store: GraphStore, name: str, *, hops: int = 1, limit: int = 50) -> dict:
    """Return an entity, its neighbours within ``hops`` and the facts (with sources) joining them."""
    entity = resolve_entity(store, name)
    result = subgraph_dict(store, store.neighbors(entity.id, hops=hops, limit=limit))
    return {"entity": entity_dict(entity), "hops": hops, **result}


def path_between(store: GraphStore, source_name: str, target_name: str, *, max_hops: int = 4) -> dict:
    """Return one shortest chain of facts between two entities, or an empty path."""
    source = resolve_entity(store, source_name)
    target = resolve_entity(store, target_name)
    path = store.shortest_path(source.id, target.id, max_hops=max_hops)
    result = subgraph_dict(store, path) if path else {"entities": [], "relations": []}
    return {"source": entity_dict(source), "target": entity_dict(target), "found": path is not None, **result}


def stats_dict(store: GraphStore) -> dict:
    stats = store.stats()
    return {
        "store": store.uri,
        "entities": stats.entities,
        "relations": stats.relations,
        "documents": stats.documents,
        "images": stats.images,
        "mentions": stats.mentions,
        "retrieved_links": stats.retrieved_links,
        "entities_by_type": stats.entities_by_type,
        "relations_by_type": stats.relations_by_type,
    }
