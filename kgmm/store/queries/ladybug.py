"""The Cypher of the embedded (LadybugDB) backend, as small query-building functions.

Values always travel as ``$parameters``, or as the Arrow table a ``LOAD FROM $rows`` or ``COPY ... FROM
$rows`` reads; the only text ever spliced into a query is a relation type checked by
:func:`relation_table` (or a fixed name of this module) and a hop count checked to be a small integer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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

# LadybugDB table names are case-insensitive, so a relation type may not reuse these in any case.
RESERVED_TABLES = frozenset(name.lower() for name in (ENTITY, SOURCE, MENTIONED_IN))

# MENTIONED_IN columns added after the first release (name, type, default): stores written before lack them.
MENTION_PROVENANCE_COLUMNS = (
    ("provenance", "STRING", f"'{PROVENANCE_EXTRACTED}'"),
    ("confidence", "DOUBLE", "1.0"),
)
# Source columns added later, written by every ingest but never read with a source's content (a store written
# before them, opened read-only, lacks them): the domain pack a source was extracted with.
SOURCE_ADDED_COLUMNS = (("domain", "STRING", "''"),)

_SCHEMA = (
    f"CREATE NODE TABLE IF NOT EXISTS {SOURCE}("
    "id STRING, kind STRING, text STRING, origin STRING, title STRING, image_path STRING, "
    "subject STRING, subject_type STRING, attributes STRING, metadata STRING, "
    + "".join(f"{name} {kind} DEFAULT {default}, " for name, kind, default in SOURCE_ADDED_COLUMNS)
    + "PRIMARY KEY(id))",
    f"CREATE NODE TABLE IF NOT EXISTS {ENTITY}("
    "id STRING, name STRING, type STRING, domain STRING, aliases STRING[], ontology_ids STRING[], "
    "name_key STRING, alias_keys STRING[], PRIMARY KEY(id))",
    # `end` is a keyword of LadybugDB's Cypher (m.end does not parse), hence start_char/end_char.
    f"CREATE REL TABLE IF NOT EXISTS {MENTIONED_IN}(FROM {ENTITY} TO {SOURCE}, "
    "start_char INT64, end_char INT64, text STRING, sentence STRING, negated BOOLEAN, uncertain BOOLEAN, "
    + ", ".join(f"{name} {kind} DEFAULT {default}" for name, kind, default in MENTION_PROVENANCE_COLUMNS) + ")",
)

_RELATION_FIELDS = (
    "a.id AS head, label(r) AS type, b.id AS tail, r.confidence AS confidence, r.extractor AS extractor, "
    "r.sources AS sources, r.sentences AS sentences"
)


def relation_table(relation_type: str) -> str:
    """Return ``relation_type`` as a table identifier, after checking it may reach query text.

    Raises:
        ValidationError: when the type is not a plain identifier or names one of the store's own tables.
    """
    if not isinstance(relation_type, str) or not is_valid_label(relation_type):
        raise ValidationError(
            f"invalid relation type {relation_type!r}: use letters, digits and underscores, starting with a letter"
        )
    if relation_type.lower() in RESERVED_TABLES:
        raise ValidationError(
            f"relation type {relation_type!r} is reserved by the store (tables {ENTITY}, {SOURCE}, {MENTIONED_IN}); "
            "rename it in the domain pack's schema"
        )
    return f"`{relation_type}`"


def _check_hops(hops: int) -> int:
    if isinstance(hops, bool) or not isinstance(hops, int) or not 1 <= hops <= 16:
        raise ValidationError(f"expected a hop count between 1 and 16, got {hops!r}")
    return hops


def schema_statements() -> tuple[str, ...]:
    """Return the idempotent DDL that creates the node tables and MENTIONED_IN."""
    return _SCHEMA


def create_relation_table(relation_type: str) -> str:
    """Return the DDL of one relation type's table (Entity -> Entity), created on first use."""
    return (
        f"CREATE REL TABLE IF NOT EXISTS {relation_table(relation_type)}(FROM {ENTITY} TO {ENTITY}, "
        "confidence DOUBLE, extractor STRING, sources STRING[], sentences STRING[])"
    )


