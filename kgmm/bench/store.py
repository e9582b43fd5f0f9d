"""``kgmm bench store``: the MetaQA KB loaded into a store (embedded or over Bolt), 2-hop latency, and
neo4j-graphrag's writer on the same server."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from pathlib import Path

from kgmm.errors import KgmmError

DEFAULT_TRIPLES = Path("../shared/data/metaqa/kb.txt")
# ``--store`` words that start a temporary ArcadeDB Bolt server (graph/bolt_server.py) for the run.
TEMPORARY_SERVER_NAMES = ("arcadedb", "bolt-test")
GRAPHRAG_DATABASE = "kg_graphrag"  # the temporary server's second database, for Neo4jWriter
# Scratch databases of the temporary server: each writer loads the first WARM_UP_TRIPLES there, untimed, so
# neither is timed while the fresh server's JIT compiler warms up.
WARM_UP_DATABASES = {"kgmm": "kg_warm_up", "graphrag": "kg_graphrag_warm_up"}
WARM_UP_TRIPLES = 20_000
_BOLT_SCHEMES = ("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://")
_GRAPHRAG_INSTALL = 'neo4j-graphrag is not installed; install the benchmark extra with: pip install -e ".[bench]"'
# The reference query of the 2-hop timing; both engines take this Cypher as it is.
TWO_HOP_COUNT = "MATCH (a:Entity {id: $id})-[*1..2]-(b:Entity) RETURN count(DISTINCT b) AS n"


def bench_store(
    location: str | Path | None = None,
    *,
    triples: str | Path = DEFAULT_TRIPLES,
    compare_graphrag: bool = False,
    user: str | None = None,
    password: str | None = None,
    database: str | None = None,
    graphrag_database: str | None = None,
    batch_size: int | None = None,
    movies: int = 3,
    repeats: int = 50,
    seed: int = 0,
) -> dict:
    """Load a triples file into a store twice, then time 2-hop neighbourhoods; optionally load it with
    neo4j-graphrag's ``Neo4jWriter`` too. Return the measurements.

    A load is timed end to end: from reading the triples file to every entity and relation stored through
    the ``GraphStore`` upsert API (one call for the entities, one for the relations), plus one full garbage
    collection, which charges the load for the collector work it deferred. The second load of the
    same file must add nothing. The 2-hop neighbourhood of a few movies (heads of the file, drawn with
    ``seed``) is timed warm through ``GraphStore.neighbors(id, hops=2)`` and against the exact Cypher
    statements that call issued, replayed through the engine's own client (LadybugDB ``Connection`` /
    neo4j driver ``session.run``) with every row fetched; a plain 2-hop count query is timed for reference.
    On a temporary server each writer first loads the file's first 20,000 triples into a scratch database,
    untimed, so neither is timed while the fresh server's JIT compiler warms up.

    Args:
        location (str or Path, optional): where to load: ``None`` (a temporary embedded store, removed
            after), a new or empty directory (an embedded store, kept), a ``bolt://`` URI (an empty Neo4j
            database, emptied again after), or ``arcadedb`` (a temporary ArcadeDB server started with
            ``graph/bolt_server.py`` and stopped after).
        triples (str or Path, optional): the triples file. (default: the shared MetaQA ``kb.txt``)
        compare_graphrag (bool, optional): also load the file with neo4j-graphrag's ``Neo4jWriter`` (Bolt
            only), the same way, into ``graphrag_database`` or, without one, the same database after
            emptying it; then run it again to see whether it duplicates nodes. (default: :obj:`False`)
        user, password, database (str, optional): for a ``bolt://`` location (as :func:`kgmm.store.open_store`).
        graphrag_database (str, optional): an empty database for the Neo4jWriter load.
        batch_size (int, optional): rows per write statement of the Bolt store.
        movies (int, optional): how many movies' neighbourhoods to time. (default: 3)
        repeats (int, optional): timed calls per movie and way. (default: 50)
        seed (int, optional): picks the movies. (default: 0)

    Raises:
        KgmmError: when the location is not empty, neo4j-graphrag is missing, or a load fails.
    """
    triples = Path(triples)
    _check_inputs(location, triples, compare_graphrag)
    target = _StoreTarget.open(location, user=user, password=password, database=database, batch_size=batch_size,
                               graphrag=compare_graphrag)
    try:
        _warm_imports()
        report: dict = {"store": target.kind, "location": target.description, "triples_file": str(triples)}
        if target.server is not None:
            _warm_up_kgmm(target, triples)
            report["warm_up_triples"] = WARM_UP_TRIPLES
        first, read = _timed_load(target.store, triples)
        report["triples"] = len(read.relations)
        report["first_load"] = first
        chosen = _pick_movies(read, movies, seed)
        del read  # so the second load's collection walks only its own objects
        second, _ = _timed_load(target.store, triples)
        stats = target.store.stats()
        second["relations_after"] = stats.relations
        report["second_load"] = second
        report["entities"], report["relations"] = stats.entities, stats.relations
        report["two_hop"] = _time_two_hop(target, chosen, repeats)
        if compare_graphrag:
            report["graphrag"] = _graphrag_load(target, triples, graphrag_database, first)
        report["targets"] = _targets(report)
        return report
    finally:
        target.close()


def _check_inputs(location: str | Path | None, triples: Path, compare_graphrag: bool) -> None:
    """Raise :class:`KgmmError` for a missing triples file, or a graphrag comparison without a Bolt store or
    without neo4j-graphrag."""
    import importlib.util

    if not triples.is_file():
        raise KgmmError(f"no triples file at {triples}; pass --triples FILE (head|relation|tail per line)")
    if compare_graphrag:
        text = "" if location is None else str(location).strip().lower()
        if text not in TEMPORARY_SERVER_NAMES and not text.startswith(_BOLT_SCHEMES):
            raise KgmmError("--compare-graphrag needs a Bolt store: pass --store arcadedb or a bolt:// URI")
        if importlib.util.find_spec("neo4j_graphrag") is None:
            raise KgmmError(_GRAPHRAG_INSTALL)


def _pick_movies(read, movies: int, seed: int) -> list[tuple[str, str]]:
    """``(id, name)`` of ``movies`` heads of the loaded triples (MetaQA: the movies), drawn with ``seed``."""
    import random

    names = {entity.id: entity.name for entity in read.entities}
    heads = list(dict.fromkeys(relation.head for relation in read.relations))
    return [(entity_id, names[entity_id]) for entity_id in random.Random(seed).sample(heads, min(movies, len(heads)))]


def _warm_up_kgmm(target: _StoreTarget, triples: Path) -> None:
    """Load the first triples into the temporary server's scratch database, untimed."""
    from kgmm.sources.triples import read_triples
    from kgmm.store import open_store

    read = read_triples(triples)
    relations = read.relations[:WARM_UP_TRIPLES]
    used = {entity_id for relation in relations for entity_id in (relation.head, relation.tail)}
    uri, user, password = target.credentials
    with open_store(uri, user=user, password=password, database=WARM_UP_DATABASES["kgmm"],
                    batch_size=target.store.batch_size) as store:
        store.upsert_entities([entity for entity in read.entities if entity.id in used])
        store.upsert_relations(relations)


