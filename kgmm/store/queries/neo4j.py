"""The Cypher of the Neo4j backend: Neo4j 5 syntax, as documented by Neo4j, sent over Bolt.

An entity is a node labelled ``:Entity`` plus its type (``:Entity:Drug``); a relation is a typed
relationship (``:TREATS``); a source is a ``:Source`` node, and ``(:Entity)-[:MENTIONED_IN]->(:Source)``
keeps provenance. Labels and relationship types reach query text only through :func:`label`, which
checks them; every value travels as a parameter (``UNWIND $rows AS row``).
"""

from __future__ import annotations

from kgmm.errors import ValidationError
from kgmm.schema import is_valid_label

ENTITY = "Entity"
SOURCE = "Source"
MENTIONED_IN = "MENTIONED_IN"
RESERVED = frozenset((ENTITY, SOURCE, MENTIONED_IN))
_RESERVED_KEYS = frozenset(name.lower() for name in RESERVED)

ENTITY_FIELDS = (
    "e.id AS id, e.name AS name, e.type AS type, e.domain AS domain, e.aliases AS aliases, "
    "e.ontology_ids AS ontology_ids"
)
SOURCE_FIELDS = (
    "s.id AS source_id, s.kind AS source_kind, s.text AS source_text, s.origin AS source_origin, "
    "s.title AS source_title, s.image_path AS source_image_path, s.subject AS source_subject, "
    "s.subject_type AS source_subject_type, s.attributes AS source_attributes, s.metadata AS source_metadata"
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
    if name.lower() in _RESERVED_KEYS:  # case-insensitively, as in the embedded store
        raise ValidationError(
            f"{kind} {name!r} is reserved by the store ({', '.join(sorted(RESERVED))}); "
            "rename it in the domain pack's schema"
        )
    return f"`{name}`"


# ---- schema (idempotent; graph/schema.cypher holds the same statements) -------------------------
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


# ---- writes -----------------------------------------------------------------------------------
def create_entities(entity_type: str) -> str:
    """Create the entities of one type from ``$rows`` (MERGE on the id, so a concurrent writer adds no twin)."""
    return (
        f"UNWIND $rows AS row MERGE (e:{ENTITY}:{label(entity_type, kind='entity type')} {{id: row.id}}) "
        "ON CREATE SET e += row"
    )


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
        "sentence: row.sentence, negated: row.negated, uncertain: row.uncertain}]->(s)"
    )


def merge_relations(relation_type: str) -> str:
    """Create the edges of one type from ``$rows`` (MERGE between the two ends: never a parallel twin)."""
    return (
        f"UNWIND $rows AS row MATCH (a:{ENTITY} {{id: row.head}}) MATCH (b:{ENTITY} {{id: row.tail}}) "
        f"MERGE (a)-[r:{label(relation_type, kind='relation type')}]->(b) "
        "ON CREATE SET r.confidence = row.confidence, r.extractor = row.extractor, r.sources = row.sources, "
        "r.sentences = row.sentences"
    )


def update_relations(relation_type: str) -> str:
    """Set the merged confidence, sources and sentences of stored edges from ``$rows``."""
    return (
        f"UNWIND $rows AS row MATCH (a:{ENTITY} {{id: row.head}})-[r:{label(relation_type, kind='relation type')}]->"
        f"(b:{ENTITY} {{id: row.tail}}) "
        "SET r.confidence = row.confidence, r.sources = row.sources, r.sentences = row.sentences"
    )


# ---- key lookups ------------------------------------------------------------------------------
def existing_entity_ids() -> str:
    return f"UNWIND $ids AS key MATCH (e:{ENTITY} {{id: key}}) RETURN e.id AS id"


def existing_source_ids() -> str:
    return f"UNWIND $ids AS key MATCH (s:{SOURCE} {{id: key}}) RETURN s.id AS id"


def complete_source_ids() -> str:
    return f"UNWIND $ids AS key MATCH (s:{SOURCE} {{id: key}}) WHERE s.kind IS NOT NULL RETURN s.id AS id"


def entities_by_id() -> str:
    return f"UNWIND $ids AS key MATCH (e:{ENTITY} {{id: key}}) RETURN {ENTITY_FIELDS}"


def sources_by_id() -> str:
    return f"UNWIND $ids AS key MATCH (s:{SOURCE} {{id: key}}) WHERE s.kind IS NOT NULL RETURN {SOURCE_FIELDS}"