def list_tables() -> str:
    """Return the query listing every table with its kind (``NODE`` or ``REL``)."""
    return "CALL show_tables() RETURN name, type"


# Columns added after the first release, per table: (name, type, default).
ADDED_COLUMNS = {MENTIONED_IN: MENTION_PROVENANCE_COLUMNS, SOURCE: SOURCE_ADDED_COLUMNS}


def table_columns(table: str) -> str:
    """Return the query listing the property names of one of :data:`ADDED_COLUMNS`' tables (``table_info`` takes
    only a literal)."""
    if table not in ADDED_COLUMNS:
        raise ValidationError(f"no added columns in table {table!r}")
    return f"CALL table_info('{table}') RETURN name"


def add_columns(table: str, missing: Sequence[str]) -> tuple[str, ...]:
    """Return the DDL that adds the ``missing`` columns of ``ADDED_COLUMNS[table]`` (a store written before they
    existed), each with its default for the rows already stored."""
    return tuple(
        f"ALTER TABLE {table} ADD {name} {kind} DEFAULT {default}"
        for name, kind, default in ADDED_COLUMNS[table] if name in missing
    )


def _mention_provenance_fields(stored: bool) -> str:
    """The provenance columns of a mention row; none where the store lacks them (rows then read as defaults)."""
    return ", m.provenance AS provenance, m.confidence AS confidence" if stored else ""


@dataclass(frozen=True)
class Table:
    """How new rows of one table are written: its columns, in COPY order, and both statements.

    Both take ``$rows`` as an Arrow table with exactly these columns (for a relationship table the
    first two are the keys of its ends). ``create`` scans it with ``LOAD FROM`` and creates through the
    write-ahead log; ``copy`` bulk-loads it and makes its commit checkpoint the whole database.
    """

    columns: tuple[tuple[str, str], ...]
    create: str
    copy: str


def _node_table(label: str, columns: tuple[tuple[str, str], ...]) -> Table:
    properties = ", ".join(f"{name}: `{name}`" for name, _ in columns)
    return Table(columns, f"LOAD FROM $rows CREATE (n:{label} {{{properties}}})", f"COPY {label} FROM $rows")


def _rel_table(table: str, from_label: str, to_label: str, columns: tuple[tuple[str, str], ...]) -> Table:
    (from_key, _), (to_key, _), *properties = columns
    assigned = ", ".join(f"{name}: `{name}`" for name, _ in properties)
    create = (
        f"LOAD FROM $rows MATCH (a:{from_label} {{id: `{from_key}`}}) MATCH (b:{to_label} {{id: `{to_key}`}}) "
        f"CREATE (a)-[:{table} {{{assigned}}}]->(b)"
    )
    return Table(columns, create, f"COPY {table} FROM $rows")


_SOURCE_WRITTEN = (*SOURCE_COLUMNS, *(name for name, _, _ in SOURCE_ADDED_COLUMNS))
_SOURCE_TABLE = _node_table(SOURCE, tuple((name, "STRING") for name in _SOURCE_WRITTEN))
_ENTITY_TABLE = _node_table(ENTITY, (
    ("id", "STRING"), ("name", "STRING"), ("type", "STRING"), ("domain", "STRING"), ("aliases", "STRING[]"),
    ("ontology_ids", "STRING[]"), ("name_key", "STRING"), ("alias_keys", "STRING[]"),
))
_MENTION_TABLE = _rel_table(MENTIONED_IN, ENTITY, SOURCE, (
    ("entity_id", "STRING"), ("source_id", "STRING"), ("start_char", "INT64"), ("end_char", "INT64"),
    ("text", "STRING"), ("sentence", "STRING"), ("negated", "BOOLEAN"), ("uncertain", "BOOLEAN"),
    *((name, kind) for name, kind, _ in MENTION_PROVENANCE_COLUMNS),
))
_RELATION_COLUMNS = (
    ("head", "STRING"), ("tail", "STRING"), ("confidence", "DOUBLE"), ("extractor", "STRING"),
    ("sources", "STRING[]"), ("sentences", "STRING[]"),
)


