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


def to_pyg(store: GraphStore, hetero: bool = False):
    """Return the graph as a torch_geometric ``Data`` or, with ``hetero``, a ``HeteroData``.

    ``Data`` holds ``edge_index``, ``edge_type`` (index into ``relation_types``), ``edge_confidence``,
    ``node_type`` (index into ``entity_types``) and the vocabulary ``entity_ids`` (node ``i`` is the entity
    ``entity_ids[i]``). ``HeteroData`` has one node type per entity type, each with its ``entity_ids``,
    and one edge type ``(head type, RELATION, tail type)`` per combination present, with
    ``edge_index`` and ``edge_confidence``; ``relation_types`` and ``entity_types`` are kept globally.

    Args:
        store (GraphStore): the store to read.
        hetero (bool, optional): build a ``HeteroData``. (default: :obj:`False`)

    Shapes:
        - **Data:** edge_index :math:`(2, |\\mathcal{E}|)`, edge_type and edge_confidence
          :math:`(|\\mathcal{E}|)`, node_type :math:`(|\\mathcal{V}|)`.
    """
    import torch
    from torch_geometric.data import Data, HeteroData

    entity_ids: list[str] = []
    type_of: list[str] = []
    for entity in store.iter_entities():
        entity_ids.append(entity.id)
        type_of.append(entity.type)
    index = {entity_id: i for i, entity_id in enumerate(entity_ids)}
    heads: list[int] = []
    tails: list[int] = []
    relation_of: list[str] = []
    confidences: list[float] = []
    for relation in store.iter_relations():
        heads.append(index[relation.head])
        tails.append(index[relation.tail])
        relation_of.append(relation.type)
        confidences.append(relation.confidence)
    entity_types = sorted(set(type_of))
    relation_types = sorted(set(relation_of))

    if not hetero:
        entity_type_index = {name: i for i, name in enumerate(entity_types)}
        relation_type_index = {name: i for i, name in enumerate(relation_types)}
        return Data(
            edge_index=torch.tensor([heads, tails], dtype=torch.long).view(2, -1),
            edge_type=torch.tensor([relation_type_index[name] for name in relation_of], dtype=torch.long),
            edge_confidence=torch.tensor(confidences, dtype=torch.float),
            node_type=torch.tensor([entity_type_index[name] for name in type_of], dtype=torch.long),
            num_nodes=len(entity_ids),
            entity_ids=entity_ids,
            entity_types=entity_types,
            relation_types=relation_types,
        )

    data = HeteroData()
    local_index: list[int] = []
    members: dict[str, list[str]] = {name: [] for name in entity_types}
    for entity_id, entity_type in zip(entity_ids, type_of, strict=True):
        local_index.append(len(members[entity_type]))
        members[entity_type].append(entity_id)
    for entity_type, ids in members.items():
        data[entity_type].entity_ids = ids
        data[entity_type].num_nodes = len(ids)
    edges: dict[tuple[str, str, str], tuple[list[int], list[int], list[float]]] = {}
    for head, tail, relation_type, confidence in zip(heads, tails, relation_of, confidences, strict=True):
        key = (type_of[head], relation_type, type_of[tail])
        sources, targets, weights = edges.setdefault(key, ([], [], []))
        sources.append(local_index[head])
        targets.append(local_index[tail])
        weights.append(confidence)
    for key in sorted(edges):
        sources, targets, weights = edges[key]
        data[key].edge_index = torch.tensor([sources, targets], dtype=torch.long)
        data[key].edge_confidence = torch.tensor(weights, dtype=torch.float)
    data.entity_types = entity_types
    data.relation_types = relation_types
    return data
