"""The Cypher both dialects share word for word: reads by key, counts and keyset paging of sources.

:mod:`.ladybug` and :mod:`.neo4j` re-export these, so a backend calls ``queries.entities_by_id()`` whichever dialect
it speaks; a query goes here only when both databases run the same text.
"""

from __future__ import annotations

ENTITY = "Entity"
SOURCE = "Source"
MENTIONED_IN = "MENTIONED_IN"

SOURCE_COLUMNS = (
    "id", "kind", "text", "origin", "title", "image_path", "subject", "subject_type", "attributes", "metadata",
)
ENTITY_FIELDS = (
    "e.id AS id, e.name AS name, e.type AS type, e.domain AS domain, e.aliases AS aliases, "
    "e.ontology_ids AS ontology_ids"
)
SOURCE_FIELDS = ", ".join(f"s.{column} AS source_{column}" for column in SOURCE_COLUMNS)


def sources_without_mentions() -> str:
    """Return the stored (complete) sources that no entity is mentioned in, with their content."""
    return (
        f"MATCH (s:{SOURCE}) WHERE s.kind IS NOT NULL AND NOT EXISTS {{ MATCH (:{ENTITY})-[:{MENTIONED_IN}]->(s) }} "
        f"RETURN {SOURCE_FIELDS} ORDER BY s.id"
    )


def existing_entity_ids() -> str:
    """Return the ids among ``$ids`` that are stored entities."""
    return f"UNWIND $ids AS key MATCH (e:{ENTITY} {{id: key}}) RETURN e.id AS id"


def existing_source_ids() -> str:
    """Return the ids among ``$ids`` that are stored sources, complete or placeholder."""
    return f"UNWIND $ids AS key MATCH (s:{SOURCE} {{id: key}}) RETURN s.id AS id"


def complete_source_ids() -> str:
    """Return the ids among ``$ids`` that are stored sources with their content (not placeholders)."""
    return f"UNWIND $ids AS key MATCH (s:{SOURCE} {{id: key}}) WHERE s.kind IS NOT NULL RETURN s.id AS id"


def entities_by_id() -> str:
    """Return the stored entities whose ids are in ``$ids``, with their lists."""
    return f"UNWIND $ids AS key MATCH (e:{ENTITY} {{id: key}}) RETURN {ENTITY_FIELDS}"


def sources_by_id() -> str:
    """Return the complete stored sources whose ids are in ``$ids``."""
    return f"UNWIND $ids AS key MATCH (s:{SOURCE} {{id: key}}) WHERE s.kind IS NOT NULL RETURN {SOURCE_FIELDS}"


def mention_keys_of_sources() -> str:
    """Like :func:`mention_keys_of_source` for every source id in ``$ids`` (one scan of MENTIONED_IN)."""
    return (
        f"UNWIND $ids AS key MATCH (e:{ENTITY})-[m:{MENTIONED_IN}]->(s:{SOURCE} {{id: key}}) "
        "RETURN e.id AS entity_id, s.id AS source_id, m.start_char AS start_char, m.end_char AS end_char"
    )


def entity_names() -> str:
    """Return every entity's id, name and aliases (to build the fuzzy lookup index)."""
    return f"MATCH (e:{ENTITY}) RETURN e.id AS id, e.name AS name, e.aliases AS aliases"


def count_entities_by_type() -> str:
    return f"MATCH (e:{ENTITY}) RETURN e.type AS type, count(*) AS n"


def count_sources_by_kind() -> str:
    return f"MATCH (s:{SOURCE}) WHERE s.kind IS NOT NULL RETURN s.kind AS kind, count(*) AS n"


def count_mentions() -> str:
    return f"MATCH (e:{ENTITY})-[m:{MENTIONED_IN}]->(s:{SOURCE}) RETURN count(*) AS n"


def source_page() -> str:
    """Return up to ``$limit`` complete sources with ids after ``$after``, in id order."""
    return (
        f"MATCH (s:{SOURCE}) WHERE s.id > $after AND s.kind IS NOT NULL "
        f"RETURN {SOURCE_FIELDS} ORDER BY s.id LIMIT $limit"
    )
