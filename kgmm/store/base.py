"""The ``GraphStore`` contract every backend implements.

Public methods validate and cast their arguments; the protected ``_method`` does the backend's work
(the shape of ``torch_geometric.data.GraphStore``). Writes are idempotent: upserting what is already
stored changes nothing, so an interrupted ingest can simply be run again.

Write order and completeness: an ingest batch writes entities, relations and mentions first and its
sources last. Mentions may therefore arrive before their source; a backend keeps such a source as a
placeholder that ``known_sources``, ``get_sources``, ``stats`` and ``mentions`` ignore until
``upsert_sources`` fills it in, so a source counts as ingested only once its whole batch was written.

Merging rules: a relation upserted again unions its sources (sentences stay aligned with sources
where they were given one-to-one) and keeps the highest confidence; an entity upserted again with a
different name keeps its first name and gains the new one as an alias.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgmm.errors import ValidationError
from kgmm.schema import (
    PROVENANCES,
    Entity,
    EntityMatch,
    GraphStats,
    Mention,
    Relation,
    Source,
    Subgraph,
    is_valid_label,
    normalize_name,
)
from kgmm.store import records
from kgmm.store.queries import portable

MAX_HOPS = 4
PAGE_SIZE = 10_000  # rows a paged read fetches at a time


@dataclass(frozen=True)
class Retraction:
    """What :meth:`GraphStore.retract_sources` took back: sources emptied back to placeholders, extracted mentions
    deleted, relations deleted (no source left) or updated (fewer sources), entities deleted (nothing left)."""

    sources: int = 0
    mentions: int = 0
    relations_removed: int = 0
    relations_updated: int = 0
    entities_removed: int = 0


def _check_label(kind: str, label: str) -> None:
    if not is_valid_label(label):
        raise ValidationError(
            f"invalid {kind} {label!r}: use letters, digits and underscores, starting with a letter "
            "(it must come from the domain pack's schema)"
        )


def _check_mention(mention: Mention) -> None:
    if mention.provenance not in PROVENANCES:
        raise ValidationError(
            f"invalid mention provenance {mention.provenance!r} ({mention.entity_id} in {mention.source_id}); "
            f"expected one of: {', '.join(PROVENANCES)}"
        )
    try:
        confidence = float(mention.confidence)
    except (TypeError, ValueError):
        confidence = float("nan")
    if not 0.0 <= confidence <= 1.0:
        raise ValidationError(
            f"mention confidence must be in [0, 1], got {mention.confidence!r} "
            f"({mention.entity_id} in {mention.source_id})"
        )


def _check_hops(hops: int) -> int:
    hops = int(hops)
    if not 1 <= hops <= MAX_HOPS:
        raise ValidationError(f"expected hops between 1 and {MAX_HOPS}, got {hops}")
    return hops


class GraphStore(ABC):
    """A knowledge graph of entities, typed relations and the sources that state them."""

    uri: str
    # Names and aliases of every entity, for fuzzy lookups: built on first use, dropped by writes.
    _alias_index: records.AliasIndex | None = None

    def upsert_sources(self, sources: Sequence[Source], *, domain: str = "") -> int:
        """Insert sources not yet stored, noting the domain pack they were extracted with; return how many were new."""
        return self._upsert_sources(list(sources), str(domain or "")) if sources else 0

    def upsert_entities(self, entities: Sequence[Entity]) -> int:
        """Insert new entities and merge aliases/ontology ids into existing ones; return how many were new."""
        for entity in entities:
            _check_label("entity type", entity.type)
        return self._upsert_entities(list(entities)) if entities else 0

    def upsert_relations(self, relations: Sequence[Relation]) -> int:
        """Insert new (head, type, tail) edges and add sources to existing ones; return how many were new."""
        spellings: dict[str, str] = {}
        for relation_type in {relation.type for relation in relations}:
            _check_label("relation type", relation_type)
            other = spellings.setdefault(relation_type.lower(), relation_type)
            if other != relation_type:  # one table in LadybugDB, two types in Neo4j: refuse on every backend
                raise ValidationError(
                    f"relation types {other!r} and {relation_type!r} differ only in case; use one spelling "
                    "in the domain pack's schema"
                )
        for relation in relations:
            if not 0.0 <= relation.confidence <= 1.0:
                raise ValidationError(f"relation confidence must be in [0, 1], got {relation.confidence}")
        return self._upsert_relations(list(relations)) if relations else 0

    def upsert_mentions(self, mentions: Sequence[Mention]) -> int:
        """Insert mentions not yet stored (key: entity, source, start, end); return how many were new.

        An extracted and a retrieved mention of one entity in one source are distinct when their spans differ
        (a retrieved one is at 0..0); a mention whose key is stored already changes nothing.
        """
        for mention in mentions:
            _check_mention(mention)
        return self._upsert_mentions(list(mentions)) if mentions else 0

    def known_sources(self, source_ids: Iterable[str]) -> set[str]:
        """Return the subset of ``source_ids`` already stored."""
        ids = list(dict.fromkeys(source_ids))
        return self._known_sources(ids) if ids else set()

    def source_domains(self, source_ids: Iterable[str]) -> dict[str, str]:
        """Return, for each of ``source_ids`` already stored, the domain pack it was extracted with ('' if unknown:
        stored by an earlier kgmm)."""
        ids = list(dict.fromkeys(source_ids))
        return self._source_domains(ids) if ids else {}

    def retract_sources(self, source_ids: Iterable[str]) -> Retraction:
        """Take back what the extraction of these sources added, so they can be extracted again (another pack,
        or a graph damaged by hand), in one transaction.

        Their extracted mentions go (retrieved image links stay); each relation loses these sources from its
        evidence and goes when none is left; an entity they touched goes when no mention or relation is left; the
        sources become placeholders, which ingest reads as not stored. Interrupted, nothing is taken back.
        """
        ids = list(dict.fromkeys(source_ids))
        return self._retract_sources(ids) if ids else Retraction()

    def sources_without_mentions(self) -> list[Source]:
        """Return the stored sources that no entity is mentioned in (those whose entities were deleted, say)."""
        return self._sources_without_mentions()

    def get_entity(self, entity_id: str) -> Entity | None:
        """Return the entity with this id, or None."""
        return self._get_entity(str(entity_id))

    def find_entities(self, name: str, *, limit: int = 5, fuzzy: bool = True) -> list[EntityMatch]:
        """Look entities up by name, alias or id, tolerant of case and (with ``fuzzy``) small typos."""
        name = str(name).strip()
        if not name:
            raise ValidationError("expected a non-empty entity name to look up")
        return self._find_entities(name, max(1, int(limit)), fuzzy)

    def neighbors(self, entity_id: str, *, hops: int = 1, limit: int = 200) -> Subgraph:
        """Return the entities within ``hops`` of ``entity_id`` and the relations among them."""
        return self.subgraph([entity_id], hops=hops, limit=limit)

    def subgraph(self, entity_ids: Sequence[str], *, hops: int = 1, limit: int = 200) -> Subgraph:
        """Return the ``hops``-neighbourhood of the seeds (at most ``limit`` entities, nearest first)."""
        return self._subgraph(list(entity_ids), _check_hops(hops), max(1, int(limit)))

    def shortest_path(self, source_id: str, target_id: str, *, max_hops: int = MAX_HOPS) -> Subgraph | None:
        """Return one shortest path (either edge direction) between two entities, or None."""
        return self._shortest_path(str(source_id), str(target_id), _check_hops(max_hops))

    def mentions(self, entity_id: str, *, limit: int = 20) -> list[tuple[Mention, Source]]:
        """Return where an entity is mentioned, with each source."""
        return self._mentions(str(entity_id), max(1, int(limit)))

    def get_sources(self, source_ids: Iterable[str]) -> dict[str, Source]:
        """Return the stored sources with these ids."""
        ids = list(dict.fromkeys(source_ids))
        return self._get_sources(ids) if ids else {}

    def get_relations(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], Relation]:
        """Return the stored relations with these ``(head, type, tail)`` keys, each with its sources and
        sentences; one query per relation type among the keys, however many keys there are.

        Raises:
            ValidationError: a key is not three strings, or its type is not a valid relation type.
        """
        by_type: dict[str, list[tuple[str, str]]] = {}
        for key in dict.fromkeys(tuple(key) for key in keys):
            if len(key) != 3 or not all(isinstance(part, str) for part in key):
                raise ValidationError(f"expected (head, type, tail) strings, got {key!r}")
            by_type.setdefault(key[1], []).append((key[0], key[2]))
        found: dict[tuple[str, str, str], Relation] = {}
        for relation_type, pairs in by_type.items():
            found.update((relation.key, relation) for relation in self._relations_between(relation_type, pairs))
        return found

    def stats(self) -> GraphStats:
        """Return counts of entities, relations, sources and mentions (``retrieved_links``: those retrieved)."""
        return self._stats()

    def cypher(self, query: str, parameters: dict[str, Any] | None = None, *, write: bool = False) -> list[dict[str, Any]]:
        """Run one raw Cypher statement (values as ``$parameters``) and return its rows as dicts.

        Read-only unless ``write``: the database itself refuses a write (a read-only transaction, or a store opened
        read-only), raising :class:`kgmm.errors.WriteRefusedError` with nothing changed.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("expected a Cypher query, got an empty string")
        return self._cypher(query, dict(parameters or {}), bool(write))

    def iter_entities(self) -> Iterator[Entity]:
        """Yield every entity."""
        return self._iter_entities()

    def iter_relations(self) -> Iterator[Relation]:
        """Yield every relation."""
        return self._iter_relations()

    def iter_sources(self) -> Iterator[Source]:
        """Yield every stored source (placeholders of unfinished batches excluded)."""
        return self._iter_sources()

    def iter_mentions(self) -> Iterator[Mention]:
        """Yield every mention (provenance edge), whatever its source's state."""
        return self._iter_mentions()

    def to_networkx(self):
        """Return the graph as a ``networkx.MultiDiGraph`` (entities as nodes, relations as keyed edges).

        For PyG tensors, the layer above builds them: :func:`kgmm.graphdata.store_to_data` (or
        ``store_to_hetero_data``).
        """
        from kgmm.store.nxgraph import to_networkx

        return to_networkx(self)

    def artifact_dir(self, name: str) -> Path:
        """Return the folder where kgmm keeps what it derives from this store (``name``: e.g. ``"qa-model"``), not
        created: a server's is under kgmm's cache folder, keyed by its URI and database."""
        import hashlib

        from kgmm.utils import cache_dir

        key = f"{self.uri}|{getattr(self, 'database', None) or ''}"
        return cache_dir() / "stores" / hashlib.sha1(key.encode("utf-8")).hexdigest()[:16] / name

    def release_memory(self) -> None:  # noqa: B027  (a server backend holds nothing in this process)
        """Give back memory the backend keeps between transactions; called by ingest after each committed batch."""

    def close(self) -> None:  # noqa: B027  (a backend without a handle has nothing to release)
        """Release the database handle."""

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @abstractmethod
    def _upsert_sources(self, sources: list[Source], domain: str) -> int: ...

    @abstractmethod
    def _source_domains(self, source_ids: list[str]) -> dict[str, str]: ...

    @abstractmethod
    def _retract_sources(self, source_ids: list[str]) -> Retraction: ...

    @abstractmethod
    def _sources_without_mentions(self) -> list[Source]: ...

    @abstractmethod
    def _upsert_entities(self, entities: list[Entity]) -> int: ...

    @abstractmethod
    def _upsert_relations(self, relations: list[Relation]) -> int: ...

    @abstractmethod
    def _upsert_mentions(self, mentions: list[Mention]) -> int: ...

    @abstractmethod
    def _known_sources(self, source_ids: list[str]) -> set[str]: ...

    @abstractmethod
    def _get_entity(self, entity_id: str) -> Entity | None: ...

    def _find_entities(self, name: str, limit: int, fuzzy: bool) -> list[EntityMatch]:
        """Exact hits (id, name, alias) ranked by :func:`records.rank_exact_matches`, then fuzzy ones from an
        in-process index of every name and alias (the same on every backend)."""
        key = normalize_name(name)
        matches = records.rank_exact_matches(self._entity_rows_by_key(name, key, limit + records.EXACT_MATCH_SLACK), key)
        if fuzzy and key and len(matches) < limit:
            if self._alias_index is None:
                self._alias_index = records.AliasIndex.build(self._entity_name_rows())
            best = self._alias_index.best(key, limit - len(matches), {m.entity.id for m in matches})
            entities = self._entities_by_id([entity_id for entity_id, _, _ in best])
            matches += [EntityMatch(entity=entities[entity_id], score=score, matched=surface)
                        for entity_id, score, surface in best if entity_id in entities]
        return matches[:limit]

    @abstractmethod
    def _entity_rows_by_key(self, raw: str, key: str, limit: int) -> list[dict[str, Any]]:
        """Rows (id, name, type, domain, aliases, ontology_ids) of the entities whose id is ``raw`` or whose
        normalised name or alias is ``key``, at most ``limit``."""

    @abstractmethod
    def _entity_name_rows(self) -> list[dict[str, Any]]:
        """Rows (id, name, aliases) of every entity."""

    @abstractmethod
    def _entities_by_id(self, entity_ids: Sequence[str]) -> dict[str, Entity]: ...

    @abstractmethod
    def _subgraph(self, entity_ids: list[str], hops: int, limit: int) -> Subgraph: ...

    @abstractmethod
    def _shortest_path(self, source_id: str, target_id: str, max_hops: int) -> Subgraph | None: ...

    @abstractmethod
    def _mentions(self, entity_id: str, limit: int) -> list[tuple[Mention, Source]]: ...

    @abstractmethod
    def _get_sources(self, source_ids: list[str]) -> dict[str, Source]: ...

    @abstractmethod
    def _relations_between(self, relation_type: str, pairs: list[tuple[str, str]]) -> list[Relation]:
        """The stored edges of one type among the (head id, tail id) ``pairs``, in one query."""

    @abstractmethod
    def _stats(self) -> GraphStats: ...

    @abstractmethod
    def _cypher(self, query: str, parameters: dict[str, Any], write: bool) -> list[dict[str, Any]]: ...

    @abstractmethod
    def _iter_entities(self) -> Iterator[Entity]: ...

    @abstractmethod
    def _iter_relations(self) -> Iterator[Relation]: ...

    @abstractmethod
    def _rows(self, query: str, parameters: dict[str, Any], *, action: str = "read") -> list[dict[str, Any]]:
        """Run one read query; return its rows as dicts (``action`` names it in an error)."""

    def _keyset_pages(self, query: str, key: str, *, action: str) -> Iterator[list[dict[str, Any]]]:
        """Yield the pages of a keyset-paged ``query`` (``$after``, ``$limit``; rows ordered by ``key``)."""
        after = ""
        while page := self._rows(query, {"after": after, "limit": PAGE_SIZE}, action=action):
            yield page
            after = page[-1][key]

    def _iter_sources(self) -> Iterator[Source]:
        for page in self._keyset_pages(portable.source_page(), "source_id", action="read sources"):
            yield from (records.source_from_row(row) for row in page)

    @abstractmethod
    def _iter_mentions(self) -> Iterator[Mention]: ...
