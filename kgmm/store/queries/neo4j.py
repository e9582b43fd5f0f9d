"""The Cypher of the Neo4j backend: Neo4j 5 syntax, as documented by Neo4j, sent over Bolt.

An entity is a node labelled ``:Entity`` plus its type (``:Entity:Drug``); a relation is a typed
relationship (``:TREATS``); a source is a ``:Source`` node, and ``(:Entity)-[:MENTIONED_IN]->(:Source)``
keeps provenance. Labels and relationship types reach query text only through :func:`label`, which
checks them; every value travels as a parameter (``UNWIND $rows AS row``).
"""

from __future__ import annotations

from kgmm.errors import ValidationError
from kgmm.schema import PROVENANCE_EXTRACTED, is_valid_label
from kgmm.store.queries.portable import (  # noqa: F401  (re-exported: the shared queries of both dialects)
    ENTITY,
    ENTITY_FIELDS,
    MENTIONED_IN,
    SOURCE,
    SOURCE_COLUMNS,
    SOURCE_FIELDS,
    complete_source_ids,
    count_entities_by_type,
    count_mentions,
    count_sources_by_kind,
    entities_by_id,
    entity_names,
    existing_entity_ids,
    existing_source_ids,
    mention_keys_of_sources,
    source_page,
    sources_by_id,
    sources_without_mentions,
)

RESERVED = frozenset((ENTITY, SOURCE, MENTIONED_IN))
RESERVED_KEYS = frozenset(name.lower() for name in RESERVED)

# Mentions written before provenance existed lack both properties: they read as extracted, confidence 1.0.
_MENTION_PROVENANCE_FIELDS = (
    f"coalesce(m.provenance, '{PROVENANCE_EXTRACTED}') AS provenance, coalesce(m.confidence, 1.0) AS confidence"
)
RELATION_FIELDS = (
    "a.id AS head, type(r) AS type, b.id AS tail, r.confidence AS confidence, r.extractor AS extractor, "
    "r.sources AS sources, r.sentences AS sentences"
)


def label(name: str, *, kind: str = "label") -> str:
    """Return ``name`` quoted as a label or relationship type, after checking it may reach query text.

    Raises:
        ValidationError: when it is not a plain identifier, or is one of the store's own names.
    """
    if not isinstance(name, str) or not is_valid_label(name):
        raise ValidationError(f"invalid {kind} {name!r}: use letters, digits and underscores, starting with a letter")
    if name.lower() in RESERVED_KEYS:  # case-insensitively, as in the embedded store
        raise ValidationError(
            f"{kind} {name!r} is reserved by the store ({', '.join(sorted(RESERVED))}); "
            "rename it in the domain pack's schema"
        )
    return f"`{name}`"


SCHEMA = (
    f"CREATE CONSTRAINT kgmm_entity_id IF NOT EXISTS FOR (e:{ENTITY}) REQUIRE e.id IS UNIQUE",
    f"CREATE CONSTRAINT kgmm_source_id IF NOT EXISTS FOR (s:{SOURCE}) REQUIRE s.id IS UNIQUE",
    f"CREATE INDEX kgmm_entity_name_key IF NOT EXISTS FOR (e:{ENTITY}) ON (e.name_key)",
    f"CREATE INDEX kgmm_entity_type IF NOT EXISTS FOR (e:{ENTITY}) ON (e.type)",
)
REQUIRED_CONSTRAINTS = ((ENTITY, "id"), (SOURCE, "id"))


def show_constraints() -> str:
    return "SHOW CONSTRAINTS YIELD labelsOrTypes, properties, type RETURN labelsOrTypes, properties, type"


def server_components() -> str:
    return "CALL dbms.components() YIELD name, versions, edition RETURN name, versions, edition"


# Rows travel as lists rather than maps: the driver packs no keys, about half the cost a row.
ENTITY_ROW = ("id", "name", "type", "domain", "aliases", "ontology_ids", "name_key", "alias_keys")


def stored_entity_keys() -> str:
    """Return which ids of ``$rows`` (``[id, name, has_lists]``) are stored entities, and which of those the
    incoming entity may change (it brings lists, or a name other than the stored one)."""
    return (
        f"UNWIND $rows AS row MATCH (e:{ENTITY} {{id: row[0]}}) "
        "RETURN collect(e.id) AS present, "
        "collect(CASE WHEN row[2] OR (row[1] <> '' AND e.name <> row[1]) THEN e.id END) AS changing"
    )


