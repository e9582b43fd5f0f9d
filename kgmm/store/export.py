"""Export a graph store to networkx or torch_geometric, for any backend (built from the store's iterators).

networkx, torch and torch_geometric are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kgmm.store.base import GraphStore


def to_networkx(store: GraphStore):
    """Return the graph as a ``networkx.MultiDiGraph``.

    Nodes are entity ids with attributes ``name``, ``type``, ``domain`` and ``aliases``; each relation is
    an edge keyed by its type, with attributes ``confidence``, ``extractor`` and ``sources``.

    Args:
        store (GraphStore): the store to read.
    """
    import networkx as nx

    graph = nx.MultiDiGraph()
    for entity in store.iter_entities():
        graph.add_node(entity.id, name=entity.name, type=entity.type, domain=entity.domain, aliases=list(entity.aliases))
    for relation in store.iter_relations():
        graph.add_edge(
            relation.head,
            relation.tail,
            key=relation.type,
            confidence=relation.confidence,
            extractor=relation.extractor,
            sources=list(relation.sources),
        )
    return graph


def to_pyg(store: GraphStore, hetero: bool = False, **vocabularies):
    """Return the graph as a torch_geometric ``Data`` or, with ``hetero``, a ``HeteroData``.

    One builder serves every caller: this is :func:`kgmm.graphdata.store_to_data` (or
    :func:`kgmm.graphdata.store_to_hetero_data`), so node ``i`` is ``data.entity_vocab.key(i)``,
    ``edge_type`` indexes ``data.relation_vocab`` and ``node_type`` indexes ``data.entity_type_vocab``.

    Args:
        store (GraphStore): the store to read.
        hetero (bool, optional): build a ``HeteroData``. (default: :obj:`False`)
        **vocabularies: ``entity_vocab``, ``relation_vocab``, ``entity_type_vocab`` to extend (a model's saved
            vocabularies), as :func:`kgmm.graphdata.store_to_data` takes them.
    """
    from kgmm.graphdata.tensors import store_to_data, store_to_hetero_data

    return (store_to_hetero_data if hetero else store_to_data)(store, **vocabularies)
