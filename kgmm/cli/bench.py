"""Benchmarks (``kgmm bench ...``): measured on this machine, printed as a table and JSON."""

from __future__ import annotations

from pathlib import Path

import typer

from kgmm.cli.output import DatabaseOption, JsonOption, UserOption, command_group, emit, render_metrics

bench_app = command_group("Benchmarks: ingest, start-up, stores, graph learning, vision, fusion, QA, photo QA, diagnosis.")


@bench_app.command("ingest")
def bench_ingest(
    data: Path = typer.Option(Path("../shared/data"), "--data", help="The shared data folder the corpus is built from."),
    domain: str = typer.Option("medical", "--domain", "-d"),
    docs: int = typer.Option(5000, "--docs", help="Corpus size in documents."),
    store: Path | None = typer.Option(None, "--store", help="Store folder (default: a temporary one, removed after)."),
    seed: int = typer.Option(0, "--seed"),
    large_file_mb: float | None = typer.Option(None, "--large-file-mb", help="Instead: ingest one text file of this "
                                               "many MB (kgmm ingest in a child process) and report its peak "
                                               "resident memory and when batches were committed."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="With --large-file-mb: ingest's --batch-size."),
    max_seconds: float | None = typer.Option(None, "--max-seconds", help="With --large-file-mb: stop the ingest "
                                             "with Ctrl-C after this long (what was committed is kept)."),
    as_json: bool = JsonOption,
) -> None:
    """Documents per second of a full ingest, its spaCy/store split, and spaCy alone on the same texts; or, with
    --large-file-mb, the memory and commits of ingesting one large file."""
    if large_file_mb is not None:
        from kgmm.bench.ingest import bench_large_file

        result = bench_large_file(data, megabytes=large_file_mb, domain=domain, batch_size=batch_size,
                                  max_seconds=max_seconds)
        emit({"title": f"ingest of a {large_file_mb:g} MB text file ({domain})", **result}, as_json, render_metrics)
        return
    from kgmm.bench.ingest import bench_ingest as run

    result = run(data, domain=domain, docs=docs, store_dir=store, seed=seed)
    emit({"title": f"ingest benchmark ({domain}, {result['documents']} docs)", **result}, as_json, render_metrics)


@bench_app.command("startup")
def bench_startup(
    repeats: int = typer.Option(5, "--repeats"),
    as_json: bool = JsonOption,
) -> None:
    """Median time of `import kgmm` and `kgmm --help` in fresh interpreters (includes Python's own start-up)."""
    from kgmm.bench.startup import bench_startup as run

    emit({"title": "start-up", **run(repeats)}, as_json, render_metrics)


@bench_app.command("cold-start")
def bench_cold_start(
    data: Path = typer.Option(Path("../shared/data"), "--data", help="The shared data folder (MetaQA, DDXPlus)."),
    repeats: int = typer.Option(3, "--repeats", help="Timed runs of each command (median reported)."),
    as_json: bool = JsonOption,
) -> None:
    """Wall time of a one-note ingest, a cold ask and a cold diagnose, each a fresh `kgmm` process (median of
    --repeats with kgmm's cache, and once with an empty cache)."""
    from kgmm.bench.startup import bench_cold_start as run

    emit({"title": "cold start (fresh processes)", **run(data, repeats=repeats)}, as_json, render_metrics)


@bench_app.command("store")
def bench_store(
    store: str | None = typer.Option(
        None, "--store", "-s",
        help="Where to load: a new or empty folder (embedded; default: a temporary one), a bolt:// URI of an empty "
        "database (emptied again after), or 'arcadedb' (a temporary ArcadeDB server from graph/bolt_server.py).",
    ),
    triples: Path = typer.Option(Path("../shared/data/metaqa/kb.txt"), "--triples",
                                 help="Triples file, head|relation|tail or TAB-separated (default: MetaQA's kb.txt)."),
    compare_graphrag: bool = typer.Option(False, "--compare-graphrag",
                                          help="Also load it with neo4j-graphrag's Neo4jWriter (Bolt stores only)."),
    user: str | None = UserOption,
    database: str | None = DatabaseOption,
    graphrag_database: str | None = typer.Option(
        None, "--graphrag-database", help="An empty database for Neo4jWriter (else the same one, emptied first)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Rows per write statement of a Bolt store."),
    movies: int = typer.Option(3, "--movies", help="Movies whose 2-hop neighbourhood is timed."),
    repeats: int = typer.Option(50, "--repeats", help="Timed calls per movie and way."),
    seed: int = typer.Option(0, "--seed", help="Picks the movies."),
    as_json: bool = JsonOption,
) -> None:
    """Load a triples file twice (the second must add nothing) and time 2-hop neighbourhoods against raw Cypher."""
    from kgmm.bench.store import bench_store as run

    result = run(store, triples=triples, compare_graphrag=compare_graphrag, user=user, database=database,
                 graphrag_database=graphrag_database, batch_size=batch_size, movies=movies, repeats=repeats, seed=seed)
    emit({"title": f"store benchmark ({result['store']}, {result['triples']} triples)", **result}, as_json,
         render_metrics)