def create_entities(entity_type: str) -> str:
    """Create the entities of one type from ``$rows`` (lists in the order of ``ENTITY_ROW``; a null list is
    not stored). The caller has checked in the same transaction that none is stored, and the uniqueness
    constraint on ``Entity.id`` refuses a twin from a concurrent writer (MERGE with two labels cannot use
    that index on every server)."""
    properties = ", ".join(f"{name}: row[{position}]" for position, name in enumerate(ENTITY_ROW))
    return f"UNWIND $rows AS row CREATE (e:{ENTITY}:{label(entity_type, kind='entity type')} {{{properties}}})"


def update_entity_lists() -> str:
    """Set the merged alias and ontology-id lists of stored entities from ``$rows``."""
    return (
        f"UNWIND $rows AS row MATCH (e:{ENTITY} {{id: row.id}}) "
        "SET e.aliases = row.aliases, e.ontology_ids = row.ontology_ids, e.alias_keys = row.alias_keys"
    )


def write_sources() -> str:
    """Create or complete (a placeholder written with its mentions) the sources of ``$rows``."""
    return f"UNWIND $rows AS row MERGE (s:{SOURCE} {{id: row.id}}) SET s += row"


def create_source_placeholders() -> str:
    """Create bare sources (id only) for the ids in ``$ids``, for mentions written before their source."""
    return f"UNWIND $ids AS key MERGE (s:{SOURCE} {{id: key}})"


def create_mentions() -> str:
    return (
        f"UNWIND $rows AS row MATCH (e:{ENTITY} {{id: row.entity_id}}) MATCH (s:{SOURCE} {{id: row.source_id}}) "
        f"CREATE (e)-[:{MENTIONED_IN} {{start_char: row.start_char, end_char: row.end_char, text: row.text, "
        "sentence: row.sentence, negated: row.negated, uncertain: row.uncertain, provenance: row.provenance, "
        "confidence: row.confidence}]->(s)"
    )


def create_relations(relation_type: str) -> str:
    """Create the edges of one type from ``$rows`` (``[head, tail, confidence, extractor, sources, sentences]``,
    a null list is not stored); return how many found both ends.

    The caller has checked in the same transaction that none is stored; ``MERGE`` still keeps a concurrent
    writer from adding a parallel twin of a new edge.
    """
    return (
        f"UNWIND $rows AS row MATCH (a:{ENTITY} {{id: row[0]}}) MATCH (b:{ENTITY} {{id: row[1]}}) "
        f"MERGE (a)-[r:{label(relation_type, kind='relation type')}]->(b) "
        "ON CREATE SET r.confidence = row[2], r.extractor = row[3], r.sources = row[4], r.sentences = row[5] "
        "RETURN count(*) AS n"
    )


def create_plain_relations(relation_type: str) -> str:
    """Like :func:`create_relations` for edges without evidence that share ``$confidence`` and ``$extractor``
    (a bulk load of triples), grouped by head: ``$rows`` holds ``[head, [tail, ...]]``, so each head is
    sent and looked up once."""
    return (
        f"UNWIND $rows AS row MATCH (a:{ENTITY} {{id: row[0]}}) UNWIND row[1] AS tail "
        f"MATCH (b:{ENTITY} {{id: tail}}) "
        f"MERGE (a)-[r:{label(relation_type, kind='relation type')}]->(b) "
        "ON CREATE SET r.confidence = $confidence, r.extractor = $extractor "
        "RETURN count(*) AS n"
    )


def any_entity() -> str:
    """Return one row when any entity is stored (so a first load can skip looking its keys up)."""
    return f"MATCH (e:{ENTITY}) RETURN e.id AS id LIMIT 1"


def any_relation(relation_type: str) -> str:
    """Return one row when any edge of this type is stored."""
    return f"MATCH (a:{ENTITY})-[r:{label(relation_type, kind='relation type')}]->(b:{ENTITY}) RETURN 1 AS found LIMIT 1"


def stored_relation_keys(relation_type: str) -> str:
    """Return which rows of ``$rows`` (``[head, tail, i, has_evidence, confidence]``) are stored edges of one
    type (their ``i``), and the stored edge of each row that may change it (it brings evidence or a higher
    confidence)."""
    return (
        f"UNWIND $rows AS row MATCH (a:{ENTITY} {{id: row[0]}})-[r:{label(relation_type, kind='relation type')}]->"
        f"(b:{ENTITY} {{id: row[1]}}) "
        "RETURN collect(row[2]) AS present, "
        "collect(CASE WHEN row[3] OR coalesce(r.confidence, 0.0) < row[4] THEN "
        "{i: row[2], confidence: r.confidence, sources: r.sources, sentences: r.sentences} END) AS stored"
    )


