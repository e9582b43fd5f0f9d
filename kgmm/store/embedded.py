"""The embedded graph store: LadybugDB (the maintained fork of Kùzu), in-process and on disk.

Layout: ``Source`` and ``Entity`` node tables, a ``MENTIONED_IN`` provenance table, and one
relationship table per relation type (``TREATS``), created the first time that type is written,
so ``MATCH (a)-[:TREATS]->(b)`` reads naturally.

Each upsert call is one transaction. It first looks up which keys are stored (a ``COPY`` that repeats
a primary key crashes the process), then creates only the new rows from an Arrow table
(``LOAD FROM $rows ... CREATE``, or ``COPY`` for very large batches) and merges the stored ones with
one parameterised update. Values never enter query text: see :mod:`kgmm.store.queries`.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgmm.errors import StoreError, ValidationError
from kgmm.schema import (
    Entity,
    EntityMatch,
    GraphStats,
    Mention,
    Relation,
    Source,
    Subgraph,
    normalize_name,
)
from kgmm.store import records
from kgmm.store.base import GraphStore
from kgmm.store.queries import ladybug as queries

DATABASE_FILE = "graph.lbdb"
# LadybugDB reserves 8 TiB of address space per database by default: only ~15 fit in one process.
_MAX_DB_SIZE = 1 << 40
_LOOKUP_CHUNK = 5_000
_PAGE_SIZE = 10_000
# A relationship-table scan costs ~0.4 µs a row, a primary-key query ~0.2 ms: scan below this many rows per key.
_SCAN_ROWS_PER_LOOKUP = 500
# From this many new rows a COPY (plus the checkpoint its commit forces) beats LOAD FROM ... CREATE.
_COPY_FROM_ROWS = 100_000
# Columns of the Arrow tables that merge into stored entities and relations.
_ENTITY_LISTS = (("id", "STRING"), ("aliases", "STRING[]"), ("ontology_ids", "STRING[]"), ("alias_keys", "STRING[]"))
_RELATION_MERGE = (
    ("head", "STRING"), ("tail", "STRING"), ("confidence", "DOUBLE"), ("sources", "STRING[]"), ("sentences", "STRING[]"),
)
_WRITE_CLAUSE = re.compile(r"\b(CREATE|MERGE|SET|DELETE|REMOVE|COPY|DROP|ALTER)\b", re.IGNORECASE)


@dataclass
class _SharedDatabase:
    """One open LadybugDB database, shared by the stores of this process that opened its path."""

    database: Any
    read_only: bool
    users: int = 0


_open_databases: dict[str, _SharedDatabase] = {}
_open_lock = threading.Lock()


def _release(key: str, connection: Any) -> None:
    try:
        connection.close()
    finally:
        with _open_lock:
            shared = _open_databases.get(key)
            if shared is not None:
                shared.users -= 1
                if shared.users <= 0:
                    del _open_databases[key]
                    shared.database.close()


def _arrow(rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> Any:
    """Return ``rows`` as an Arrow table with these (name, LadybugDB type) columns, in this order."""
    import pyarrow as pa

    types = {"STRING": pa.string(), "STRING[]": pa.list_(pa.string()), "INT64": pa.int64(),
             "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}
    return pa.Table.from_pylist(rows, schema=pa.schema([(name, types[kind]) for name, kind in columns]))


class EmbeddedStore(GraphStore):
    """A knowledge graph stored in a LadybugDB database inside the directory ``location``.

    Args:
        location (str or Path): the store directory; created when missing. It holds ``graph.lbdb``.
        read_only (bool, optional): open without write access, so several processes may read at once.
            (default: :obj:`False`)
    """

    def __init__(self, location: str | Path, *, read_only: bool = False) -> None:
        try:
            import ladybug
        except ImportError as e:  # pragma: no cover - ladybug is a core dependency
            raise StoreError('the embedded store needs LadybugDB; install it with: pip install "ladybug>=0.22"') from e

        self.path = Path(location).expanduser()
        self.uri = str(self.path)
        self.read_only = bool(read_only)
        self._alias_index: records.AliasIndex | None = None
        self._relation_types: dict[str, str] = {}  # lower-case name -> name as created
        database_file = self._prepare_location()
        self._key = str(database_file.resolve())
        database = self._acquire_database(ladybug, database_file)
        try:
            self._connection = ladybug.Connection(database)
        except RuntimeError as e:
            _release(self._key, _NoConnection())
            raise StoreError(f"could not connect to the store at {self.uri}: {e}") from e
        self._finalizer = weakref.finalize(self, _release, self._key, self._connection)
        try:
            self._prepare_schema()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"{type(self).__name__}({self.uri!r}{mode})"

    # ---- opening ----------------------------------------------------------------------------
    def _prepare_location(self) -> Path:
        path = self.path
        if path.exists() and not path.is_dir():
            raise StoreError(
                f"{path} is a file; expected a store directory (the folder that holds {DATABASE_FILE})"
            )
        database_file = path / DATABASE_FILE
        if database_file.exists():
            return database_file
        if self.read_only:
            raise StoreError(
                f"no kgmm store at {path} (no {DATABASE_FILE}); build one first, or open it with read_only=False"
            )
        if path.exists() and any(path.iterdir()):
            raise StoreError(
                f"{path} is not a kgmm store (no {DATABASE_FILE}) and is not empty; "
                "pass a new or empty directory, or the directory of an existing store"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"could not create the store directory {path}: {e}") from e
        return database_file

    def _acquire_database(self, ladybug: Any, database_file: Path) -> Any:
        with _open_lock:
            shared = _open_databases.get(self._key)
            if shared is not None:
                if shared.read_only and not self.read_only:
                    raise StoreError(
                        f"the store at {self.uri} is already open read-only in this process; "
                        "close that store before opening it for writing"
                    )
                shared.users += 1
                return shared.database
            try:
                database = ladybug.Database(str(database_file), read_only=self.read_only, max_db_size=_MAX_DB_SIZE)
            except RuntimeError as e:
                raise StoreError(self._open_failure(e)) from e
            _open_databases[self._key] = _SharedDatabase(database, self.read_only, users=1)
            return database

    def _open_failure(self, error: Exception) -> str:
        message = str(error)
        if "lock" in message.lower():
            fix = "another process has it open for writing; close that process, or open with read_only=True"
        elif "not a valid" in message.lower():
            fix = f"{DATABASE_FILE} there is not a LadybugDB database; move it away or choose another directory"
        elif "mmap" in message.lower():
            fix = "too many stores are open in this process; close the ones you no longer need"
        else:
            fix = "check the path and its permissions"
        return f"could not open the store at {self.uri}: {message} ({fix})"

    def _prepare_schema(self) -> None:
        if not self.read_only:
            for statement in queries.schema_statements():
                self._execute(statement, {}, action="create the schema")
        tables = {row["name"].lower() for row in self._rows(queries.list_tables(), {}, action="read the schema")}
        if not {queries.ENTITY.lower(), queries.SOURCE.lower(), queries.MENTIONED_IN.lower()} <= tables:
            raise StoreError(
                f"{self.path / DATABASE_FILE} is a LadybugDB database but not a kgmm store (no Entity/Source tables); "
                "open it once with read_only=False to create them, or choose another directory"
            )
        self._load_relation_types()

    def close(self) -> None:
        """Release the database handle (the database closes when its last store in this process does)."""
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()

    # ---- plumbing ---------------------------------------------------------------------------
    def _execute(self, query: str, parameters: dict[str, Any], *, action: str) -> Any:
        if not self._finalizer.alive:
            raise StoreError(f"the store at {self.uri} is closed; open it again with kgmm.store.open_store")
        try:
            result = self._connection.execute(query, parameters)
        except RuntimeError as e:
            hint = ""
            if "read-only" in str(e).lower():
                hint = " (the store was opened read-only; open it with read_only=False to write)"
            raise StoreError(f"could not {action} in the store at {self.uri}: {e}{hint}") from e
        return result[-1] if isinstance(result, list) else result

    def _rows(self, query: str, parameters: dict[str, Any], *, action: str = "read") -> list[dict[str, Any]]:
        result = self._execute(query, parameters, action=action)
        columns = result.get_column_names()
        return [dict(zip(columns, values, strict=True)) for values in result.get_all()]

    def _columns(self, query: str, parameters: dict[str, Any], *, action: str) -> dict[str, list[Any]]:
        """Run a query and return its result column by column (through Arrow: fast for large results)."""
        result = self._execute(query, parameters, action=action)
        return result.get_as_arrow(chunk_size=-1).to_pydict()

    def _existing_ids(self, query: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in records.chunks(list(ids), _LOOKUP_CHUNK):
            found.update(row["id"] for row in self._rows(query, {"ids": list(chunk)}, action="look up keys"))
        return found

    def _require_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"the store at {self.uri} was opened read-only; open it with read_only=False to write")

    @contextmanager
    def _transaction(self, action: str) -> Iterator[None]:
        self._require_writable()
        self._execute("BEGIN TRANSACTION", {}, action=action)
        try:
            yield
        except BaseException:
            try:
                self._execute("ROLLBACK", {}, action=action)
            except StoreError:
                pass  # LadybugDB already rolled back the transaction of a failed statement
            self._load_relation_types()  # a rolled-back CREATE REL TABLE is gone again
            raise
        self._execute("COMMIT", {}, action=action)

    def _load_relation_types(self) -> dict[str, str]:
        reserved = queries.RESERVED_TABLES
        rows = self._rows(queries.list_tables(), {}, action="read the schema")
        self._relation_types = {
            row["name"].lower(): row["name"]
            for row in rows
            if row["type"] == "REL" and row["name"].lower() not in reserved
        }
        return self._relation_types

    def _check_relation_types(self, relation_types: Iterable[str]) -> None:
        for relation_type in relation_types:
            queries.relation_table(relation_type)
            known = self._relation_types.get(relation_type.lower())
            if known is None:
                known = self._load_relation_types().get(relation_type.lower())
            if known is not None and known != relation_type:
                raise ValidationError(
                    f"relation type {relation_type!r} clashes with the stored type {known!r}: LadybugDB table "
                    "names ignore case; use one spelling in the domain pack's schema"
                )

    # ---- writes -----------------------------------------------------------------------------
    def _insert(self, table: queries.Table, rows: list[dict[str, Any]], *, action: str) -> None:
        """Create ``rows``, whose keys are all new: by ``LOAD FROM`` an Arrow table, or ``COPY`` when large.

        A COPY's commit checkpoints the database (0.1-0.3 s even for a few rows), while ``LOAD FROM ...
        CREATE`` goes through the write-ahead log: 5000 rows take ~20 ms. From ~100k rows COPY is faster.
        """
        if rows:
            query = table.copy if len(rows) >= _COPY_FROM_ROWS else table.create
            self._execute(query, {"rows": _arrow(rows, table.columns)}, action=action)

    def _upsert_sources(self, sources: list[Source]) -> int:
        self._require_writable()
        batch: dict[str, Source] = {}
        for source in sources:
            batch.setdefault(source.id, source)
        present = self._existing_ids(queries.existing_source_ids(), list(batch))
        complete = self._existing_ids(queries.complete_source_ids(), list(present)) if present else set()
        rows = [records.source_row(s) for source_id, s in batch.items() if source_id not in complete]
        new = [row for row in rows if row["id"] not in present]
        placeholders = [row for row in rows if row["id"] in present]
        if rows:
            with self._transaction("write sources"):
                self._insert(queries.source_table(), new, action="write sources")
                if placeholders:
                    table = _arrow(placeholders, queries.source_table().columns)
                    self._execute(queries.complete_sources(), {"rows": table}, action="complete sources")
        return len(rows)

    def _upsert_entities(self, entities: list[Entity]) -> int:
        self._require_writable()
        batch = records.merge_entities(entities)
        stored: dict[str, Entity] = {}
        for chunk in records.chunks(list(batch), _LOOKUP_CHUNK):
            for row in self._rows(queries.entities_by_id(), {"ids": list(chunk)}, action="look up entities"):
                stored[row["id"]] = records.entity_from_row(row)
        rows = [records.entity_row(e) for entity_id, e in batch.items() if entity_id not in stored]
        updates = [
            records.entity_list_update(known)
            for entity_id, known in stored.items()
            if records.absorb(known, batch[entity_id])
        ]
        if rows or updates:
            self._alias_index = None
            with self._transaction("write entities"):
                self._insert(queries.entity_table(), rows, action="write entities")
                if updates:
                    self._execute(queries.update_entity_lists(), {"rows": _arrow(updates, _ENTITY_LISTS)},
                                  action="merge entity aliases")
        return len(rows)

    def _upsert_mentions(self, mentions: list[Mention]) -> int:
        self._require_writable()
        batch: dict[tuple[str, str, int, int], Mention] = {}
        for mention in mentions:
            batch.setdefault(records.mention_key(mention), mention)
        entity_ids = list(dict.fromkeys(key[0] for key in batch))
        source_ids = list(dict.fromkeys(key[1] for key in batch))
        self._require_stored("entities", queries.existing_entity_ids(), entity_ids, "mentions")
        present = self._existing_ids(queries.existing_source_ids(), source_ids)
        missing_sources = [{"id": source_id} for source_id in source_ids if source_id not in present]
        stored = self._stored_mention_keys([source_id for source_id in source_ids if source_id in present])
        rows = [records.mention_row(key, m) for key, m in batch.items() if key not in stored]
        if rows:
            with self._transaction("write mentions"):
                if missing_sources:  # ingest writes a batch's sources last, as its completion mark
                    placeholders = _arrow(missing_sources, (("id", "STRING"),))
                    self._execute(queries.create_source_placeholders(), {"rows": placeholders}, action="write sources")
                self._insert(queries.mention_table(), rows, action="write mentions")
        return len(rows)

    def _upsert_relations(self, relations: list[Relation]) -> int:
        self._require_writable()
        batch = records.merge_relations(relations)
        self._check_relation_types({key[1] for key in batch})
        endpoints = list(dict.fromkeys(entity_id for head, _, tail in batch for entity_id in (head, tail)))
        self._require_stored("entities", queries.existing_entity_ids(), endpoints, "relations")
        by_type: dict[str, list[Relation]] = {}
        for relation in batch.values():
            by_type.setdefault(relation.type, []).append(relation)
        new_rows: dict[str, list[dict[str, Any]]] = {}
        updates: dict[str, list[dict[str, Any]]] = {}
        for relation_type, group in by_type.items():
            new_rows[relation_type], updates[relation_type] = self._plan_relations(relation_type, group)
        if not any(new_rows.values()) and not any(updates.values()):
            return 0
        with self._transaction("write relations"):
            for relation_type in by_type:
                if relation_type.lower() not in self._relation_types:
                    self._execute(queries.create_relation_table(relation_type), {}, action="create a relation table")
                    self._relation_types[relation_type.lower()] = relation_type
                self._insert(queries.relation_table_of(relation_type), new_rows[relation_type], action="write relations")
                self._merge_relation_rows(relation_type, updates[relation_type])
        return sum(len(rows) for rows in new_rows.values())

    def _plan_relations(self, relation_type: str, relations: list[Relation]) -> tuple[list[dict], list[dict]]:
        """Split one type's batch into rows to create and merged rows to update (unchanged edges dropped)."""
        stored_edges = self._stored_relations(relation_type, relations)
        new, updates = [], []
        for relation in relations:
            row = records.relation_row(relation)
            stored = stored_edges.get((relation.head, relation.tail))
            if stored is None:
                new.append(row)
            elif (merged := records.merge_stored_relation(stored, row)) is not None:
                updates.append(merged)
        return new, updates

    def _merge_relation_rows(self, relation_type: str, updates: list[dict[str, Any]]) -> None:
        if not updates:
            return
        if self._scan_is_cheaper(queries.count_relations_of_type(relation_type), len(updates)):
            self._execute(queries.update_relations(relation_type), {"rows": _arrow(updates, _RELATION_MERGE)},
                          action="merge relation sources")
            return
        query = queries.update_relation(relation_type)
        for row in updates:
            self._execute(query, row, action="merge relation sources")

    def _stored_mention_keys(self, source_ids: list[str]) -> set[tuple[str, str, int, int]]:
        stored: set[tuple[str, str, int, int]] = set()
        if self._scan_is_cheaper(queries.count_mentions(), len(source_ids)):
            for chunk in records.chunks(source_ids, _LOOKUP_CHUNK):
                for row in self._rows(queries.mention_keys_of_sources(), {"ids": list(chunk)}, action="look up mentions"):
                    stored.add((row["entity_id"], row["source_id"], row["start_char"], row["end_char"]))
            return stored
        query = queries.mention_keys_of_source()
        for source_id in source_ids:
            for row in self._rows(query, {"source_id": source_id}, action="look up mentions"):
                stored.add((row["entity_id"], source_id, row["start_char"], row["end_char"]))
        return stored

    def _stored_relations(self, relation_type: str, relations: list[Relation]) -> dict[tuple[str, str], dict]:
        """Return the stored edges of one type among the (head, tail) pairs of ``relations``."""
        if relation_type.lower() not in self._relation_types:
            return {}
        wanted = list(dict.fromkeys((relation.head, relation.tail) for relation in relations))
        if self._scan_is_cheaper(queries.count_relations_of_type(relation_type), len(wanted)):
            pairs = _arrow([{"head": head, "tail": tail} for head, tail in wanted], (("head", "STRING"), ("tail", "STRING")))
            rows = self._rows(queries.relations_between(relation_type), {"rows": pairs}, action="look up relations")
            return {(row["head"], row["tail"]): row for row in rows}
        query = queries.relation_between(relation_type)
        stored = {}
        for head, tail in wanted:
            found = self._rows(query, {"head": head, "tail": tail}, action="look up relations")
            if found:
                stored[(head, tail)] = found[0]
        return stored

    def _scan_is_cheaper(self, count_query: str, lookups: int) -> bool:
        """Whether one scan of a relationship table beats ``lookups`` primary-key queries."""
        edges = self._rows(count_query, {}, action="count rows")[0]["n"]
        return edges <= lookups * _SCAN_ROWS_PER_LOOKUP

    def _require_stored(self, what: str, query: str, ids: list[str], writing: str) -> None:
        stored = self._existing_ids(query, ids) if ids else set()
        missing = [key for key in ids if key not in stored]
        if missing:
            shown = ", ".join(repr(key) for key in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise StoreError(
                f"cannot write {writing} to the store at {self.uri}: {len(missing)} {what} not stored ({shown}); "
                f"upsert the {what} first"
            )

    def _known_sources(self, source_ids: list[str]) -> set[str]:
        return self._existing_ids(queries.complete_source_ids(), source_ids)

    # ---- reads ------------------------------------------------------------------------------
    def _get_entity(self, entity_id: str) -> Entity | None:
        found = self._entities_by_id([entity_id])
        return found.get(entity_id)

    def _entities_by_id(self, entity_ids: Sequence[str]) -> dict[str, Entity]:
        found: dict[str, Entity] = {}
        for chunk in records.chunks(list(dict.fromkeys(entity_ids)), _LOOKUP_CHUNK):
            for row in self._rows(queries.entities_by_id(), {"ids": list(chunk)}, action="read entities"):
                found[row["id"]] = records.entity_from_row(row)
        return found

    def _get_sources(self, source_ids: list[str]) -> dict[str, Source]:
        found: dict[str, Source] = {}
        for chunk in records.chunks(source_ids, _LOOKUP_CHUNK):
            for row in self._rows(queries.sources_by_id(), {"ids": list(chunk)}, action="read sources"):
                source = records.source_from_row(row)
                found[source.id] = source
        return found

    def _find_entities(self, name: str, limit: int, fuzzy: bool) -> list[EntityMatch]:
        key = normalize_name(name)
        rows = self._rows(
            queries.entity_by_exact_key(), {"raw": name, "key": key, "limit": limit + records.EXACT_MATCH_SLACK},
            action="find entities",
        )
        matches = records.rank_exact_matches(rows, key)
        if fuzzy and key and len(matches) < limit:
            if self._alias_index is None:
                self._alias_index = records.AliasIndex.build(self._rows(queries.entity_names(), {}, action="read entity names"))
            best = self._alias_index.best(key, limit - len(matches), {m.entity.id for m in matches})
            entities = self._entities_by_id([entity_id for entity_id, _, _ in best])
            matches += [EntityMatch(entity=entities[entity_id], score=score, matched=surface)
                        for entity_id, score, surface in best if entity_id in entities]
        return matches[:limit]

    def _subgraph(self, entity_ids: list[str], hops: int, limit: int) -> Subgraph:
        seeds = list(dict.fromkeys(str(entity_id) for entity_id in entity_ids))
        node_of: dict[str, int] = {}
        for chunk in records.chunks(seeds, _LOOKUP_CHUNK):
            for row in self._rows(queries.entity_nodes(), {"ids": list(chunk)}, action="look up entities"):
                node_of[row["id"]] = row["node"]
        chosen = [entity_id for entity_id in seeds if entity_id in node_of][:limit]
        if not chosen:
            return Subgraph()
        frontier = list(chosen)
        has_relations = bool(self._load_relation_types())
        for _ in range(hops):
            if len(chosen) >= limit or not frontier or not has_relations:
                break
            counts: Counter = Counter()
            rows = self._rows(queries.neighbor_counts(), {"nodes": [node_of[e] for e in frontier]},
                              action="expand neighbours")
            for row in rows:
                node_of.setdefault(row["id"], row["node"])
                counts[row["id"]] += row["edges"]
            visited = set(chosen)
            ranked = sorted((e for e in counts if e not in visited), key=lambda e: (-counts[e], e))
            frontier = ranked[: limit - len(chosen)]
            chosen.extend(frontier)
        entities = self._entities_by_id(chosen)
        relations: list[Relation] = []
        if len(chosen) > 1 and has_relations:
            rows = self._rows(queries.relations_among(), {"nodes": [node_of[e] for e in chosen]}, action="read relations")
            position = {entity_id: i for i, entity_id in enumerate(chosen)}
            relations = sorted((records.relation_from_row(row) for row in rows),
                               key=lambda r: (position[r.head], position[r.tail], r.type))
        return Subgraph(entities=[entities[entity_id] for entity_id in chosen], relations=relations)

    def _relation_types_now(self) -> list[str]:
        return sorted(self._load_relation_types().values())

    def _shortest_path(self, source_id: str, target_id: str, max_hops: int) -> Subgraph | None:
        if source_id == target_id:
            entity = self._get_entity(source_id)
            return Subgraph(entities=[entity]) if entity is not None else None
        relation_types = self._relation_types_now()
        if not relation_types:
            return None
        rows = self._rows(
            queries.shortest_path(relation_types, max_hops),
            {"source_id": source_id, "target_id": target_id},
            action="find a path",
        )
        if not rows:
            return None
        nodes, rels = rows[0]["nodes"], rows[0]["rels"]
        id_of = {(node["_ID"]["table"], node["_ID"]["offset"]): node["id"] for node in nodes}
        relations = [
            Relation(
                head=id_of[(rel["_SRC"]["table"], rel["_SRC"]["offset"])],
                type=rel["_LABEL"],
                tail=id_of[(rel["_DST"]["table"], rel["_DST"]["offset"])],
                confidence=float(rel.get("confidence") or 0.0),
                extractor=rel.get("extractor") or "",
                sources=list(rel.get("sources") or []),
                sentences=list(rel.get("sentences") or []),
            )
            for rel in rels
        ]
        return Subgraph(entities=[records.entity_from_row(node) for node in nodes], relations=relations)

    def _mentions(self, entity_id: str, limit: int) -> list[tuple[Mention, Source]]:
        rows = self._rows(queries.mentions_of_entity(), {"entity_id": entity_id, "limit": limit}, action="read mentions")
        return [(records.mention_from_row(entity_id, row), records.source_from_row(row)) for row in rows]

    def _stats(self) -> GraphStats:
        entities_by_type = {row["type"]: row["n"] for row in self._rows(queries.count_entities_by_type(), {})}
        relations_by_type = {}
        for relation_type in self._relation_types_now():  # per-table counts come from table statistics
            count = self._rows(queries.count_relations_of_type(relation_type), {})[0]["n"]
            if count:
                relations_by_type[relation_type] = count
        sources_by_kind = {row["kind"]: row["n"] for row in self._rows(queries.count_sources_by_kind(), {})}
        mentions = self._rows(queries.count_mentions(), {})[0]["n"]
        return GraphStats(
            entities=sum(entities_by_type.values()),
            relations=sum(relations_by_type.values()),
            documents=sources_by_kind.get("document", 0),
            images=sources_by_kind.get("image", 0),
            mentions=mentions,
            entities_by_type=dict(sorted(entities_by_type.items())),
            relations_by_type=dict(sorted(relations_by_type.items())),
        )

    def _cypher(self, query: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        rows = self._rows(query, parameters, action="run the Cypher query")
        if _WRITE_CLAUSE.search(query):
            self._alias_index = None  # the query may have changed entity names
        return rows

    def _node_ranges(self) -> Iterator[dict[str, int]]:
        """Yield [start, stop) windows over the Entity table's internal offsets, for paging without sorting."""
        last = self._rows(queries.max_entity_node(), {}, action="count entities")[0]["node"]
        for start in range(0, -1 if last is None else int(last) + 1, _PAGE_SIZE):
            yield {"start": start, "stop": start + _PAGE_SIZE}

    def _iter_entities(self) -> Iterator[Entity]:
        for window in self._node_ranges():
            page = self._columns(queries.entity_range(), window, action="read entities")
            for entity_id, name, type_, domain, aliases, ontology_ids in zip(
                page["id"], page["name"], page["type"], page["domain"], page["aliases"], page["ontology_ids"],
                strict=True,
            ):
                yield Entity(entity_id, name or "", type_ or "", domain or "", aliases or [], ontology_ids or [])

    def _iter_relations(self) -> Iterator[Relation]:
        if not self._load_relation_types():
            return
        for window in self._node_ranges():
            page = self._columns(queries.relation_range(), window, action="read relations")
            columns = ("head", "type", "tail", "confidence", "extractor", "sources", "sentences")
            rows = sorted(zip(*(page[name] for name in columns), strict=True), key=lambda row: (row[1], row[0], row[2]))
            for head, type_, tail, confidence, extractor, sources, sentences in rows:
                yield Relation(head, type_, tail, float(confidence or 0.0), extractor or "", sources or [], sentences or [])


class _NoConnection:
    """Stands in for a connection that failed to open, so the database reference is still released."""

    def close(self) -> None:
        return None


def _iter_sources(self: EmbeddedStore) -> Iterator[Source]:
    after = ""
    while True:
        page = self._rows(queries.source_page(), {"after": after, "limit": _PAGE_SIZE}, action="read sources")
        if not page:
            return
        yield from (records.source_from_row(row) for row in page)
        after = page[-1]["source_id"]


def _iter_mentions(self: EmbeddedStore) -> Iterator[Mention]:
    for window in self._node_ranges():
        rows = self._rows(queries.mention_range(), window, action="read mentions")
        rows.sort(key=lambda row: (row["entity_id"], row["source_id"], row["start_char"], row["end_char"]))
        yield from (records.mention_from_row(row["entity_id"], row) for row in rows)


EmbeddedStore._iter_sources = _iter_sources
EmbeddedStore._iter_mentions = _iter_mentions