def source_table() -> Table:
    """Return how Source rows are created (columns: SOURCE_COLUMNS and the domain, all strings)."""
    return _SOURCE_TABLE


def entity_table() -> Table:
    """Return how Entity rows are created."""
    return _ENTITY_TABLE


def mention_table() -> Table:
    """Return how MENTIONED_IN edges are created (keyed by entity_id and source_id)."""
    return _MENTION_TABLE


def relation_table_of(relation_type: str) -> Table:
    """Return how edges of one relation type are created (keyed by head and tail entity ids)."""
    return _rel_table(relation_table(relation_type), ENTITY, ENTITY, _RELATION_COLUMNS)


def create_source_placeholders() -> str:
    """Create bare Source nodes (id only) from the Arrow table ``$rows``, for mentions written before their
    source; :func:`complete_sources` fills them in."""
    return f"LOAD FROM $rows CREATE (n:{SOURCE} {{id: `id`}})"


def complete_sources() -> str:
    """Set the content of placeholder sources from ``$rows`` (an Arrow table of the Source columns)."""
    assigned = ", ".join(f"s.{name} = `{name}`" for name in _SOURCE_WRITTEN if name != "id")
    return f"LOAD FROM $rows MATCH (s:{SOURCE} {{id: `id`}}) SET {assigned}"


def extracted_mentions_of_sources() -> str:
    """Return the entity id of every extracted mention in the sources ``$ids`` (one row per mention)."""
    return (
        f"UNWIND $ids AS key MATCH (e:{ENTITY})-[m:{MENTIONED_IN}]->(s:{SOURCE} {{id: key}}) "
        "WHERE m.provenance = $provenance RETURN e.id AS id"
    )


def delete_extracted_mentions() -> str:
    """Delete the extracted mentions in the sources ``$ids`` (retrieved links stay)."""
    return (
        f"UNWIND $ids AS key MATCH (e:{ENTITY})-[m:{MENTIONED_IN}]->(s:{SOURCE} {{id: key}}) "
        "WHERE m.provenance = $provenance DELETE m"
    )


def relations_citing(relation_type: str) -> str:
    """Return the edges of one type whose sources include one of ``$ids``, with their evidence lists."""
    return (
        f"MATCH (a:{ENTITY})-[r:{relation_table(relation_type)}]->(b:{ENTITY}) WHERE list_has_any(r.sources, $ids) "
        "RETURN a.id AS head, b.id AS tail, r.confidence AS confidence, r.sources AS sources, r.sentences AS sentences"
    )


def delete_relations(relation_type: str) -> str:
    """Delete the edges of one type between the pairs of the Arrow table ``$rows`` (columns: head, tail)."""
    return (
        f"LOAD FROM $rows MATCH (a:{ENTITY} {{id: `head`}})-[r:{relation_table(relation_type)}]->(b:{ENTITY} {{id: `tail`}}) "
        "DELETE r"
    )


def unconnected_entities() -> str:
    """Return the ids among ``$ids`` of entities with no relation and no mention left."""
    return f"UNWIND $ids AS key MATCH (e:{ENTITY} {{id: key}}) WHERE NOT EXISTS {{ MATCH (e)-[]-() }} RETURN e.id AS id"


def delete_entities() -> str:
    """Delete the entities ``$ids`` (which have no edges)."""
    return f"UNWIND $ids AS key MATCH (e:{ENTITY} {{id: key}}) DELETE e"