def relations_between_pairs(relation_type: str) -> str:
    """Return the stored edges of one type among the pairs in ``$rows`` (a list of {head, tail}), with evidence."""
    return (
        f"UNWIND $rows AS row MATCH (a:{ENTITY} {{id: row.head}})-[r:{label(relation_type, kind='relation type')}]->"
        f"(b:{ENTITY} {{id: row.tail}}) RETURN row.head AS head, row.tail AS tail, r.confidence AS confidence, "
        "r.extractor AS extractor, r.sources AS sources, r.sentences AS sentences"
    )


def update_relations(relation_type: str) -> str:
    """Set the merged confidence, sources and sentences of stored edges from ``$rows``."""
    return (
        f"UNWIND $rows AS row MATCH (a:{ENTITY} {{id: row.head}})-[r:{label(relation_type, kind='relation type')}]->"
        f"(b:{ENTITY} {{id: row.tail}}) "
        "SET r.confidence = row.confidence, r.sources = row.sources, r.sentences = row.sentences"
    )


def source_domains() -> str:
    """Return the domain pack each stored (complete) source among ``$ids`` was extracted with."""
    return (f"UNWIND $ids AS key MATCH (s:{SOURCE} {{id: key}}) WHERE s.kind IS NOT NULL "
            "RETURN s.id AS id, coalesce(s.domain, '') AS domain")


def delete_extracted_mentions() -> str:
    """Delete the extracted mentions in the sources ``$ids`` (retrieved links stay); one row per deleted mention,
    with its entity id. Mentions written before provenance existed count as extracted."""
    return (
        f"UNWIND $ids AS key MATCH (e:{ENTITY})-[m:{MENTIONED_IN}]->(s:{SOURCE} {{id: key}}) "
        f"WHERE coalesce(m.provenance, '{PROVENANCE_EXTRACTED}') = $provenance "
        "WITH e.id AS id, m DELETE m RETURN id"
    )


def relations_citing() -> str:
    """Return the relations whose sources include one of ``$ids``, with their evidence lists."""
    return (
        f"MATCH (a:{ENTITY})-[r]->(b:{ENTITY}) WHERE any(source IN r.sources WHERE source IN $ids) "
        "RETURN a.id AS head, type(r) AS type, b.id AS tail, r.sources AS sources, r.sentences AS sentences"
    )


def delete_relations(relation_type: str) -> str:
    """Delete the relations of one type between the pairs of ``$rows`` (maps: head, tail)."""
    return (
        f"UNWIND $rows AS row MATCH (a:{ENTITY} {{id: row.head}})-[r:{label(relation_type, kind='relation type')}]->"
        f"(b:{ENTITY} {{id: row.tail}}) DELETE r"
    )


def set_relation_evidence(relation_type: str) -> str:
    """Set the sources and sentences of the relations of one type between the pairs of ``$rows``."""
    return (
        f"UNWIND $rows AS row MATCH (a:{ENTITY} {{id: row.head}})-[r:{label(relation_type, kind='relation type')}]->"
        f"(b:{ENTITY} {{id: row.tail}}) SET r.sources = row.sources, r.sentences = row.sentences"
    )


def delete_unconnected_entities() -> str:
    """Delete the entities among ``$ids`` with no relation and no mention left; return how many."""
    return (
        f"UNWIND $ids AS key MATCH (e:{ENTITY} {{id: key}}) WHERE NOT EXISTS {{ MATCH (e)--() }} "
        "DELETE e RETURN count(*) AS n"
    )


def sources_to_placeholders() -> str:
    """Empty the sources ``$ids`` back to placeholders (id only), which ingest reads as not stored."""
    return f"UNWIND $ids AS key MATCH (s:{SOURCE} {{id: key}}) SET s = {{id: key}}"


def entity_by_exact_key() -> str:
    """Return entities whose id is ``$raw`` or whose normalised name or alias is ``$key``."""
    return (
        f"MATCH (e:{ENTITY}) WHERE e.id = $raw OR e.name_key = $key OR $key IN e.alias_keys "
        f"RETURN {ENTITY_FIELDS} ORDER BY e.id LIMIT $limit"
    )