def _warm_imports() -> None:
    """Import what a first write pulls in (pyarrow, pandas via LadybugDB): a one-time cost, not load work."""
    import importlib

    for name in ("pyarrow", "pandas"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _timed_load(store, triples: Path) -> tuple[dict, object]:
    """Read the triples and upsert them (entities, then relations); return the timings and what was read."""
    from kgmm.sources.triples import read_triples

    started = time.perf_counter()
    read = read_triples(triples)
    read_done = time.perf_counter()
    new_entities = store.upsert_entities(read.entities)
    entities_done = time.perf_counter()
    new_relations = store.upsert_relations(read.relations)
    stored = time.perf_counter()
    # The reader and the stores pause the garbage collector; charge the collection that is still owed for
    # the objects this load made (one full one: an upper bound) to the load.
    gc.collect()
    done = time.perf_counter()
    seconds = done - started
    return {
        "seconds": round(seconds, 3),
        "relationships_per_s": round(len(read.relations) / seconds),
        "new_entities": new_entities,
        "new_relations": new_relations,
        "seconds_read": round(read_done - started, 3),
        "seconds_entities": round(entities_done - read_done, 3),
        "seconds_relations": round(stored - entities_done, 3),
        "seconds_gc": round(done - stored, 3),
    }, read


def _p50_ms(seconds: list[float]) -> float:
    import statistics

    return round(1000 * statistics.median(seconds), 3)


def _time_two_hop(target: _StoreTarget, movies: list[tuple[str, str]], repeats: int) -> dict:
    """p50 of ``neighbors(movie, hops=2)`` against the same statements replayed raw, and a 2-hop count
    (``movies``: id and name of each)."""
    store = target.store
    pooled: dict[str, list[float]] = {"graphstore": [], "raw": [], "count": []}
    per_movie = []
    for movie_id, movie in movies:

        def neighbors(movie_id: str = movie_id):
            return store.neighbors(movie_id, hops=2)

        for _ in range(3):  # warm the caches and the engine's query plans
            subgraph = neighbors()
        recorded = target.record_statements(neighbors)
        ways = {
            "graphstore": neighbors,
            "raw": target.raw_replay(recorded),
            "count": target.raw_replay([(TWO_HOP_COUNT, {"id": movie_id})]),
        }
        ways["raw"](), ways["count"]()
        times: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(repeats):  # interleaved, so drift of the machine hits the three alike
            for way, run in ways.items():
                started = time.perf_counter()
                run()
                times[way].append(time.perf_counter() - started)
        for way in ways:
            pooled[way] += times[way]
        per_movie.append({
            "movie": movie, "entities": len(subgraph.entities), "relations": len(subgraph.relations),
            "statements": len(recorded), "graphstore_p50_ms": _p50_ms(times["graphstore"]),
            "raw_p50_ms": _p50_ms(times["raw"]), "count_query_p50_ms": _p50_ms(times["count"]),
        })
    graphstore_p50, raw_p50 = _p50_ms(pooled["graphstore"]), _p50_ms(pooled["raw"])
    return {
        "movies": len(movies),
        "repeats": repeats,
        "statements_per_call": max((movie["statements"] for movie in per_movie), default=0),
        "graphstore_p50_ms": graphstore_p50,
        "raw_p50_ms": raw_p50,
        "ratio": round(graphstore_p50 / raw_p50, 3) if raw_p50 else None,
        "count_query_p50_ms": _p50_ms(pooled["count"]),
        "per_movie": per_movie,
    }


def _targets(report: dict) -> dict:
    """Whether the run meets the issue's targets (None where this run measured nothing to judge)."""
    second = report["second_load"]
    targets = {
        "second_load_adds_nothing": second["new_relations"] == 0 and second["new_entities"] == 0
        and second["relations_after"] == report["first_load"]["new_relations"],
        "two_hop_ratio_at_most_1_25": report["two_hop"]["ratio"] is not None and report["two_hop"]["ratio"] <= 1.25,
    }
    if report["store"] == "embedded":
        targets["embedded_at_least_200k_per_s"] = report["first_load"]["relationships_per_s"] >= 200_000
    if "graphrag" in report:
        targets["at_least_1_4x_graphrag"] = report["graphrag"]["ratio_kgmm_over_graphrag"] >= 1.4
    return targets


class _StoreTarget:
    """The store a benchmark loads, what was started for it, and raw access to its engine."""

    def __init__(self, kind: str, store, description: str, *, server=None, credentials=None,
                 after_close=None) -> None:
        self.kind = kind
        self.store = store
        self.description = description
        self.server = server  # a temporary ArcadeDB server, with an empty database for Neo4jWriter
        self.credentials = credentials  # (uri, user, password) of a Bolt store
        self.written: list[str | None] = []  # databases of a user's server that the run wrote into
        self._after_close = after_close

    @classmethod
    def open(cls, location, *, user, password, database, batch_size, graphrag: bool) -> _StoreTarget:
        from kgmm.store import open_store

        text = "" if location is None else str(location).strip()
        if text.lower() in TEMPORARY_SERVER_NAMES:
            return cls._temporary_server(batch_size, graphrag)
        if text.lower().startswith(_BOLT_SCHEMES):
            from kgmm.store.neo4j import split_credentials

            store = open_store(text, user=user, password=password, database=database, batch_size=batch_size)
            try:
                _require_empty(store._driver, store.database, store.uri)
            except BaseException:
                store.close()
                raise
            bare, _, uri_password = split_credentials(text)
            secret = password if password is not None else uri_password
            if secret is None:
                secret = os.environ.get("NEO4J_PASSWORD")
            target = cls("bolt", store, f"{bare} (database {store.database or 'default'})",
                         credentials=(bare, store.user, secret))
            target.written.append(store.database)
            return target
        if text and "://" in text:
            raise KgmmError(f"unknown store location {text!r}: use a directory, a bolt:// URI, or 'arcadedb'")
        if not text:
            work = Path(tempfile.mkdtemp(prefix="kgmm-bench-store-"))
            return cls("embedded", open_store(work / "store"), "temporary embedded store",
                       after_close=lambda: shutil.rmtree(work, ignore_errors=True))
        path = Path(text).expanduser()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise KgmmError(f"{path} is not a new or empty directory; the benchmark loads a fresh store there: "
                            "pass a new directory (or none, for a temporary one)")
        return cls("embedded", open_store(path), str(path))

    @classmethod
    def _temporary_server(cls, batch_size, graphrag: bool) -> _StoreTarget:
        from kgmm.store import open_store

        script = _load_bolt_server_script()
        root = Path(tempfile.mkdtemp(prefix="kgmm-bench-arcadedb-"))
        password = "kgmm-bench-" + os.urandom(6).hex()
        try:
            extra = (WARM_UP_DATABASES["kgmm"],)
            if graphrag:
                extra += (GRAPHRAG_DATABASE, WARM_UP_DATABASES["graphrag"])
            server = script.start(root, password=password, database="kg", extra_databases=extra)
        except SystemExit as e:  # the script's way of saying arcadedb-embedded is missing
            shutil.rmtree(root, ignore_errors=True)
            raise KgmmError(str(e)) from e
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise

        def stop() -> None:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)

        try:
            store = open_store(server.uri, user=server.user, password=server.password, database="kg",
                               batch_size=batch_size)
        except BaseException:
            stop()
            raise
        return cls("bolt", store, f"temporary ArcadeDB server at {server.uri}", server=server,
                   credentials=(server.uri, server.user, server.password), after_close=stop)

    def close(self) -> None:
        try:
            for database in dict.fromkeys(self.written):  # both were empty before the run
                _empty_database(self.store._driver, database)
        finally:
            self.store.close()
            if self._after_close is not None:
                self._after_close()

    def record_statements(self, call) -> list[tuple[str, dict]]:
        """Run ``call()`` and return the (query, parameters) of every statement the store sent."""
        recorded: list[tuple[str, dict]] = []
        if self.kind == "embedded":
            connection = self.store._connection
            self.store._connection = _RecordingConnection(connection, recorded)
            try:
                call()
            finally:
                self.store._connection = connection
        else:
            driver = self.store._driver
            self.store._driver = _RecordingDriver(driver, recorded)
            try:
                call()
            finally:
                self.store._driver = driver
        return recorded

    def raw_replay(self, statements: list[tuple[str, dict]]):
        """Return a function that runs ``statements`` through the engine's own client, fetching every row."""
        if self.kind == "embedded":
            connection = self.store._connection

            def replay() -> None:
                for query, parameters in statements:
                    connection.execute(query, parameters).get_all()

            return replay
        driver, database = self.store._driver, self.store.database

        def replay_bolt() -> None:
            with driver.session(database=database) as session:
                for query, parameters in statements:
                    session.run(query, parameters).data()

        return replay_bolt


