"""The server graph store: Neo4j 5 over Bolt, through the official ``neo4j`` driver.

Entities are ``:Entity`` nodes that also carry their type as a label (``:Entity:Drug``); relations are
typed relationships (``:TREATS``); sources are ``:Source`` nodes linked by ``MENTIONED_IN``. Uniqueness
constraints on ``Entity.id`` and ``Source.id`` are created on first use (``IF NOT EXISTS``), or must
already exist (``graph/schema.cypher``) when the user may not change the schema.

Every upsert is one managed transaction (``session.execute_write``, retried by the driver on transient
errors and lost connections): it reads what is stored for the batch's keys, merges with the same rules
as every backend (:mod:`kgmm.store.records`), and writes with batched ``UNWIND $rows`` (entities by
``CREATE`` once the same transaction found them absent, relations by ``MERGE``). A transaction that did
not commit leaves nothing behind, and writing a batch again changes nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from kgmm.errors import MissingDependencyError, StoreError, ValidationError, WriteRefusedError
from kgmm.schema import (
    PROVENANCE_EXTRACTED,
    PROVENANCE_RETRIEVED,
    Entity,
    GraphStats,
    Mention,
    Relation,
    Source,
    Subgraph,
    is_valid_label,
    normalize_name,
)
from kgmm.store import records
from kgmm.store.base import GraphStore, Retraction
from kgmm.store.queries import neo4j as queries
from kgmm.utils import batched, paused_gc

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 5_000
_SCHEMA_FIX = (
    "ask an administrator to run graph/schema.cypher once (cypher-shell -f graph/schema.cypher), "
    "or connect as a user who may create constraints"
)


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """Return ``uri`` without its user-info part, and the user and password it carried (or None)."""
    parts = urlsplit(uri)
    scheme, _, rest = uri.partition("://")
    userinfo_given = "@" in rest
    try:
        port = parts.port
    except ValueError:
        port = None
        shown = f"{scheme}://{rest.rsplit('@', 1)[-1]}" if "@" in rest else uri
        raise StoreError(f"the store URI {shown} has an invalid port: expected bolt://host:7687") from None
    if parts.username is None and parts.password is None:
        if userinfo_given:
            raise StoreError(
                f"could not read the user and password in the store URI {scheme}://...@{rest.rsplit('@', 1)[-1]}: "
                "percent-encode '/', '?', '#' and '@' in them (e.g. %2F), or use --user and NEO4J_PASSWORD"
            )
        return uri, None, None
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, unquote(parts.username) if parts.username else None, unquote(parts.password) if parts.password else None


def _plain(value: Any) -> Any:
    """Return a driver value as plain Python (nodes and relationships as dicts of their properties)."""
    from neo4j.graph import Node, Path, Relationship

    if isinstance(value, Node):
        return {**{k: _plain(v) for k, v in value.items()}, "_labels": sorted(value.labels)}
    if isinstance(value, Relationship):
        return {**{k: _plain(v) for k, v in value.items()}, "_type": value.type}
    if isinstance(value, Path):
        return {"nodes": [_plain(n) for n in value.nodes], "relationships": [_plain(r) for r in value.relationships]}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "to_native"):  # neo4j.time values
        return value.to_native()
    return value


def _list_or_none(values: Sequence[str]) -> list[str] | None:
    """A list property as written: its strings, or None (not stored) when empty."""
    return [str(value) for value in values] if values else None


def _grouped_chunks(tails_of: dict[str, list[str]], size: int) -> Iterator[list[list[Any]]]:
    """Yield ``[head, tails]`` rows in chunks of about ``size`` edges."""
    chunk: list[list[Any]] = []
    edges = 0
    for head, tails in tails_of.items():
        chunk.append([head, tails])
        edges += len(tails)
        if edges >= size:
            yield chunk
            chunk, edges = [], 0
    if chunk:
        yield chunk


def _entity_row(batch: records.EntityColumns, i: int) -> list[Any]:
    """Row ``i`` of a batch as :func:`queries.create_entities` takes it (``queries.ENTITY_ROW``)."""
    name, aliases = str(batch.name[i]), batch.aliases[i]
    return [batch.id[i], name, batch.type[i], str(batch.domain[i]), _list_or_none(aliases),
            _list_or_none(batch.ontology_ids[i]), normalize_name(name), records.alias_keys(aliases) if aliases else None]


class _WriteAttempt(Exception):
    """Raised inside a read transaction whose query wrote, so the driver rolls it back (not retried)."""


class Neo4jStore(GraphStore):
    """A knowledge graph stored in a Neo4j 5 database (or any server that speaks Bolt and Neo4j 5 Cypher).

    Args:
        uri (str): ``bolt://``, ``neo4j://`` (a cluster) or their ``+s`` / ``+ssc`` secure forms; may carry
            ``user:password@``.
        user (str, optional): overrides the URI's user; else ``$NEO4J_USER``, else ``neo4j``.
        password (str, optional): overrides the URI's password; else ``$NEO4J_PASSWORD``. There is no default.
        database (str, optional): the database to use; else ``$NEO4J_DATABASE``, else the server's default.
        read_only (bool, optional): refuse writes and route reads to any cluster member. (default: :obj:`False`)
        batch_size (int, optional): rows per ``UNWIND`` statement of a write. (default: 5000)
        retry_seconds (float, optional): how long the driver retries a transaction after transient errors or a
            lost connection before giving up. (default: 30)
    """

    def __init__(
        self,
        uri: str,
        *,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        read_only: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        retry_seconds: float = 30.0,
        connection_timeout: float = 10.0,
    ) -> None:
        try:
            import neo4j
        except ImportError as e:  # pragma: no cover - neo4j is a core dependency
            raise MissingDependencyError("neo4j") from e
        self._neo4j = neo4j
        bare, uri_user, uri_password = split_credentials(str(uri).strip())
        self.uri = bare
        self.user = user or uri_user or os.environ.get("NEO4J_USER") or "neo4j"
        secret = password if password is not None else uri_password
        if secret is None:
            secret = os.environ.get("NEO4J_PASSWORD")
        self.database = database or os.environ.get("NEO4J_DATABASE") or None
        self.read_only = bool(read_only)
        if int(batch_size) < 1:
            raise ValidationError(f"expected a batch size of at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        auth = (self.user, secret) if secret is not None else None
        try:
            self._driver = neo4j.GraphDatabase.driver(
                bare, auth=auth, max_transaction_retry_time=float(retry_seconds),
                connection_timeout=float(connection_timeout), user_agent="kgmm",
            )
        except (neo4j.exceptions.ConfigurationError, ValueError) as e:
            raise StoreError(f"cannot use the store URI {self.uri}: {e} (expected bolt://host:7687 or neo4j://host:7687)") from e
        try:
            self._check_server(has_password=secret is not None)
            if not self.read_only:
                self._prepare_schema()
        except BaseException:
            self._driver.close()
            raise

    def __repr__(self) -> str:
        database = f", database={self.database!r}" if self.database else ""
        return f"{type(self).__name__}({self.uri!r}{database})"

    @property
    def where(self) -> str:
        """The URI and database, as error messages name them."""
        return f"{self.uri} (database {self.database})" if self.database else self.uri

    def close(self) -> None:
        """Close the driver and its connections."""
        driver = getattr(self, "_driver", None)
        if driver is not None:
            driver.close()

    def _failure(self, error: Exception, action: str, *, has_password: bool = True) -> StoreError:
        """Return the one-sentence StoreError for a driver error, naming the URI and the fix."""
        exceptions = self._neo4j.exceptions
        code = getattr(error, "code", None) or ""
        message = " ".join(str(getattr(error, "message", None) or error).split())  # one line
        if isinstance(error, exceptions.AuthError) or code.startswith("Neo.ClientError.Security.Unauthorized"):
            fix = ("set NEO4J_PASSWORD (and NEO4J_USER or --user), or put them in the URI as bolt://user:password@host:7687"
                   if not has_password else "check --user / NEO4J_USER and NEO4J_PASSWORD")
            return StoreError(f"the server at {self.uri} refused user {self.user!r} (wrong user or password): {fix}")
        if code == "Neo.ClientError.Database.DatabaseNotFound":
            return StoreError(
                f"the server at {self.uri} has no database {self.database!r}: create it (CREATE DATABASE "
                f"{self.database}) or pass an existing one with --database / NEO4J_DATABASE"
            )
        if isinstance(error, exceptions.IncompleteCommit):
            return StoreError(
                f"could not {action}: the connection to {self.uri} was lost while committing, so the write may or "
                "may not have been applied; run the command again (writes are idempotent)"
            )
        if isinstance(error, exceptions.ServiceUnavailable | exceptions.SessionExpired):
            return StoreError(
                f"could not {action}: cannot reach the Neo4j server at {self.uri} ({message}); check that it is "
                "running and the host and port are right (docker compose -f graph/docker-compose.yml up -d starts one)"
                + ("; nothing of the unfinished write was kept, so run the command again" if action.startswith("write") else "")
            )
        if isinstance(error, exceptions.Forbidden) or code.startswith("Neo.ClientError.Security"):
            return StoreError(f"could not {action} on {self.where}: the user {self.user!r} is not allowed to ({message})")
        if isinstance(error, exceptions.ConstraintError):
            return StoreError(f"could not {action} on {self.where}: a uniqueness constraint refused it ({message})")
        return StoreError(f"could not {action} on {self.where}: {message}")

    def _run(self, work: Callable[[Any], Any], *, write: bool, action: str) -> Any:
        """Run ``work(tx)`` in one managed transaction (retried by the driver on transient errors)."""
        exceptions = self._neo4j.exceptions
        if write and self.read_only:
            raise StoreError(f"the store at {self.where} was opened read-only; open it with read_only=False to write")
        try:
            with self._driver.session(database=self.database, default_access_mode="WRITE" if write else "READ") as session:
                return session.execute_write(work) if write else session.execute_read(work)
        except (exceptions.Neo4jError, exceptions.DriverError) as e:
            raise self._failure(e, action) from e

    def _rows(self, query: str, parameters: dict[str, Any], *, action: str = "read") -> list[dict[str, Any]]:
        return self._run(lambda tx: tx.run(query, parameters).data(), write=False, action=action)

    def _check_server(self, *, has_password: bool) -> None:
        exceptions = self._neo4j.exceptions
        try:
            with self._driver.session(database=self.database, default_access_mode="READ") as session:
                components = session.run(queries.server_components()).data()
        except (exceptions.Neo4jError, exceptions.DriverError) as e:
            raise self._failure(e, "connect", has_password=has_password) from e
        except ValueError as e:  # e.g. a host name that does not resolve
            raise StoreError(f"cannot reach the Neo4j server at {self.uri}: {e}; check the host name in the URI") from e
        for component in components:
            versions = component.get("versions") or []
            major = versions[0].split(".")[0] if versions else ""
            if major.isdigit() and int(major) < 5:
                raise StoreError(
                    f"the server at {self.uri} runs Neo4j {versions[0]}; kgmm needs Neo4j 5 or later "
                    "(its constraint syntax and Cypher): upgrade the server, or use a directory for the embedded store"
                )

    def _prepare_schema(self) -> None:
        """Create the constraints and indexes (idempotent); require the uniqueness constraints to exist."""
        exceptions = self._neo4j.exceptions
        refused: list[str] = []
        try:
            with self._driver.session(database=self.database) as session:
                for statement in queries.SCHEMA:
                    try:
                        session.run(statement).consume()
                    except exceptions.Neo4jError as e:
                        refused.append(getattr(e, "message", None) or str(e))
        except exceptions.DriverError as e:
            raise self._failure(e, "prepare the schema") from e
        if not refused:
            return
        try:
            rows = self._rows(queries.show_constraints(), {}, action="list constraints")
        except StoreError as e:
            raise StoreError(
                f"could not create kgmm's constraints on {self.where} ({refused[0]}) nor list the existing ones ({e}); "
                f"{_SCHEMA_FIX}"
            ) from e
        present = {
            (label, prop)
            for row in rows
            if "UNIQUE" in str(row.get("type", "")).upper()
            for label in row.get("labelsOrTypes") or []
            for prop in row.get("properties") or []
        }
        missing = [f":{label}({prop})" for label, prop in queries.REQUIRED_CONSTRAINTS if (label, prop) not in present]
        if missing:
            raise StoreError(
                f"{self.where} has no uniqueness constraint on {' and '.join(missing)} and creating it failed "
                f"({refused[0]}): without it writes are slow and may duplicate entities; {_SCHEMA_FIX}"
            )
        log.info("kgmm: %s refused optional schema statements (%s); continuing without them", self.where, refused)

    def _write_rows(self, tx: Any, query: str, rows: list[dict[str, Any]]) -> None:
        for chunk in batched(rows, self.batch_size):
            tx.run(query, {"rows": list(chunk)}).consume()

    def _lookup(self, tx: Any, query: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for chunk in batched(list(ids), self.batch_size):
            found.extend(tx.run(query, {"ids": list(chunk)}).data())
        return found

    def _require_stored(self, tx: Any, ids: list[str], writing: str) -> None:
        stored = {row["id"] for row in self._lookup(tx, queries.existing_entity_ids(), ids)}
        missing = [key for key in ids if key not in stored]
        if missing:
            shown = ", ".join(repr(key) for key in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise StoreError(
                f"cannot write {writing} to the store at {self.where}: {len(missing)} entities not stored ({shown}); "
                "upsert the entities first"
            )

    def _upsert_sources(self, sources: list[Source], domain: str) -> int:
        batch: dict[str, Source] = {}
        for source in sources:
            batch.setdefault(source.id, source)
        rows_of = {source_id: records.source_row(source, domain) for source_id, source in batch.items()}

        def work(tx: Any) -> int:
            complete = {row["id"] for row in self._lookup(tx, queries.complete_source_ids(), list(batch))}
            rows = [row for source_id, row in rows_of.items() if source_id not in complete]
            self._write_rows(tx, queries.write_sources(), rows)
            return len(rows)

        return self._run(work, write=True, action="write sources")

    def _upsert_entities(self, entities: list[Entity]) -> int:
        with paused_gc():
            return self._write_entities(entities)

    def _write_entities(self, entities: list[Entity]) -> int:
        batch = records.entity_columns(entities)
        for entity_type in set(batch.type):
            queries.label(entity_type, kind="entity type")
        position = {entity_id: i for i, entity_id in enumerate(batch.id)}
        # [id, name, has lists]: the store tells which are stored and which of those the batch may change.
        keys = [[entity_id, str(name), bool(aliases or ontology_ids)] for entity_id, name, aliases, ontology_ids
                in zip(batch.id, batch.name, batch.aliases, batch.ontology_ids, strict=True)]

        def work(tx: Any) -> int:
            present: set[str] = set()
            changing: list[str] = []
            if tx.run(queries.any_entity()).single() is not None:
                for chunk in batched(keys, self.batch_size):
                    found = tx.run(queries.stored_entity_keys(), {"rows": chunk}).single()
                    present.update(found["present"])
                    changing.extend(found["changing"])
            by_type: dict[str, list[list[Any]]] = {}
            for i, entity_id in enumerate(batch.id):
                if entity_id not in present:
                    by_type.setdefault(batch.type[i], []).append(_entity_row(batch, i))
            for entity_type, rows in by_type.items():
                self._write_rows(tx, queries.create_entities(entity_type), rows)
            updates = []
            for row in self._lookup(tx, queries.entities_by_id(), list(dict.fromkeys(changing))):
                known = records.entity_from_row(row)
                if records.absorb(known, batch.entity(position[known.id])):
                    updates.append(records.entity_list_update(known))
            self._write_rows(tx, queries.update_entity_lists(), updates)
            return sum(len(rows) for rows in by_type.values())

        self._alias_index = None
        try:
            return self._run(work, write=True, action="write entities")
        except StoreError as e:
            if not isinstance(e.__cause__, self._neo4j.exceptions.ConstraintError):
                raise
            # Another writer created one of these entities after this transaction looked: the uniqueness
            # constraint refused the twin and nothing was written. Once more: it now takes the update path.
            return self._run(work, write=True, action="write entities")

    def _upsert_mentions(self, mentions: list[Mention]) -> int:
        batch: dict[tuple[str, str, int, int], Mention] = {}
        for mention in mentions:
            batch.setdefault(records.mention_key(mention), mention)
        entity_ids = list(dict.fromkeys(key[0] for key in batch))
        source_ids = list(dict.fromkeys(key[1] for key in batch))

        def work(tx: Any) -> int:
            self._require_stored(tx, entity_ids, "mentions")
            present = {row["id"] for row in self._lookup(tx, queries.existing_source_ids(), source_ids)}
            stored = {
                (row["entity_id"], row["source_id"], row["start_char"], row["end_char"])
                for row in self._lookup(tx, queries.mention_keys_of_sources(), [s for s in source_ids if s in present])
            }
            rows = [records.mention_row(key, m) for key, m in batch.items() if key not in stored]
            if rows:
                missing = [source_id for source_id in source_ids if source_id not in present]
                for chunk in batched(missing, self.batch_size):  # sources come last in an ingest batch
                    tx.run(queries.create_source_placeholders(), {"ids": list(chunk)}).consume()
                self._write_rows(tx, queries.create_mentions(), rows)
            return len(rows)

        return self._run(work, write=True, action="write mentions")

    def _upsert_relations(self, relations: list[Relation]) -> int:
        with paused_gc():
            return self._write_relations(relations)

    def _write_relations(self, relations: list[Relation]) -> int:
        by_type = records.relation_columns(relations)
        for relation_type in by_type:
            queries.label(relation_type, kind="relation type")

        def work(tx: Any) -> int:
            created = 0
            for relation_type, columns in by_type.items():
                present: set[int] = set()
                stored: dict[int, dict[str, Any]] = {}
                if tx.run(queries.any_relation(relation_type)).single() is not None:
                    present, stored = self._stored_relations(tx, relation_type, columns)
                new = [i for i in range(len(columns)) if i not in present]
                self._create_relations(tx, relation_type, columns, new)
                updates = [merged for i, edge in stored.items()
                           if (merged := records.merge_stored_relation(edge, columns.row(i))) is not None]
                self._write_rows(tx, queries.update_relations(relation_type), updates)
                created += len(new)
            return created

        return self._run(work, write=True, action="write relations")

    def _stored_relations(
        self, tx: Any, relation_type: str, columns: records.RelationColumns
    ) -> tuple[set[int], dict[int, dict[str, Any]]]:
        """Return the positions of ``columns`` that are stored edges, and the stored edge of each that the
        batch may change (it brings evidence or a higher confidence)."""
        keys = [
            [head, tail, i, bool(sources or sentences), float(confidence)]
            for i, (head, tail, confidence, sources, sentences) in enumerate(zip(
                columns.head, columns.tail, columns.confidence, columns.sources, columns.sentences, strict=True))
        ]
        present: set[int] = set()
        stored: dict[int, dict[str, Any]] = {}
        for chunk in batched(keys, self.batch_size):
            found = tx.run(queries.stored_relation_keys(relation_type), {"rows": chunk}).single()
            present.update(found["present"])
            stored.update((edge["i"], edge) for edge in found["stored"])
        return present, stored

    def _create_relations(self, tx: Any, relation_type: str, columns: records.RelationColumns,
                          positions: list[int]) -> None:
        """Create the relations at ``positions`` (absent at the start of this transaction); raise, so the
        transaction rolls back, when an end is not a stored entity."""
        batch = columns.take(positions)
        confidences, extractors = set(batch.confidence), set(batch.extractor)
        if len(confidences) == 1 and len(extractors) == 1 and not batch.has_evidence:
            tails_of: dict[str, list[str]] = {}
            for head, tail in zip(batch.head, batch.tail, strict=True):
                tails = tails_of.get(head)
                if tails is None:
                    tails_of[head] = [tail]
                else:
                    tails.append(tail)
            query = queries.create_plain_relations(relation_type)
            shared = {"confidence": float(confidences.pop()), "extractor": str(extractors.pop())}
            for rows in _grouped_chunks(tails_of, self.batch_size):
                self._check_written(tx, tx.run(query, {"rows": rows, **shared}), rows, grouped=True)
            return
        rows = [[head, tail, float(confidence), str(extractor), _list_or_none(sources), _list_or_none(sentences)]
                for head, tail, confidence, extractor, sources, sentences in zip(
                    batch.head, batch.tail, batch.confidence, batch.extractor, batch.sources, batch.sentences,
                    strict=True)]
        query = queries.create_relations(relation_type)
        for chunk in batched(rows, self.batch_size):
            self._check_written(tx, tx.run(query, {"rows": list(chunk)}), chunk, grouped=False)

    def _check_written(self, tx: Any, result: Any, rows: Sequence[list[Any]], *, grouped: bool) -> None:
        """Raise unless a create statement wrote every edge of ``rows`` (else an end is not stored)."""
        expected = sum(len(row[1]) for row in rows) if grouped else len(rows)
        if result.single()["n"] != expected:
            ends = [row[0] for row in rows] + ([tail for row in rows for tail in row[1]] if grouped else [row[1] for row in rows])
            self._require_stored(tx, list(dict.fromkeys(ends)), "relations")
            raise StoreError(f"could not write relations to the store at {self.where}: some were not created")

    def _known_sources(self, source_ids: list[str]) -> set[str]:
        return self._run(
            lambda tx: {row["id"] for row in self._lookup(tx, queries.complete_source_ids(), source_ids)},
            write=False, action="look up sources",
        )

    def _source_domains(self, source_ids: list[str]) -> dict[str, str]:
        return self._run(
            lambda tx: {row["id"]: row["domain"] for row in self._lookup(tx, queries.source_domains(), source_ids)},
            write=False, action="read source domains",
        )

    def _retract_sources(self, source_ids: list[str]) -> Retraction:
        retracted = set(source_ids)

        def work(tx: Any) -> Retraction:
            ids = [row["id"] for row in self._lookup(tx, queries.existing_source_ids(), source_ids)]
            if not ids:
                return Retraction()
            parameters = {"ids": ids, "provenance": PROVENANCE_EXTRACTED}
            mentioned = [row["id"] for row in tx.run(queries.delete_extracted_mentions(), parameters).data()]
            touched = set(mentioned)
            deletes: dict[str, list[dict[str, Any]]] = {}
            updates: dict[str, list[dict[str, Any]]] = {}
            for row in tx.run(queries.relations_citing(), {"ids": ids}).data():
                touched.update((row["head"], row["tail"]))
                sources, sentences = records.without_sources(row["sources"] or [], row["sentences"] or [], retracted)
                pair = {"head": row["head"], "tail": row["tail"]}
                if sources:
                    updates.setdefault(row["type"], []).append({**pair, "sources": sources, "sentences": sentences})
                else:
                    deletes.setdefault(row["type"], []).append(pair)
            for relation_type, rows in deletes.items():
                self._write_rows(tx, queries.delete_relations(relation_type), rows)
            for relation_type, rows in updates.items():
                self._write_rows(tx, queries.set_relation_evidence(relation_type), rows)
            removed = sum(tx.run(queries.delete_unconnected_entities(), {"ids": list(chunk)}).single()["n"]
                          for chunk in batched(sorted(touched), self.batch_size))
            tx.run(queries.sources_to_placeholders(), {"ids": ids}).consume()
            return Retraction(sources=len(ids), mentions=len(mentioned),
                              relations_removed=sum(map(len, deletes.values())),
                              relations_updated=sum(map(len, updates.values())), entities_removed=removed)

        self._alias_index = None
        return self._run(work, write=True, action="retract sources")

    def _sources_without_mentions(self) -> list[Source]:
        return [records.source_from_row(row) for row in self._rows(queries.sources_without_mentions(), {},
                                                                   action="read sources")]

    def _entities_by_id(self, entity_ids: Sequence[str]) -> dict[str, Entity]:
        ids = list(dict.fromkeys(entity_ids))
        rows = self._run(lambda tx: self._lookup(tx, queries.entities_by_id(), ids), write=False, action="read entities")
        return {row["id"]: records.entity_from_row(row) for row in rows}

    def _get_entity(self, entity_id: str) -> Entity | None:
        return self._entities_by_id([entity_id]).get(entity_id)

    def _get_sources(self, source_ids: list[str]) -> dict[str, Source]:
        rows = self._run(lambda tx: self._lookup(tx, queries.sources_by_id(), source_ids), write=False, action="read sources")
        return {row["source_id"]: records.source_from_row(row) for row in rows}

    def _relations_between(self, relation_type: str, pairs: list[tuple[str, str]]) -> list[Relation]:
        query = queries.relations_between_pairs(relation_type)
        rows = [{"head": head, "tail": tail} for head, tail in pairs]
        return [records.relation_from_row({**row, "type": relation_type})
                for chunk in batched(rows, self.batch_size)
                for row in self._rows(query, {"rows": list(chunk)}, action="read relations")]

    def _entity_rows_by_key(self, raw: str, key: str, limit: int) -> list[dict[str, Any]]:
        return self._rows(queries.entity_by_exact_key(), {"raw": raw, "key": key, "limit": limit}, action="find entities")

    def _entity_name_rows(self) -> list[dict[str, Any]]:
        return self._rows(queries.entity_names(), {}, action="read entity names")

    def _subgraph(self, entity_ids: list[str], hops: int, limit: int) -> Subgraph:
        seeds = list(dict.fromkeys(str(entity_id) for entity_id in entity_ids))

        def work(tx: Any) -> Subgraph:
            entities = {row["id"]: records.entity_from_row(row) for row in self._lookup(tx, queries.entities_by_id(), seeds)}
            chosen = [entity_id for entity_id in seeds if entity_id in entities][:limit]
            if not chosen:
                return Subgraph()
            frontier = chosen
            for _ in range(hops):
                if len(chosen) >= limit or not frontier:
                    break
                # The server ranks each level (most edges to the frontier first, then by id); asking for as
                # many more as are visited leaves the budget once the visited ones are dropped here.
                visited = set(chosen)
                budget = limit - len(chosen)
                rows = tx.run(queries.ranked_neighbors(), {"ids": frontier, "limit": budget + len(visited)}).single()["rows"]
                rows.sort(key=lambda row: (-row[6], row[0]))
                frontier = []
                for entity_id, name, type_, domain, aliases, ontology_ids, _ in rows:
                    if entity_id not in visited and len(frontier) < budget:
                        entities[entity_id] = Entity(entity_id, name or "", type_ or "", domain or "", aliases or [],
                                                     ontology_ids or [])
                        frontier.append(entity_id)
                chosen = chosen + frontier
            relations: list[Relation] = []
            if len(chosen) > 1:
                position = {entity_id: i for i, entity_id in enumerate(chosen)}
                rows = tx.run(queries.relations_among(), {"ids": chosen}).single()["rows"]
                rows.sort(key=lambda row: (position[row[0]], position[row[2]], row[1]))
                relations = [
                    Relation(head, type_, tail, float(confidence or 0.0), extractor or "", sources or [], sentences or [])
                    for head, type_, tail, confidence, extractor, sources, sentences in rows
                ]
            return Subgraph(entities=[entities[entity_id] for entity_id in chosen], relations=relations)

        return self._run(work, write=False, action="read a subgraph")

    def _relation_types(self) -> list[str]:
        rows = self._rows(queries.relationship_types(), {}, action="list relationship types")
        return sorted(row["type"] for row in rows if row["type"] != queries.MENTIONED_IN and row["type"])

    def _shortest_path(self, source_id: str, target_id: str, max_hops: int) -> Subgraph | None:
        if source_id == target_id:
            entity = self._get_entity(source_id)
            return Subgraph(entities=[entity]) if entity is not None else None
        relation_types = [t for t in self._relation_types() if is_valid_label(t) and t.lower() not in queries.RESERVED_KEYS]
        if not relation_types:
            return None
        rows = self._rows(queries.shortest_path(relation_types, max_hops),
                          {"source_id": source_id, "target_id": target_id}, action="find a path")
        if not rows:
            return None
        entities = self._entities_by_id(rows[0]["ids"])
        return Subgraph(
            entities=[entities[entity_id] for entity_id in rows[0]["ids"]],
            relations=[records.relation_from_row(rel) for rel in rows[0]["rels"]],
        )

    def _mentions(self, entity_id: str, limit: int) -> list[tuple[Mention, Source]]:
        rows = self._rows(queries.mentions_of_entity(), {"entity_id": entity_id, "limit": limit}, action="read mentions")
        return [(records.mention_from_row(entity_id, row), records.source_from_row(row)) for row in rows]

    def _stats(self) -> GraphStats:
        def work(tx: Any) -> GraphStats:
            entities_by_type = {row["type"]: row["n"] for row in tx.run(queries.count_entities_by_type()).data()}
            relations_by_type = {row["type"]: row["n"] for row in tx.run(queries.count_relations_by_type()).data()
                                 if row["n"] and row["type"] != queries.MENTIONED_IN}
            sources_by_kind = {row["kind"]: row["n"] for row in tx.run(queries.count_sources_by_kind()).data()}
            mentions = tx.run(queries.count_mentions()).data()[0]["n"]
            retrieved = tx.run(queries.count_mentions_by_provenance(), {"provenance": PROVENANCE_RETRIEVED}).data()[0]["n"]
            return GraphStats.of_counts(entities_by_type, relations_by_type, sources_by_kind, mentions, retrieved)

        return self._run(work, write=False, action="count the graph")

    def _cypher(self, query: str, parameters: dict[str, Any], write: bool) -> list[dict[str, Any]]:
        def work(tx: Any) -> list[dict[str, Any]]:
            result = tx.run(query, parameters)
            rows = [{key: _plain(value) for key, value in record.items()} for record in result]
            summary = result.consume()
            if not write and (summary.query_type in ("w", "rw", "s") or summary.counters.contains_updates
                              or summary.counters.contains_system_updates):
                # A server that ignores the read access mode (not Neo4j) still reports what the query did: raising
                # here rolls the transaction back.
                raise _WriteAttempt(summary.query_type)
            return rows

        if write:
            self._alias_index = None  # the query may change entity names
        try:
            return self._run(work, write=write, action="run the Cypher query")
        except _WriteAttempt as e:
            raise self._write_refused(f"the server reports a query of type {e.args[0]!r}; rolled back") from e
        except StoreError as e:
            if "access mode" in str(e).lower() or "read-only" in str(e).lower():
                raise self._write_refused(str(e.__cause__ or e)) from e
            raise

    def _write_refused(self, detail: str) -> WriteRefusedError:
        return WriteRefusedError(
            f"refused: the Cypher query writes, and {self.where} is open read-only for it ({detail}); to let it "
            "write, pass --write to kgmm cypher (write=True in Python)"
        )

    def _entity_pages(self) -> Iterator[list[dict[str, Any]]]:
        return self._keyset_pages(queries.entity_page(), "id", action="read entities")

    def _iter_entities(self) -> Iterator[Entity]:
        for page in self._entity_pages():
            yield from (records.entity_from_row(row) for row in page)

    def _iter_relations(self) -> Iterator[Relation]:
        for page in self._entity_pages():
            ids = [row["id"] for row in page]
            rows = self._rows(queries.relations_of_heads(), {"ids": ids}, action="read relations")
            yield from sorted((records.relation_from_row(row) for row in rows), key=lambda r: (r.type, r.head, r.tail))

    def _iter_mentions(self) -> Iterator[Mention]:
        for page in self._entity_pages():
            rows = self._rows(queries.mentions_of_entities(), {"ids": [row["id"] for row in page]}, action="read mentions")
            rows.sort(key=lambda row: (row["entity_id"], row["source_id"], row["start_char"], row["end_char"]))
            yield from (records.mention_from_row(row["entity_id"], row) for row in rows)
