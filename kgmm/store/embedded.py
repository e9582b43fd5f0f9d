"""The embedded graph store: LadybugDB (the maintained fork of Kùzu), in-process and on disk.

Layout: ``Source`` and ``Entity`` node tables, a ``MENTIONED_IN`` provenance table, and one
relationship table per relation type (``TREATS``), created the first time that type is written,
so ``MATCH (a)-[:TREATS]->(b)`` reads naturally.

Each upsert call is one transaction. It first looks up which keys are stored (a ``COPY`` that repeats
a primary key crashes the process), then creates only the new rows from an Arrow table
(``LOAD FROM $rows ... CREATE``, or ``COPY`` for very large batches) and merges the stored ones with
one parameterised update. Values never enter query text: see :mod:`kgmm.store.queries`.

Bulk batches stay columnar (:class:`records.RelationColumns`): no Python object per row, a list column
that is empty in every row is written as nulls (read back as empty lists), and only the stored keys that
a batch may change (it brings evidence, aliases or a higher confidence) are read back whole.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgmm.errors import StoreError, ValidationError, WriteRefusedError
from kgmm.schema import (
    PROVENANCE_EXTRACTED,
    PROVENANCE_RETRIEVED,
    Entity,
    GraphStats,
    Mention,
    Relation,
    Source,
    Subgraph,
    normalize_name,
)
from kgmm.store import records
from kgmm.store.base import PAGE_SIZE, GraphStore, Retraction
from kgmm.store.queries import ladybug as queries
from kgmm.utils import batched, paused_gc

DATABASE_FILE = "graph.lbdb"
# LadybugDB reserves 8 TiB of address space per database by default: only ~15 fit in one process.
_MAX_DB_SIZE = 1 << 40
_LOOKUP_CHUNK = 5_000
# A relationship-table scan costs ~0.4 µs a row, a primary-key query ~0.2 ms: scan below this many rows per key.
_SCAN_ROWS_PER_LOOKUP = 500
# From this many new rows a COPY (plus the checkpoint its commit forces) beats LOAD FROM ... CREATE.
_COPY_FROM_ROWS = 100_000
# Rows per LOAD FROM ... CREATE statement (one statement with 100k+ rows can exhaust the buffer pool).
_CREATE_ROWS = 20_000
# Reading every entity id costs ~0.2 µs an entity, joining a key ~1.2 µs, looking one up ~3 µs: scan below this.
_SCAN_PER_KEY = 6
# Columns of the Arrow tables that merge into stored entities and relations.
_ENTITY_LISTS = (("id", "STRING"), ("aliases", "STRING[]"), ("ontology_ids", "STRING[]"), ("alias_keys", "STRING[]"))
_RELATION_MERGE = (
    ("head", "STRING"), ("tail", "STRING"), ("confidence", "DOUBLE"), ("sources", "STRING[]"), ("sentences", "STRING[]"),
)


@dataclass
class _SharedDatabase:
    """One open LadybugDB database, shared by the stores of this process that opened its path."""

    database: Any
    read_only: bool
    users: int = 0


_open_databases: dict[str, _SharedDatabase] = {}
_open_lock = threading.Lock()


def buffer_pool_bytes() -> int:
    """LadybugDB's page cache for an open store: ``$KGMM_BUFFER_POOL_MB`` MiB (0: LadybugDB's default)."""
    raw = os.environ.get("KGMM_BUFFER_POOL_MB", "").strip()
    if not raw:
        return 0
    try:
        megabytes = int(raw)
    except ValueError:
        raise StoreError(f"KGMM_BUFFER_POOL_MB={raw!r} is not a whole number of MiB; set it to e.g. 1024") from None
    return max(megabytes, 0) << 20


def trim_heap() -> None:
    """Return the C heap's free pages to the OS (glibc's ``malloc_trim``; nothing elsewhere)."""
    malloc_trim = _malloc_trim()
    if malloc_trim is not None:
        malloc_trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once (``find_library`` runs ``ldconfig``), or None where there is none."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


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


def _arrow_columns(columns: dict[str, Any], spec: Sequence[tuple[str, str]]) -> Any:
    """Return an Arrow table of these columns (name -> values), with the LadybugDB types of ``spec``."""
    import pyarrow as pa

    types = {"STRING": pa.string(), "STRING[]": pa.list_(pa.string()), "INT64": pa.int64(),
             "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}
    return pa.table({name: pa.array(columns[name], types[kind]) for name, kind in spec})


def _string_lists(values: Sequence[Sequence[str]]) -> Any:
    """Return ``values`` as an Arrow list-of-strings array; all nulls when every list is empty (reads turn a null
    list into an empty one, and LadybugDB copies a null column ~25% faster than one of empty lists)."""
    import pyarrow as pa

    if any(values):
        return pa.array([[str(value) for value in items] for items in values], pa.list_(pa.string()))
    return pa.nulls(len(values), pa.list_(pa.string()))


def _entity_table(batch: records.EntityColumns) -> Any:
    """Return new entities as the Arrow table :func:`queries.entity_table` copies (see ``records.entity_row``)."""
    import pyarrow as pa

    names = list(map(str, batch.name))
    return pa.table({
        "id": pa.array(batch.id, pa.string()),
        "name": pa.array(names, pa.string()),
        "type": pa.array(batch.type, pa.string()),
        "domain": pa.array(list(map(str, batch.domain)), pa.string()),
        "aliases": _string_lists(batch.aliases),
        "ontology_ids": _string_lists(batch.ontology_ids),
        "name_key": pa.array(list(map(normalize_name, names)), pa.string()),
        "alias_keys": _string_lists([records.alias_keys(aliases) if aliases else aliases for aliases in batch.aliases]),
    })


def _relation_table(batch: records.RelationColumns) -> Any:
    """Return new relations of one type as the Arrow table :func:`queries.relation_table_of` copies."""
    import pyarrow as pa

    return pa.table({
        "head": pa.array(batch.head, pa.string()),
        "tail": pa.array(batch.tail, pa.string()),
        "confidence": pa.array(batch.confidence, pa.float64()),
        "extractor": pa.array(list(map(str, batch.extractor)), pa.string()),
        "sources": _string_lists(batch.sources),
        "sentences": _string_lists(batch.sentences),
    })


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
        self._relation_types: dict[str, str] = {}  # lower-case name -> name as created
        # Whether MENTIONED_IN has the provenance columns and Source its domain: a store of an older kgmm opened
        # read-only lacks them.
        self._mention_provenance = True
        self._source_domain = True
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

    def artifact_dir(self, name: str) -> Path:
        """The store's own folder keeps what kgmm derives from it (``<store>/kgmm-derived/<name>``)."""
        return self.path / "kgmm-derived" / name

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"{type(self).__name__}({self.uri!r}{mode})"

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
                database = ladybug.Database(str(database_file), read_only=self.read_only, max_db_size=_MAX_DB_SIZE,
                                            buffer_pool_size=buffer_pool_bytes())
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
        self._mention_provenance = self._prepare_added_columns(queries.MENTIONED_IN)
        self._source_domain = self._prepare_added_columns(queries.SOURCE)
        self._load_relation_types()

    def _prepare_added_columns(self, table: str) -> bool:
        """Add the columns that ``table`` gained after the first release to a store written before them (a writable
        open); return whether the table has them (a read-only open of such a store does not: reads use defaults)."""
        names = {row["name"] for row in self._rows(queries.table_columns(table), {}, action="read the schema")}
        missing = [name for name, _, _ in queries.ADDED_COLUMNS[table] if name not in names]
        if missing and not self.read_only:
            for statement in queries.add_columns(table, missing):
                self._execute(statement, {}, action=f"add the new columns of {table}")
            missing = []
        return not missing

    def release_memory(self) -> None:
        """Reopen the database when this store is its only user in the process, and hand freed heap back to the OS.

        LadybugDB keeps native memory from every write transaction until its database closes (15-20 MB per
        ingest batch of 400,000 characters: 5.4 GB over a 50 MB file); reopening it costs a fraction of a second.
        """
        import ladybug

        with _open_lock:
            shared = _open_databases.get(self._key)
            if shared is None or shared.users != 1 or not self._finalizer.alive:
                return
            self._finalizer.detach()
            try:
                self._connection.close()
            finally:
                del _open_databases[self._key]
                shared.database.close()
        database = self._acquire_database(ladybug, Path(self._key))
        self._connection = ladybug.Connection(database)
        self._finalizer = weakref.finalize(self, _release, self._key, self._connection)
        trim_heap()

    def close(self) -> None:
        """Release the database handle (the database closes when its last store in this process does)."""
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()

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
        for chunk in batched(list(ids), _LOOKUP_CHUNK):
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

    def _insert(self, table: queries.Table, rows: list[dict[str, Any]], *, action: str) -> None:
        """Create ``rows``, whose keys are all new (see :meth:`_insert_table`)."""
        if rows:
            self._insert_table(table, _arrow(rows, table.columns), copy=len(rows) >= _COPY_FROM_ROWS, action=action)

    def _insert_table(self, table: queries.Table, rows: Any, *, copy: bool, action: str) -> None:
        """Create the rows of the Arrow table ``rows``, whose keys are all new: by ``COPY`` or ``LOAD FROM``.

        A COPY's commit checkpoints the database (0.1-0.3 s even for a few rows), while ``LOAD FROM ...
        CREATE`` goes through the write-ahead log: 5000 rows take ~20 ms. From ~100k rows COPY is faster.
        """
        if not copy:
            for part in batched(rows, _CREATE_ROWS):
                self._execute(table.create, {"rows": part}, action=action)
            return
        self._execute(table.copy, {"rows": rows}, action=action)

    def _upsert_sources(self, sources: list[Source], domain: str) -> int:
        self._require_writable()
        batch: dict[str, Source] = {}
        for source in sources:
            batch.setdefault(source.id, source)
        present = self._existing_ids(queries.existing_source_ids(), list(batch))
        complete = self._existing_ids(queries.complete_source_ids(), list(present)) if present else set()
        rows = [records.source_row(s, domain) for source_id, s in batch.items() if source_id not in complete]
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
        with paused_gc():
            return self._write_entities(entities)

    def _write_entities(self, entities: list[Entity]) -> int:
        self._require_writable()
        batch = records.entity_columns(entities)
        stored_names = self._stored_entity_names(batch.id)
        new, updates = batch, []
        if stored_names:
            new = batch.take([i for i, entity_id in enumerate(batch.id) if entity_id not in stored_names])
            # Only an entity that brings aliases, ontology ids or another name can change its stored twin.
            candidates = {
                entity_id: i for i, entity_id in enumerate(batch.id)
                if entity_id in stored_names and records.may_change_entity(
                    batch.aliases[i], batch.ontology_ids[i], batch.name[i], stored_names[entity_id])
            }
            if candidates:
                table = _arrow_columns({"id": list(candidates)}, (("id", "STRING"),))
                for row in self._rows(queries.entities_in_rows(), {"rows": table}, action="look up entities"):
                    known = records.entity_from_row(row)
                    if records.absorb(known, batch.entity(candidates[known.id])):
                        updates.append(records.entity_list_update(known))
        if len(new) or updates:
            self._alias_index = None
            with self._transaction("write entities"):
                if len(new):
                    self._insert_table(queries.entity_table(), _entity_table(new), copy=len(new) >= _COPY_FROM_ROWS,
                                       action="write entities")
                if updates:
                    self._execute(queries.update_entity_lists(), {"rows": _arrow(updates, _ENTITY_LISTS)},
                                  action="merge entity aliases")
        return len(new)

    def _stored_entity_names(self, ids: Sequence[str]) -> dict[str, str]:
        """Return the stored name of each id among ``ids`` that is a stored entity."""
        if not ids:
            return {}
        stored = self._rows(queries.count_entities(), {}, action="count entities")[0]["n"]
        if not stored:
            return {}
        if stored <= len(ids) * _SCAN_PER_KEY:  # reading every id and name beats looking each key up
            page = self._columns(queries.entity_ids_and_names(), {}, action="look up entities")
            wanted = set(ids)
            return {entity_id: name for entity_id, name in zip(page["id"], page["name"], strict=True)
                    if entity_id in wanted}
        table = _arrow_columns({"id": list(ids)}, (("id", "STRING"),))
        page = self._columns(queries.entity_names_in_rows(), {"rows": table}, action="look up entities")
        return dict(zip(page["id"], page["name"], strict=True))

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
        with paused_gc():
            return self._write_relations(relations)

    def _write_relations(self, relations: list[Relation]) -> int:
        self._require_writable()
        by_type = records.relation_columns(relations)
        self._check_relation_types(by_type)
        endpoints: set[str] = set()
        for columns in by_type.values():
            endpoints.update(columns.head)
            endpoints.update(columns.tail)
        self._require_entities(endpoints, "relations")
        plans = {relation_type: self._plan_relations(relation_type, columns) for relation_type, columns in by_type.items()}
        created = sum(len(new) for new, _ in plans.values())
        if not created and not any(updates for _, updates in plans.values()):
            return 0
        copy = created >= _COPY_FROM_ROWS  # one COPY checkpoint for the whole transaction
        with self._transaction("write relations"):
            for relation_type, (new, updates) in plans.items():
                if len(new):
                    if relation_type.lower() not in self._relation_types:
                        self._execute(queries.create_relation_table(relation_type), {}, action="create a relation table")
                        self._relation_types[relation_type.lower()] = relation_type
                    self._insert_table(queries.relation_table_of(relation_type), _relation_table(new), copy=copy,
                                       action="write relations")
                self._merge_relation_rows(relation_type, updates)
        return created

    def _plan_relations(
        self, relation_type: str, columns: records.RelationColumns
    ) -> tuple[records.RelationColumns, list[dict[str, Any]]]:
        """Split one type's batch into relations to create and merged rows to update (unchanged edges dropped)."""
        present = self._stored_confidences(relation_type, columns)
        if not present:
            return columns, []
        new = columns.take([i for i in range(len(columns)) if i not in present])
        # Only a relation that brings evidence or a higher confidence can change its stored edge.
        changing = [i for i, confidence in present.items() if records.adds_to_stored(
            columns.sources[i], columns.sentences[i], columns.confidence[i], confidence)]
        updates = []
        if changing:
            stored = self._stored_relations(relation_type, columns.take(changing))
            for subset_position, position in enumerate(changing):
                merged = records.merge_stored_relation(stored[subset_position], columns.row(position))
                if merged is not None:
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
            for chunk in batched(source_ids, _LOOKUP_CHUNK):
                for row in self._rows(queries.mention_keys_of_sources(), {"ids": list(chunk)}, action="look up mentions"):
                    stored.add((row["entity_id"], row["source_id"], row["start_char"], row["end_char"]))
            return stored
        query = queries.mention_keys_of_source()
        for source_id in source_ids:
            for row in self._rows(query, {"source_id": source_id}, action="look up mentions"):
                stored.add((row["entity_id"], source_id, row["start_char"], row["end_char"]))
        return stored

    def _stored_confidences(self, relation_type: str, columns: records.RelationColumns) -> dict[int, float]:
        """Return the confidence of each stored edge of one type among the pairs of ``columns``, by position."""
        return self._stored_edges(relation_type, columns, lists=False)

    def _stored_relations(self, relation_type: str, columns: records.RelationColumns) -> dict[int, dict[str, Any]]:
        """Return the stored edges (confidence, sources, sentences) among the pairs of ``columns``, by position."""
        return self._stored_edges(relation_type, columns, lists=True)

    def _stored_edges(self, relation_type: str, columns: records.RelationColumns, *, lists: bool) -> dict[int, Any]:
        if relation_type.lower() not in self._relation_types:
            return {}
        count = self._rows(queries.count_relations_of_type(relation_type), {}, action="count rows")[0]["n"]
        if not count:
            return {}
        if count <= len(columns) * _SCAN_ROWS_PER_LOOKUP:  # one scan of the table, joined on the keys
            pairs = _arrow_columns({"head": columns.head, "tail": columns.tail, "i": range(len(columns))},
                                   (("head", "STRING"), ("tail", "STRING"), ("i", "INT64")))
            page = self._columns(queries.relations_in_rows(relation_type, lists=lists), {"rows": pairs},
                                 action="look up relations")
            if not lists:
                return dict(zip(page["i"], page["confidence"], strict=True))
            return {
                position: {"confidence": confidence, "sources": sources, "sentences": sentences}
                for position, confidence, sources, sentences in zip(
                    page["i"], page["confidence"], page["sources"], page["sentences"], strict=True)
            }
        query = queries.relation_between(relation_type)
        stored: dict[int, Any] = {}
        for position, (head, tail) in enumerate(zip(columns.head, columns.tail, strict=True)):
            found = self._rows(query, {"head": head, "tail": tail}, action="look up relations")
            if found:
                stored[position] = found[0] if lists else found[0]["confidence"]
        return stored

    def _scan_is_cheaper(self, count_query: str, lookups: int) -> bool:
        """Whether one scan of a relationship table beats ``lookups`` primary-key queries."""
        edges = self._rows(count_query, {}, action="count rows")[0]["n"]
        return edges <= lookups * _SCAN_ROWS_PER_LOOKUP

    def _require_stored(self, what: str, query: str, ids: list[str], writing: str) -> None:
        stored = self._existing_ids(query, ids) if ids else set()
        missing = [key for key in ids if key not in stored]
        if missing:
            self._missing(what, missing, writing)

    def _require_entities(self, ids: set[str], writing: str) -> None:
        """Raise unless every id in ``ids`` is a stored entity (one scan or one join for a large batch)."""
        if len(ids) <= _LOOKUP_CHUNK:
            self._require_stored("entities", queries.existing_entity_ids(), sorted(ids), writing)
            return
        stored = self._rows(queries.count_entities(), {}, action="count entities")[0]["n"]
        if stored <= len(ids) * _SCAN_PER_KEY:
            missing = ids.difference(self._columns(queries.entity_ids(), {}, action="look up entities")["id"])
        else:
            table = _arrow_columns({"id": list(ids)}, (("id", "STRING"),))
            found = self._rows(queries.count_entities_in_rows(), {"rows": table}, action="look up entities")[0]["n"]
            if found == len(ids):
                return
            missing = ids.difference(self._columns(queries.entity_names_in_rows(), {"rows": table},
                                                   action="look up entities")["id"])
        if missing:
            self._missing("entities", sorted(missing), writing)

    def _missing(self, what: str, missing: list[str], writing: str) -> None:
        shown = ", ".join(repr(key) for key in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise StoreError(
            f"cannot write {writing} to the store at {self.uri}: {len(missing)} {what} not stored ({shown}); "
            f"upsert the {what} first"
        )

    def _known_sources(self, source_ids: list[str]) -> set[str]:
        return self._existing_ids(queries.complete_source_ids(), source_ids)

    def _source_domains(self, source_ids: list[str]) -> dict[str, str]:
        if not self._source_domain:
            return dict.fromkeys(self._known_sources(source_ids), "")
        found: dict[str, str] = {}
        for chunk in batched(source_ids, _LOOKUP_CHUNK):
            for row in self._rows(queries.source_domains(), {"ids": list(chunk)}, action="read source domains"):
                found[row["id"]] = row["domain"] or ""
        return found

    def _retract_sources(self, source_ids: list[str]) -> Retraction:
        self._require_writable()
        ids = sorted(self._existing_ids(queries.existing_source_ids(), source_ids))
        if not ids:
            return Retraction()
        retracted, touched = set(ids), set()
        extracted = {"ids": ids, "provenance": PROVENANCE_EXTRACTED}
        with self._transaction("retract sources"):
            mentioned = [row["id"] for row in self._rows(queries.extracted_mentions_of_sources(), extracted,
                                                          action="read mentions")]
            touched.update(mentioned)
            self._execute(queries.delete_extracted_mentions(), extracted, action="delete mentions")
            removed = updated = 0
            for relation_type in self._relation_types_now():
                deletes, updates = [], []
                for row in self._rows(queries.relations_citing(relation_type), {"ids": ids}, action="read relations"):
                    touched.update((row["head"], row["tail"]))
                    sources, sentences = records.without_sources(row["sources"] or [], row["sentences"] or [], retracted)
                    pair = {"head": row["head"], "tail": row["tail"]}
                    if sources:
                        updates.append({**pair, "confidence": row["confidence"], "sources": sources, "sentences": sentences})
                    else:
                        deletes.append(pair)
                if deletes:
                    self._execute(queries.delete_relations(relation_type),
                                  {"rows": _arrow(deletes, (("head", "STRING"), ("tail", "STRING")))},
                                  action="delete relations")
                if updates:
                    self._execute(queries.update_relations(relation_type), {"rows": _arrow(updates, _RELATION_MERGE)},
                                  action="update relation sources")
                removed, updated = removed + len(deletes), updated + len(updates)
            orphans = [row["id"] for row in self._rows(queries.unconnected_entities(), {"ids": sorted(touched)},
                                                        action="find unconnected entities")] if touched else []
            if orphans:
                self._execute(queries.delete_entities(), {"ids": orphans}, action="delete entities")
            self._execute(queries.sources_to_placeholders(), {"ids": ids}, action="retract sources")
        self._alias_index = None
        return Retraction(sources=len(ids), mentions=len(mentioned), relations_removed=removed,
                          relations_updated=updated, entities_removed=len(orphans))

    def _sources_without_mentions(self) -> list[Source]:
        return [records.source_from_row(row) for row in self._rows(queries.sources_without_mentions(), {},
                                                                   action="read sources")]

    def _get_entity(self, entity_id: str) -> Entity | None:
        found = self._entities_by_id([entity_id])
        return found.get(entity_id)

    def _entities_by_id(self, entity_ids: Sequence[str]) -> dict[str, Entity]:
        found: dict[str, Entity] = {}
        for chunk in batched(list(dict.fromkeys(entity_ids)), _LOOKUP_CHUNK):
            result = self._execute(queries.entities_by_id(), {"ids": list(chunk)}, action="read entities")
            for entity_id, name, type_, domain, aliases, ontology_ids in result.get_all():
                found[entity_id] = Entity(entity_id, name or "", type_ or "", domain or "", aliases or [], ontology_ids or [])
        return found

    def _get_sources(self, source_ids: list[str]) -> dict[str, Source]:
        found: dict[str, Source] = {}
        for chunk in batched(source_ids, _LOOKUP_CHUNK):
            for row in self._rows(queries.sources_by_id(), {"ids": list(chunk)}, action="read sources"):
                source = records.source_from_row(row)
                found[source.id] = source
        return found

    def _relations_between(self, relation_type: str, pairs: list[tuple[str, str]]) -> list[Relation]:
        query = queries.relations_between_pairs(relation_type)  # validates the type before any lookup
        stored_type = self._relation_types.get(relation_type.lower())
        if stored_type != relation_type:
            return []
        found = []
        for chunk in batched(pairs, _LOOKUP_CHUNK):
            wanted = set(chunk)
            parameters = {"heads": list(dict.fromkeys(h for h, _ in chunk)), "tails": list(dict.fromkeys(t for _, t in chunk))}
            found += [records.relation_from_row({**row, "type": relation_type})
                      for row in self._rows(query, parameters, action="read relations") if (row["head"], row["tail"]) in wanted]
        return found

    def _entity_rows_by_key(self, raw: str, key: str, limit: int) -> list[dict[str, Any]]:
        return self._rows(queries.entity_by_exact_key(), {"raw": raw, "key": key, "limit": limit}, action="find entities")

    def _entity_name_rows(self) -> list[dict[str, Any]]:
        return self._rows(queries.entity_names(), {}, action="read entity names")

    def _subgraph(self, entity_ids: list[str], hops: int, limit: int) -> Subgraph:
        seeds = list(dict.fromkeys(str(entity_id) for entity_id in entity_ids))
        node_of: dict[str, int] = {}
        for chunk in batched(seeds, _LOOKUP_CHUNK):
            for entity_id, node in self._execute(queries.entity_nodes(), {"ids": list(chunk)},
                                                 action="look up entities").get_all():
                node_of[entity_id] = node
        chosen = [entity_id for entity_id in seeds if entity_id in node_of][:limit]
        if not chosen:
            return Subgraph()
        has_relations = bool(self._relation_types or self._load_relation_types())
        frontier = chosen
        for _ in range(hops if has_relations else 0):
            if len(chosen) >= limit or not frontier:
                break
            # The store ranks each level (most edges to the frontier first, then by id); asking for as many
            # more as are visited leaves the budget once the visited ones are dropped here (filtering them in
            # the query costs more than fetching them).
            visited = set(chosen)
            budget = limit - len(chosen)
            if len(chosen) == 1:  # one seed: a primary-key lookup beats masking the scan (~3x)
                query, parameters = queries.ranked_neighbors_of_one(), {"id": chosen[0], "limit": budget}
            else:
                query = queries.ranked_neighbors()
                parameters = {"nodes": [node_of[entity_id] for entity_id in frontier], "limit": budget + len(visited)}
            frontier = []
            for entity_id, node, _ in self._execute(query, parameters, action="expand neighbours").get_all():
                if entity_id not in visited and len(frontier) < budget:
                    node_of[entity_id] = node
                    frontier.append(entity_id)
            chosen = chosen + frontier
        entities = self._entities_by_id(chosen)
        relations: list[Relation] = []
        if len(chosen) > 1 and has_relations:
            nodes = [node_of[entity_id] for entity_id in chosen]
            rows = self._execute(queries.relations_among(), {"nodes": nodes}, action="read relations").get_all()
            position = {node: i for i, node in enumerate(nodes)}
            rows.sort(key=lambda row: (position[row[0]], position[row[2]], row[1]))
            relations = [
                Relation(chosen[position[head]], type_, chosen[position[tail]], float(confidence or 0.0),
                         extractor or "", sources or [], sentences or [])
                for head, type_, tail, confidence, extractor, sources, sentences in rows
            ]
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
        rows = self._rows(queries.mentions_of_entity(provenance=self._mention_provenance),
                          {"entity_id": entity_id, "limit": limit}, action="read mentions")
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
        retrieved = 0
        if mentions and self._mention_provenance:
            retrieved = self._rows(queries.count_mentions_by_provenance(), {"provenance": PROVENANCE_RETRIEVED})[0]["n"]
        return GraphStats.of_counts(entities_by_type, relations_by_type, sources_by_kind, mentions, retrieved)

    def _cypher(self, query: str, parameters: dict[str, Any], write: bool) -> list[dict[str, Any]]:
        # A parameter makes LadybugDB prepare the query, which it does for one statement only (as Bolt runs one):
        # "COMMIT; MATCH (n) DETACH DELETE n" cannot step out of the read-only transaction below.
        parameters = parameters or {"kgmm_one_statement": True}
        try:
            if write:
                self._require_writable()
                self._alias_index = None  # the query may change entity names
                return self._rows(query, parameters, action="run the Cypher query")
            if self.read_only:  # the database itself refuses writes
                return self._rows(query, parameters, action="run the Cypher query")
            self._execute("BEGIN TRANSACTION READ ONLY", {}, action="run the Cypher query")
            try:
                return self._rows(query, parameters, action="run the Cypher query")
            finally:
                try:
                    self._execute("ROLLBACK", {}, action="end the read-only transaction")
                except StoreError:
                    pass  # the failed statement ended the transaction already
        except StoreError as e:
            failure = _cypher_failure(e, self.uri)
            if failure is e:
                raise
            raise failure from e

    def _node_ranges(self) -> Iterator[dict[str, int]]:
        """Yield [start, stop) windows over the Entity table's internal offsets, for paging without sorting."""
        last = self._rows(queries.max_entity_node(), {}, action="count entities")[0]["node"]
        for start in range(0, -1 if last is None else int(last) + 1, PAGE_SIZE):
            yield {"start": start, "stop": start + PAGE_SIZE}

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

    def _iter_mentions(self) -> Iterator[Mention]:
        for window in self._node_ranges():
            rows = self._rows(queries.mention_range(provenance=self._mention_provenance), window, action="read mentions")
            rows.sort(key=lambda row: (row["entity_id"], row["source_id"], row["start_char"], row["end_char"]))
            yield from (records.mention_from_row(row["entity_id"], row) for row in rows)


def _cypher_failure(error: StoreError, uri: str) -> StoreError:
    """Return the error a raw Cypher query failed with, saying so in one line where the database refused a write or
    a query of several statements."""
    message = str(error.__cause__ or error)
    lowered = message.lower()
    if "read-only" in lowered or "read only" in lowered:
        return WriteRefusedError(
            f"refused: the Cypher query writes, and the store at {uri} is open read-only for it ({message.strip()}); "
            "to let it write, pass --write to kgmm cypher (write=True in Python)"
        )
    if "multiple statements" in lowered:
        return StoreError(f"could not run the Cypher query on the store at {uri}: it holds several statements; "
                          "run one statement per query")
    return error


class _NoConnection:
    """Stands in for a connection that failed to open, so the database reference is still released."""

    def close(self) -> None:
        return None

