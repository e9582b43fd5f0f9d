"""Benchmarks of the graph-learning data layer: triples -> tensors, subgraph retrieval, memory.

Plain functions returning JSON-ready dicts (a CLI command can wrap them); never run by timed tests.
Latencies are measured with ``torch.set_num_threads(threads)`` (default 1: one retrieval is too small to
gain from threads, and on a busy 2-core machine intra-op threads cost more than they give).
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from kgmm.utils import percentile

FEATURE_SOURCES = ("cached", "random", "none")


def _rss_mb() -> float:
    """Resident set size of this process now, in MiB."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """Peak resident set size of this process since it started, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _features(data, source: str, dim: int, cache_dir: str | Path | None, progress: bool, seed: int):
    """Return (features or None, what they are)."""
    import torch

    if source not in FEATURE_SOURCES:
        from kgmm.errors import ValidationError

        raise ValidationError(f"unknown feature source {source!r}; choose one of {', '.join(FEATURE_SOURCES)}")
    if source == "none":
        return None, "none"
    if source == "cached":
        if cache_dir is None:
            from kgmm.errors import ValidationError

            raise ValidationError("features='cached' needs cache_dir (the folder node_features caches into)")
        from kgmm.graphdata.features import node_features
        from kgmm.nn.text import TextEncoder

        features = node_features(data, TextEncoder(), cache_dir=cache_dir, progress=progress)
        return features, f"all-MiniLM-L6-v2 text embeddings ({features.size(1)}-d, cached in {cache_dir})"
    generator = torch.Generator().manual_seed(seed)
    features = torch.nn.functional.normalize(torch.randn(int(data.num_nodes), dim, generator=generator), dim=1)
    return features, f"random {dim}-d float32 (stand-in for text embeddings: memory is the same, relevance is not)"