class _RecordingConnection:
    def __init__(self, connection, recorded: list) -> None:
        self._connection, self._recorded = connection, recorded

    def execute(self, query, parameters=None):
        self._recorded.append((query, dict(parameters or {})))
        return self._connection.execute(query, parameters or {})


class _RecordingDriver:
    def __init__(self, driver, recorded: list) -> None:
        self._driver, self._recorded = driver, recorded

    def session(self, **options):
        return _RecordingSession(self._driver.session(**options), self._recorded)


class _RecordingSession:
    def __init__(self, session, recorded: list) -> None:
        self._session, self._recorded = session, recorded

    def __enter__(self):
        self._session.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self._session.__exit__(*exc_info)

    def execute_read(self, work):
        return self._session.execute_read(lambda tx: work(_RecordingTransaction(tx, self._recorded)))

    def execute_write(self, work):
        return self._session.execute_write(lambda tx: work(_RecordingTransaction(tx, self._recorded)))


class _RecordingTransaction:
    def __init__(self, tx, recorded: list) -> None:
        self._tx, self._recorded = tx, recorded

    def run(self, query, parameters=None, **kwargs):
        self._recorded.append((query, dict(parameters or {}, **kwargs)))
        return self._tx.run(query, parameters, **kwargs)


def _load_bolt_server_script():
    """Import the repository's graph/bolt_server.py (a script, not part of the package)."""
    import importlib.util
    import sys

    name = "kgmm_bolt_server"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[2] / "graph" / "bolt_server.py"
    if not path.is_file():
        raise KgmmError(f"'arcadedb' needs the repository's {path.relative_to(path.parents[1])}, which is not here; "
                        "start a server yourself and pass its bolt:// URI")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _count_nodes(driver, database: str | None) -> int:
    with driver.session(database=database) as session:
        return session.run("MATCH (n) RETURN count(n) AS n").single()["n"]


