"""A graph store as a networkx graph, for any backend (built from the store's iterators).

networkx is imported inside the function, so importing this module is cheap.
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