def sources_to_placeholders() -> str:
    """Empty the sources ``$ids`` back to placeholders (id only), which ingest reads as not stored."""
    cleared = ", ".join(f"s.{name} = NULL" for name in _SOURCE_WRITTEN if name != "id")
    return f"UNWIND $ids AS key MATCH (s:{SOURCE} {{id: key}}) SET {cleared}"


def source_domains() -> str:
    """Return the domain pack each stored (complete) source among ``$ids`` was extracted with."""
    return f"UNWIND $ids AS key MATCH (s:{SOURCE} {{id: key}}) WHERE s.kind IS NOT NULL RETURN s.id AS id, s.domain AS domain"


def update_entity_lists() -> str:
    """Set the merged alias and ontology-id lists of existing entities from the Arrow table ``$rows``
    (columns: id, aliases, ontology_ids, alias_keys)."""
    return (
        f"LOAD FROM $rows MATCH (e:{ENTITY} {{id: `id`}}) "
        "SET e.aliases = `aliases`, e.ontology_ids = `ontology_ids`, e.alias_keys = `alias_keys`"
    )


def update_relations(relation_type: str) -> str:
    """Set the merged confidence, sources and sentences of existing edges from the Arrow table ``$rows``
    (columns: head, tail, confidence, sources, sentences)."""
    return (
        f"LOAD FROM $rows MATCH (a:{ENTITY} {{id: `head`}}) MATCH (b:{ENTITY} {{id: `tail`}}) "
        f"MATCH (a)-[r:{relation_table(relation_type)}]->(b) "
        "SET r.confidence = `confidence`, r.sources = `sources`, r.sentences = `sentences`"
    )


def update_relation(relation_type: str) -> str:
    """Set the merged confidence, sources and sentences of one existing edge ``$head -> $tail``."""
    return (
        f"MATCH (a:{ENTITY} {{id: $head}})-[r:{relation_table(relation_type)}]->(b:{ENTITY} {{id: $tail}}) "
        "SET r.confidence = $confidence, r.sources = $sources, r.sentences = $sentences"
    )


def mention_keys_of_source() -> str:
    """Return the (entity, start, end) keys of the mentions stored for source ``$source_id``."""
    return (
        f"MATCH (e:{ENTITY})-[m:{MENTIONED_IN}]->(s:{SOURCE} {{id: $source_id}}) "
        "RETURN e.id AS entity_id, m.start_char AS start_char, m.end_char AS end_char"
    )


def relations_in_rows(relation_type: str, *, lists: bool = True) -> str:
    """Return the stored edges of one type among the pairs of the Arrow table ``$rows`` (columns: head, tail,
    i), each with the ``i`` of its pair and its confidence (and ``lists``: sources and sentences); one scan of
    that relation table, joined on both keys."""
    fields = ", r.sources AS sources, r.sentences AS sentences" if lists else ""
    return (
        f"LOAD FROM $rows MATCH (a:{ENTITY} {{id: `head`}})-[r:{relation_table(relation_type)}]->(b:{ENTITY} {{id: `tail`}}) "
        f"RETURN `i` AS i, r.confidence AS confidence{fields}"
    )


def count_entities() -> str:
    """Return the number of entities (read from table statistics, cheap)."""
    return f"MATCH (e:{ENTITY}) RETURN count(*) AS n"


def entity_ids() -> str:
    """Return every entity id (a scan: for checking a batch about as large as the table)."""
    return f"MATCH (e:{ENTITY}) RETURN e.id AS id"


def entity_ids_and_names() -> str:
    """Return every entity's id and name (a scan)."""
    return f"MATCH (e:{ENTITY}) RETURN e.id AS id, e.name AS name"


def entity_names_in_rows() -> str:
    """Return the id and name of the stored entities among the ids of the Arrow table ``$rows`` (column: id)."""
    return f"LOAD FROM $rows MATCH (e:{ENTITY} {{id: `id`}}) RETURN e.id AS id, e.name AS name"