@bench_app.command("retrieval")
def bench_retrieval(
    triples: Path = typer.Option(Path("../shared/data/metaqa/kb.txt"), "--triples",
                                 help="Triples file, head|relation|tail or TAB-separated (default: MetaQA's kb.txt)."),
    nodes: int = typer.Option(200, "--nodes", help="At most this many nodes per subgraph."),
    hops: int = typer.Option(2, "--hops"),
    repeats: int = typer.Option(1000, "--repeats", help="Retrievals timed (one random seed entity each)."),
    features: str = typer.Option("none", "--features",
                                 help="Node features for query-ranked retrieval: none, random (384-d) or cached "
                                 "(MiniLM, computed into --cache-dir on first use: minutes)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Feature cache folder (with --features cached)."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = JsonOption,
) -> None:
    """Subgraph retrieval latency: k-hop neighbourhoods pruned by personalised PageRank, p50/p95 once loaded."""
    from kgmm.bench.graph import bench_retrieval as run

    result = run(triples, nodes=nodes, hops=hops, repeats=repeats, features=features, cache_dir=cache_dir, seed=seed)
    emit({"title": f"subgraph retrieval ({nodes} nodes, {hops} hops)", **result}, as_json, render_metrics)


@bench_app.command("graph-memory")
def bench_graph_memory(
    triples: Path = typer.Option(Path("../shared/data/metaqa/kb.txt"), "--triples"),
    features: str = typer.Option("random", "--features",
                                 help="random (384-d, same size as real ones) or cached (MiniLM from --cache-dir)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir"),
    as_json: bool = JsonOption,
) -> None:
    """Resident memory of a triples file as tensors, with its retrieval index and 384-d node features."""
    from kgmm.bench.graph import bench_graph_memory as run

    result = run(triples, features=features, cache_dir=cache_dir)
    emit({"title": "graph memory", **result}, as_json, render_metrics)


@bench_app.command("fusion")
def bench_fusion(
    data: Path = typer.Option(Path("../shared/data/fashion"), "--data",
                              help="The fashion folder: catalogue.csv, products_train.csv, images/."),
    plot: Path = typer.Option(Path("fusion.png"), "--plot", help="Where to write the bar chart (PNG)."),
    seed: int = typer.Option(0, "--seed", help="Picks the folds and the models' initialisation."),
    epochs: int | None = typer.Option(None, "--epochs", help="Training steps of every model (default 150)."),
    catalogue_per_type: int | None = typer.Option(
        None, "--catalogue-per-type",
        help="Catalogue rows (no photo, never a photographed product's) that also train every model with a title or "
        "graph, at most this many per article type (default 60; 0: photographed products only)."),
    as_json: bool = JsonOption,
) -> None:
    """Fusion strategies against single modalities: fashion article type from photo + title + catalogue graph."""
    from kgmm.bench.fusion import DEFAULT_CATALOGUE_PER_TYPE, DEFAULT_EPOCHS, fusion_benchmark

    per_type = DEFAULT_CATALOGUE_PER_TYPE if catalogue_per_type is None else catalogue_per_type
    result = fusion_benchmark(data, seed=seed, epochs=epochs or DEFAULT_EPOCHS, catalogue_per_type=per_type,
                              out_png=plot, progress=not as_json)
    result = {"title": f"fusion benchmark ({result['held_out']} held-out products, {result['folds']} folds)", **result}
    if as_json:
        emit(result, as_json, render_metrics)
        return
    from rich.table import Table

    from kgmm.cli.output import console

    table = Table("strategy", "modalities", "accuracy", "macro-F1", title=result["title"])
    for row in result["results"]:
        table.add_row(row["name"], " + ".join(row["modalities"]), f"{row['accuracy']:.4f}", f"{row['macro_f1']:.4f}")
    console().print(table)
    best_single, best_fusion = result["best_single"], result["best_fusion"]
    console().print(f"best fusion {best_fusion['name']} {best_fusion['accuracy']:.4f} vs best single modality "
                    f"{best_single['name']} {best_single['accuracy']:.4f}; plot: {result['plot']}")


@bench_app.command("vision")
def bench_vision(
    images: Path = typer.Option(Path("../shared/data/fashion/images"), "--images",
                                help="A folder of images (default: the shared fashion photos, 224x224)."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many images."),
    model: str | None = typer.Option(None, "--model", help="A local transformers vision model folder "
                                     "(default: the packaged EfficientNet-Lite0)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per forward pass (default 32)."),
    as_json: bool = JsonOption,
) -> None:
    """Image encoding throughput: first pass into an empty cache, then the same images from the cache."""
    from kgmm.bench.vision import vision_benchmark

    result = vision_benchmark(images, limit=limit, model=model, batch_size=batch_size, progress=not as_json)
    emit(result, as_json, render_metrics)


@bench_app.command("viz")
def bench_viz(
    nodes: int = typer.Option(2000, "--nodes", "-n", help="Entities in the drawn graph (relations: twice as many)."),
    runs: int = typer.Option(3, "--runs"),
    chromium: str | None = typer.Option(None, "--chromium", help="The Chromium executable (default: on PATH)."),
    as_json: bool = JsonOption,
) -> None:
    """Time to first render of the HTML graph view in headless Chromium, and its frame rate while zooming."""
    from kgmm.bench.viz import bench_viz as run

    emit({"title": f"graph view in Chromium ({nodes} nodes)", **run(nodes, runs=runs, chromium=chromium)}, as_json,
         render_metrics)