def ranked_neighbors() -> str:
    """Return, in one row, the ``$limit`` entities with the most relations, either direction, to the entities
    ``$ids`` (ties by id), each as ``[id, name, type, domain, aliases, ontology_ids, edges]``; the ``$ids``
    themselves may be among them. (One row of lists travels faster over Bolt than a record per entity.)"""
    return (
        f"UNWIND $ids AS key MATCH (a:{ENTITY} {{id: key}})-[r]-(b:{ENTITY}) "
        "WITH b, count(*) AS edges ORDER BY edges DESC, b.id LIMIT $limit "
        "RETURN collect([b.id, b.name, b.type, b.domain, b.aliases, b.ontology_ids, edges]) AS rows"
    )


def relations_among() -> str:
    """Return, in one row, every relation whose two ends are both among the entities ``$ids``, each as
    ``[head, type, tail, confidence, extractor, sources, sentences]``."""
    return (
        f"UNWIND $ids AS key MATCH (a:{ENTITY} {{id: key}})-[r]->(b:{ENTITY}) WHERE b.id IN $ids "
        "RETURN collect([a.id, type(r), b.id, r.confidence, r.extractor, r.sources, r.sentences]) AS rows"
    )


def shortest_path(relation_types: list[str], max_hops: int) -> str:
    """Return one shortest path ``$source_id`` .. ``$target_id`` over the given relation types, either direction."""
    if isinstance(max_hops, bool) or not isinstance(max_hops, int) or not 1 <= max_hops <= 16:
        raise ValidationError(f"expected a hop count between 1 and 16, got {max_hops!r}")
    if not relation_types:
        raise ValidationError("expected at least one relation type to search paths over")
    alternatives = "|".join(label(relation_type, kind="relation type") for relation_type in relation_types)
    return (
        f"MATCH (a:{ENTITY} {{id: $source_id}}), (b:{ENTITY} {{id: $target_id}}) "
        f"MATCH p = shortestPath((a)-[:{alternatives}*..{max_hops}]-(b)) "
        "RETURN [n IN nodes(p) | n.id] AS ids, "
        "[r IN relationships(p) | {head: startNode(r).id, type: type(r), tail: endNode(r).id, "
        "confidence: r.confidence, extractor: r.extractor, sources: r.sources, sentences: r.sentences}] AS rels"
    )


def relationship_types() -> str:
    """Return the relationship types the database knows (some may have no edges left)."""
    return "CALL db.relationshipTypes() YIELD relationshipType RETURN relationshipType AS type"


def mentions_of_entity() -> str:
    return (
        f"MATCH (e:{ENTITY} {{id: $entity_id}})-[m:{MENTIONED_IN}]->(s:{SOURCE}) WHERE s.kind IS NOT NULL "
        "RETURN m.start_char AS start_char, m.end_char AS end_char, m.text AS text, m.sentence AS sentence, "
        f"m.negated AS negated, m.uncertain AS uncertain, {_MENTION_PROVENANCE_FIELDS}, {SOURCE_FIELDS} "
        "ORDER BY s.id, m.start_char, m.end_char LIMIT $limit"
    )


def count_relations_by_type() -> str:
    return f"MATCH (a:{ENTITY})-[r]->(b:{ENTITY}) RETURN type(r) AS type, count(*) AS n"


def count_mentions_by_provenance() -> str:
    """Return the number of mentions whose provenance is ``$provenance`` (a mention without one is extracted)."""
    return (
        f"MATCH (e:{ENTITY})-[m:{MENTIONED_IN}]->(s:{SOURCE}) "
        f"WHERE coalesce(m.provenance, '{PROVENANCE_EXTRACTED}') = $provenance RETURN count(*) AS n"
    )


def entity_page() -> str:
    """Return up to ``$limit`` entities with ids after ``$after``, in id order (keyset paging on the unique index)."""
    return f"MATCH (e:{ENTITY}) WHERE e.id > $after RETURN {ENTITY_FIELDS} ORDER BY e.id LIMIT $limit"


def relations_of_heads() -> str:
    """Return every relation whose head is among ``$ids``."""
    return f"UNWIND $ids AS key MATCH (a:{ENTITY} {{id: key}})-[r]->(b:{ENTITY}) RETURN {RELATION_FIELDS}"


def mentions_of_entities() -> str:
    """Return the mentions of the entities ``$ids``."""
    return (
        f"UNWIND $ids AS key MATCH (e:{ENTITY} {{id: key}})-[m:{MENTIONED_IN}]->(s:{SOURCE}) "
        "RETURN e.id AS entity_id, s.id AS source_id, m.start_char AS start_char, m.end_char AS end_char, m.text AS text, "
        f"m.sentence AS sentence, m.negated AS negated, m.uncertain AS uncertain, {_MENTION_PROVENANCE_FIELDS}"
    )