def count_entities_in_rows() -> str:
    """Return how many ids of the Arrow table ``$rows`` (column: id) are stored entities."""
    return f"LOAD FROM $rows MATCH (e:{ENTITY} {{id: `id`}}) RETURN count(*) AS n"


def entities_in_rows() -> str:
    """Return the stored entities among the ids of the Arrow table ``$rows`` (column: id), with their lists."""
    return f"LOAD FROM $rows MATCH (e:{ENTITY} {{id: `id`}}) RETURN {ENTITY_FIELDS}"


def count_relations_of_type(relation_type: str) -> str:
    """Return the number of edges of one type (read from table statistics, cheap)."""
    return f"MATCH (a:{ENTITY})-[r:{relation_table(relation_type)}]->(b:{ENTITY}) RETURN count(*) AS n"


def relations_between_pairs(relation_type: str) -> str:
    """Return the stored edges of one type from a head in ``$heads`` to a tail in ``$tails``, with evidence (the
    caller keeps the pairs it asked for). ``IN`` lists use the primary-key index; an ``UNWIND`` of pairs scans."""
    return (
        f"MATCH (a:{ENTITY})-[r:{relation_table(relation_type)}]->(b:{ENTITY}) WHERE a.id IN $heads AND b.id IN $tails "
        "RETURN a.id AS head, b.id AS tail, r.confidence AS confidence, r.extractor AS extractor, "
        "r.sources AS sources, r.sentences AS sentences"
    )


def relation_between(relation_type: str) -> str:
    """Return the stored edge ``$head -[type]-> $tail`` (at most one by construction)."""
    return (
        f"MATCH (a:{ENTITY} {{id: $head}})-[r:{relation_table(relation_type)}]->(b:{ENTITY} {{id: $tail}}) "
        "RETURN r.confidence AS confidence, r.extractor AS extractor, r.sources AS sources, r.sentences AS sentences"
    )


def entity_by_exact_key() -> str:
    """Return entities whose id is ``$raw`` or whose normalised name or alias is ``$key``."""
    return (
        f"MATCH (e:{ENTITY}) WHERE e.id = $raw OR e.name_key = $key OR list_contains(e.alias_keys, $key) "
        f"RETURN {ENTITY_FIELDS} ORDER BY e.id LIMIT $limit"
    )


def entity_nodes() -> str:
    """Return the internal node offset of each stored entity among ``$ids`` (valid for this query session)."""
    return f"UNWIND $ids AS key MATCH (e:{ENTITY} {{id: key}}) RETURN e.id AS id, offset(id(e)) AS node"


# Filtering on internal offsets lets LadybugDB mask the scan to those nodes: ~2 ms for a few seeds,
# ~30 ms for 1000, on 130k edges; matching an id list per row scans every edge instead.
def ranked_neighbors() -> str:
    """Return the ``$limit`` entities with the most relations, either direction, to the entities at offsets
    ``$nodes`` (ties by id), with that count; those entities themselves may be among them."""
    return (
        f"MATCH (a:{ENTITY})-[r]-(b:{ENTITY}) WHERE offset(id(a)) IN $nodes "
        "RETURN b.id AS id, offset(id(b)) AS node, count(*) AS edges ORDER BY edges DESC, id LIMIT $limit"
    )


def ranked_neighbors_of_one() -> str:
    """:func:`ranked_neighbors` of the one entity ``$id`` (a primary-key lookup instead of a masked scan)."""
    return (
        f"MATCH (a:{ENTITY} {{id: $id}})-[r]-(b:{ENTITY}) WHERE b.id <> $id "
        "RETURN b.id AS id, offset(id(b)) AS node, count(*) AS edges ORDER BY edges DESC, id LIMIT $limit"
    )