def _count_relationships(driver, database: str | None) -> int:
    with driver.session(database=database) as session:
        return session.run("MATCH ()-[r]->() RETURN count(r) AS n").single()["n"]


def _require_empty(driver, database: str | None, uri: str) -> None:
    nodes = _count_nodes(driver, database)
    if nodes:
        raise KgmmError(
            f"the database {database or '(default)'} at {uri} holds {nodes} nodes; the benchmark loads the "
            "triples into an empty database and empties it again after: pass an empty one"
        )


def _empty_database(driver, database: str | None) -> None:
    """Delete every node, in batches (one transaction for 170k nodes and their edges is heavy)."""
    while True:
        with driver.session(database=database) as session:
            deleted = session.execute_write(
                lambda tx: tx.run("MATCH (n) WITH n LIMIT 20000 DETACH DELETE n RETURN count(*) AS n").single()["n"]
            )
        if not deleted:
            return


def _graphrag_load(target: _StoreTarget, triples: Path, graphrag_database: str | None, first: dict) -> dict:
    """Load the triples with neo4j-graphrag's Neo4jWriter, timed like a kgmm load, then run it once more."""
    import asyncio

    try:
        import neo4j
        from neo4j_graphrag.components.kg_writer import Neo4jWriter
        from neo4j_graphrag.components.types import Neo4jGraph, Neo4jNode, Neo4jRelationship
    except ImportError:
        try:
            import neo4j
            from neo4j_graphrag.experimental.components.kg_writer import Neo4jWriter
            from neo4j_graphrag.experimental.components.types import Neo4jGraph, Neo4jNode, Neo4jRelationship
        except ImportError as e:
            raise KgmmError(_GRAPHRAG_INSTALL) from e
    from kgmm.sources.triples import read_triples

    if target.server is not None:
        graphrag_database = GRAPHRAG_DATABASE
    elif graphrag_database is None:  # the same database, emptied of the kgmm load first
        graphrag_database = target.store.database
        _empty_database(target.store._driver, graphrag_database)
    else:
        _require_empty(target.store._driver, graphrag_database, target.store.uri)
        target.written.append(graphrag_database)
    uri, user, password = target.credentials
    driver = neo4j.GraphDatabase.driver(uri, auth=(user, password) if password is not None else None)
    try:
        def load(database: str = graphrag_database, limit: int | None = None) -> tuple[float, float, int]:
            started = time.perf_counter()
            read = read_triples(triples)
            if limit is not None:
                read.relations = read.relations[:limit]
                used = {entity_id for relation in read.relations for entity_id in (relation.head, relation.tail)}
                read.entities = [entity for entity in read.entities if entity.id in used]
            graph = Neo4jGraph(
                nodes=[Neo4jNode(id=e.id, label=e.type, properties={"name": e.name}) for e in read.entities],
                relationships=[
                    Neo4jRelationship(start_node_id=r.head, end_node_id=r.tail, type=r.type,
                                      properties={"confidence": r.confidence, "extractor": r.extractor})
                    for r in read.relations
                ],
            )
            writer = Neo4jWriter(driver, neo4j_database=database)
            writing = time.perf_counter()
            result = asyncio.run(writer.run(graph))
            done = time.perf_counter()
            if result.status != "SUCCESS":
                raise KgmmError(f"neo4j-graphrag's Neo4jWriter failed: {(result.metadata or {}).get('error')}")
            return done - started, done - writing, len(read.relations)

        if target.server is not None:
            load(WARM_UP_DATABASES["graphrag"], WARM_UP_TRIPLES)
        seconds, writer_seconds, relationships = load()
        nodes_first = _count_nodes(driver, graphrag_database)
        relationships_first = _count_relationships(driver, graphrag_database)
        second_seconds, _, _ = load()
        nodes_second = _count_nodes(driver, graphrag_database)
        relationships_second = _count_relationships(driver, graphrag_database)
    finally:
        driver.close()
    rate = relationships / seconds
    return {
        "database": graphrag_database,
        "seconds": round(seconds, 3),
        "relationships_per_s": round(rate),
        "seconds_writer_only": round(writer_seconds, 3),
        "ratio_kgmm_over_graphrag": round(first["relationships_per_s"] / rate, 3),
        "nodes": nodes_first,
        "relationships": relationships_first,
        "second_run_seconds": round(second_seconds, 3),
        "second_run_nodes": nodes_second,
        "second_run_relationships": relationships_second,
        "second_run_duplicated_nodes": nodes_second > nodes_first,
    }