def bench_retrieval(
    triples_path: str | Path,
    *,
    nodes: int = 200,
    hops: int = 2,
    repeats: int = 1000,
    seed: int = 0,
    features: str = "random",
    cache_dir: str | Path | None = None,
    feature_dim: int = 384,
    threads: int | None = 1,
    progress: bool = False,
) -> dict:
    """Load a triples file to tensors and time subgraph retrieval around random seed entities.

    Args:
        triples_path (str or Path): a ``head|relation|tail`` file (MetaQA's ``kb.txt``).
        nodes (int, optional): most nodes per subgraph (default 200).
        hops (int, optional): search depth (default 2).
        repeats (int, optional): retrievals per seed pool (default 1000).
        seed (int, optional): picks the seed entities and random features (default 0).
        features (str, optional): ``"cached"`` real text embeddings from ``cache_dir`` (computed there first
            when missing: minutes for MetaQA), ``"random"`` (default) or ``"none"``.
        cache_dir (str or Path, optional): the feature cache, for ``features="cached"``.
        feature_dim (int, optional): width of random features (default 384).
        threads (int, optional): torch threads while timing (default 1; None leaves torch's setting).
        progress (bool, optional): show progress while encoding features (default False).

    Returns:
        dict with ``import_s`` (torch_geometric's first import), ``load_s`` (file -> Data), ``index_s`` (the retriever's CSR), per seed pool
        (``all``: any entity; ``heads``: entities that head a relation, MetaQA's films) ``p50_ms``, ``p95_ms``,
        ``mean_ms``, ``mean_nodes``, ``mean_candidates``; ``query`` timings (ranking by a query embedding),
        ``rss_mb``, ``peak_rss_mb`` and what the features were.
    """
    import torch

    from kgmm.graphdata.retrieval import SubgraphRetriever
    from kgmm.graphdata.tensors import triples_to_data

    started = time.perf_counter()
    import torch_geometric.data  # noqa: F401  (timed apart: the first import costs seconds, a load does not)

    import_s = time.perf_counter() - started
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        started = time.perf_counter()
        data = triples_to_data(triples_path)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        retriever = SubgraphRetriever(data)
        index_s = time.perf_counter() - started
        node_features, features_are = _features(data, features, feature_dim, cache_dir, progress, seed)
        if node_features is not None:
            retriever.set_node_features(node_features)

        pools = _seed_pools(data, repeats, seed)
        for seed_index in pools["all"][:20].tolist():  # warm-up: first calls allocate
            retriever.retrieve([seed_index], hops=hops, max_nodes=nodes)
        result: dict = {
            "triples": str(triples_path), "num_nodes": int(data.num_nodes), "num_edges": int(data.edge_index.size(1)),
            "num_relations": len(data.relation_vocab), "nodes": nodes, "hops": hops, "repeats": repeats,
            "seed": seed, "threads": torch.get_num_threads(), "import_s": round(import_s, 3), "load_s": round(load_s, 3), "index_s": round(index_s, 3),
        }
        for pool_name, seeds in pools.items():
            result[pool_name] = _time_retrievals(retriever, seeds.tolist(), hops=hops, nodes=nodes)
        if node_features is not None:
            queries = node_features[pools["all"]]  # a node's own embedding stands in for a question's
            result["query"] = _time_retrievals(retriever, pools["heads"].tolist(), hops=hops, nodes=nodes,
                                               queries=queries)
        result["features"] = features_are
        result["rss_mb"] = round(_rss_mb(), 1)
        result["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        return result
    finally:
        torch.set_num_threads(previous_threads)


def _seed_pools(data, repeats: int, seed: int) -> dict:
    """``repeats`` seed entities drawn with ``seed`` from each pool: ``all`` (any entity) and ``heads`` (entities
    that head a relation, MetaQA's films)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    heads = torch.unique(data.edge_index[0])
    return {
        "all": torch.randint(0, int(data.num_nodes), (repeats,), generator=generator),
        "heads": heads[torch.randint(0, heads.numel(), (repeats,), generator=generator)],
    }


def _time_retrievals(retriever, seeds: list[int], *, hops: int, nodes: int, queries=None) -> dict:
    times, sizes, candidates = [], [], []
    for position, seed_index in enumerate(seeds):
        query = queries[position] if queries is not None else None
        started = time.perf_counter()
        subgraph = retriever.retrieve([seed_index], hops=hops, max_nodes=nodes, query=query)
        times.append((time.perf_counter() - started) * 1000)
        sizes.append(subgraph.num_nodes)
        candidates.append(subgraph.num_candidates)
    times.sort()
    return {
        "p50_ms": round(percentile(times, 0.5), 3), "p95_ms": round(percentile(times, 0.95), 3),
        "max_ms": round(times[-1], 3), "mean_ms": round(sum(times) / len(times), 3),
        "mean_nodes": round(sum(sizes) / len(sizes), 1), "mean_candidates": round(sum(candidates) / len(candidates), 1),
        "max_candidates": max(candidates),
    }


def bench_graph_memory(
    triples_path: str | Path,
    *,
    features: str = "random",
    cache_dir: str | Path | None = None,
    feature_dim: int = 384,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Measure the resident memory of a triples file as tensors, its retriever index and its node features.

    Run it in a fresh process for a clean peak: ``peak_rss_mb`` covers the whole process's life.

    Args:
        triples_path (str or Path): a ``head|relation|tail`` file (MetaQA's ``kb.txt``).
        features (str, optional): ``"cached"`` (real embeddings from ``cache_dir``), ``"random"`` (default;
            same memory, said so in the result) or ``"none"``.
        cache_dir (str or Path, optional): the feature cache, for ``features="cached"``.
        feature_dim (int, optional): width of random features (default 384).
        seed (int, optional): for random features (default 0).
        progress (bool, optional): show progress while encoding features (default False).

    Returns:
        dict with RSS (MiB) after imports, after loading the graph, after the retriever's index and after
        the features; the bytes of the graph tensors, index and features; and ``peak_rss_mb``.
    """
    import gc

    import torch
    import torch_geometric  # noqa: F401  (counted in the baseline, as every user of the tensors imports it)

    from kgmm.graphdata.retrieval import SubgraphRetriever
    from kgmm.graphdata.tensors import triples_to_data

    gc.collect()
    baseline = _rss_mb()
    data = triples_to_data(triples_path)
    gc.collect()
    after_graph = _rss_mb()
    retriever = SubgraphRetriever(data)
    after_index = _rss_mb()
    node_features, features_are = _features(data, features, feature_dim, cache_dir, progress, seed)
    gc.collect()
    after_features = _rss_mb()
    if node_features is not None:
        retriever.set_node_features(node_features)

    def nbytes(*tensors: torch.Tensor) -> int:
        return sum(t.numel() * t.element_size() for t in tensors)

    return {
        "triples": str(triples_path), "num_nodes": int(data.num_nodes), "num_edges": int(data.edge_index.size(1)),
        "rss_baseline_mb": round(baseline, 1),
        "rss_after_graph_mb": round(after_graph, 1),
        "rss_after_index_mb": round(after_index, 1),
        "rss_after_features_mb": round(after_features, 1),
        "graph_tensor_mb": round(nbytes(data.edge_index, data.edge_type, data.edge_confidence, data.node_type) / 2**20, 2),
        "index_mb": round(nbytes(retriever.rowptr, retriever.col, retriever.csr_edge_id, retriever.forward,
                                 retriever.inverse_degree) / 2**20, 2),
        "features_mb": round(nbytes(node_features) / 2**20, 2) if node_features is not None else 0.0,
        "features": features_are,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