def relations_among() -> str:
    """Return every relation whose two ends are both among the entities at offsets ``$nodes``, its ends as
    offsets (a third faster than reading their ids)."""
    return (
        f"MATCH (a:{ENTITY})-[r]->(b:{ENTITY}) WHERE offset(id(a)) IN $nodes AND offset(id(b)) IN $nodes "
        "RETURN offset(id(a)) AS head, label(r) AS type, offset(id(b)) AS tail, r.confidence AS confidence, "
        "r.extractor AS extractor, r.sources AS sources, r.sentences AS sentences"
    )


def shortest_path(relation_types: Sequence[str], max_hops: int) -> str:
    """Return one shortest path ``$source_id`` .. ``$target_id`` over the given relation types, either direction."""
    if not relation_types:
        raise ValidationError("expected at least one relation type to search paths over")
    alternatives = "|".join(relation_table(relation_type) for relation_type in relation_types)
    return (
        f"MATCH p = (a:{ENTITY} {{id: $source_id}})-[:{alternatives}* SHORTEST 1..{_check_hops(max_hops)}]-"
        f"(b:{ENTITY} {{id: $target_id}}) RETURN nodes(p) AS nodes, rels(p) AS rels LIMIT 1"
    )


def mentions_of_entity(*, provenance: bool = True) -> str:
    """Return where ``$entity_id`` is mentioned, with each source, at most ``$limit`` rows (``provenance``:
    whether MENTIONED_IN has the provenance columns)."""
    return (
        f"MATCH (e:{ENTITY} {{id: $entity_id}})-[m:{MENTIONED_IN}]->(s:{SOURCE}) WHERE s.kind IS NOT NULL "
        "RETURN m.start_char AS start_char, m.end_char AS end_char, m.text AS text, m.sentence AS sentence, "
        f"m.negated AS negated, m.uncertain AS uncertain{_mention_provenance_fields(provenance)}, {SOURCE_FIELDS} "
        "ORDER BY s.id, m.start_char, m.end_char LIMIT $limit"
    )


def count_mentions_by_provenance() -> str:
    """Return the number of mentions whose provenance is ``$provenance``."""
    return f"MATCH (e:{ENTITY})-[m:{MENTIONED_IN}]->(s:{SOURCE}) WHERE m.provenance = $provenance RETURN count(*) AS n"


def max_entity_node() -> str:
    """Return the highest internal offset of the Entity table (None when empty)."""
    return f"MATCH (e:{ENTITY}) RETURN max(offset(id(e))) AS node"


def entity_range() -> str:
    """Return the entities whose internal offsets are in [``$start``, ``$stop``) (paging in storage order)."""
    return (
        f"MATCH (e:{ENTITY}) WHERE offset(id(e)) >= $start AND offset(id(e)) < $stop "
        f"RETURN {ENTITY_FIELDS} ORDER BY offset(id(e))"
    )


def relation_range() -> str:
    """Return the relations (every type) whose head's internal offset is in [``$start``, ``$stop``)."""
    return (
        f"MATCH (a:{ENTITY})-[r]->(b:{ENTITY}) WHERE offset(id(a)) >= $start AND offset(id(a)) < $stop "
        f"RETURN {_RELATION_FIELDS}"
    )


def mention_range(*, provenance: bool = True) -> str:
    """Return the mentions of the entities whose internal offsets are in [``$start``, ``$stop``) (``provenance``:
    whether MENTIONED_IN has the provenance columns)."""
    return (
        f"MATCH (e:{ENTITY})-[m:{MENTIONED_IN}]->(s:{SOURCE}) WHERE offset(id(e)) >= $start AND offset(id(e)) < $stop "
        "RETURN e.id AS entity_id, s.id AS source_id, m.start_char AS start_char, m.end_char AS end_char, m.text AS text, "
        f"m.sentence AS sentence, m.negated AS negated, m.uncertain AS uncertain{_mention_provenance_fields(provenance)}"
    )
