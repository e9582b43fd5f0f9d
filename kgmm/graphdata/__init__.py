"""The knowledge graph as tensors: stable vocabularies, PyG ``Data``/``HeteroData``, node features and
subgraph retrieval. Importing this package is cheap; torch loads with the functions that need it."""

from kgmm.graphdata.vocab import Vocabulary

__all__ = [
    "FeatureCache",
    "GraphTensors",
    "RetrievedSubgraph",
    "SubgraphRetriever",
    "Vocabulary",
    "entity_texts",
    "graph_tensors",
    "graph_to_data",
    "load_graph_tensors",
    "load_vocabularies",
    "node_features",
    "retrieve_subgraph",
    "save_graph_tensors",
    "store_to_data",
    "store_to_hetero_data",
    "text_features",
    "to_hetero_data",
    "triples_tensors",
    "triples_to_data",
]

_HOMES = {
    "FeatureCache": "features", "entity_texts": "features", "node_features": "features", "text_features": "features",
    "RetrievedSubgraph": "retrieval", "SubgraphRetriever": "retrieval", "retrieve_subgraph": "retrieval",
    "GraphTensors": "tensors", "graph_tensors": "tensors", "triples_tensors": "tensors",
    "graph_to_data": "tensors", "load_graph_tensors": "tensors", "load_vocabularies": "tensors",
    "save_graph_tensors": "tensors", "store_to_data": "tensors", "store_to_hetero_data": "tensors",
    "to_hetero_data": "tensors", "triples_to_data": "tensors",
}


def __getattr__(name: str):
    # The submodules are light, but resolving lazily keeps ``import kgmm.graphdata`` free of their imports.
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kgmm.graphdata' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"kgmm.graphdata.{home}"), name)