def mention_keys_of_sources() -> str:
    return (
        f"UNWIND $ids AS key MATCH (e:{ENTITY})-[m:{MENTIONED_IN}]->(s:{SOURCE} {{id: key}}) "
        "RETURN e.id AS entity_id, s.id AS source_id, m.start_char AS start_char, m.end_char AS end_char"
    )


def relations_between(relation_type: str) -> str:
    """Return the stored edges of one type among the (head, tail) pairs of ``$rows``."""
    return (
        f"UNWIND $rows AS row MATCH (a:{ENTITY} {{id: row.head}})-[r:{label(relation_type, kind='relation type')}]->"
        f"(b:{ENTITY} {{id: row.tail}}) "
        "RETURN a.id AS head, b.id AS tail, r.confidence AS confidence, r.extractor AS extractor, "
        "r.sources AS sources, r.sentences AS sentences"
    )


# ---- reads ------------------------------------------------------------------------------------
def entity_by_exact_key() -> str:
    """Return entities whose id is ``$raw`` or whose normalised name or alias is ``$key``."""
    return (
        f"MATCH (e:{ENTITY}) WHERE e.id = $raw OR e.name_key = $key OR $key IN e.alias_keys "
        f"RETURN {ENTITY_FIELDS} ORDER BY e.id LIMIT $limit"
    )


def entity_names() -> str:
    return f"MATCH (e:{ENTITY}) RETURN e.id AS id, e.name AS name, e.aliases AS aliases"


def neighbor_counts() -> str:
    """Return the entities linked by any relation, either direction, to the entities ``$ids``."""
    return (
        f"UNWIND $ids AS key MATCH (a:{ENTITY} {{id: key}})-[r]-(b:{ENTITY}) "
        "RETURN b.id AS id, count(*) AS edges"
    )


def relations_among() -> str:
    """Return every relation whose two ends are both among the entities ``$ids``."""
    return (
        f"UNWIND $ids AS key MATCH (a:{ENTITY} {{id: key}})-[r]->(b:{ENTITY}) WHERE b.id IN $ids "
        f"RETURN {RELATION_FIELDS}"
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
        f"m.negated AS negated, m.uncertain AS uncertain, {SOURCE_FIELDS} "
        "ORDER BY s.id, m.start_char, m.end_char LIMIT $limit"
    )


def count_entities_by_type() -> str:
    return f"MATCH (e:{ENTITY}) RETURN e.type AS type, count(*) AS n"


def count_relations_by_type() -> str:
    return f"MATCH (a:{ENTITY})-[r]->(b:{ENTITY}) RETURN type(r) AS type, count(*) AS n"


def count_sources_by_kind() -> str:
    return f"MATCH (s:{SOURCE}) WHERE s.kind IS NOT NULL RETURN s.kind AS kind, count(*) AS n"


def count_mentions() -> str:
    return f"MATCH (e:{ENTITY})-[m:{MENTIONED_IN}]->(s:{SOURCE}) RETURN count(*) AS n"


def entity_page() -> str:
    """Return up to ``$limit`` entities with ids after ``$after``, in id order (keyset paging on the unique index)."""
    return f"MATCH (e:{ENTITY}) WHERE e.id > $after RETURN {ENTITY_FIELDS} ORDER BY e.id LIMIT $limit"


def relations_of_heads() -> str:
    """Return every relation whose head is among ``$ids``."""
    return f"UNWIND $ids AS key MATCH (a:{ENTITY} {{id: key}})-[r]->(b:{ENTITY}) RETURN {RELATION_FIELDS}"


def source_page() -> str:
    """Return up to ``$limit`` complete sources with ids after ``$after``, in id order."""
    return (
        f"MATCH (s:{SOURCE}) WHERE s.id > $after AND s.kind IS NOT NULL "
        f"RETURN {SOURCE_FIELDS} ORDER BY s.id LIMIT $limit"
    )


def mentions_of_entities() -> str:
    """Return the mentions of the entities ``$ids``."""
    return (
        f"UNWIND $ids AS key MATCH (e:{ENTITY} {{id: key}})-[m:{MENTIONED_IN}]->(s:{SOURCE}) "
        "RETURN e.id AS entity_id, s.id AS source_id, m.start_char AS start_char, m.end_char AS end_char, m.text AS text, "
        "m.sentence AS sentence, m.negated AS negated, m.uncertain AS uncertain"
    )
