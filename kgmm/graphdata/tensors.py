"""The knowledge graph as PyG tensors: ``Data`` / ``HeteroData`` with stable vocabularies, saved and loaded.

Node ``i`` is the entity ``data.entity_vocab.key(i)``; ``edge_type`` indexes ``data.relation_vocab`` and
``node_type`` indexes ``data.entity_type_vocab``. Pass a model's saved vocabularies to line today's graph
up with it: known keys keep their index and new ones are appended (sorted, so the same graph gives the
same indices whatever order a backend lists it in). An entity the vocabulary knows but the graph no
longer has keeps its index as an isolated node with ``node_type`` -1 and an empty name.

A (head, relation, tail) appearing more than once (a repeated line in a triples file) is one edge.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgmm.errors import ValidationError
from kgmm.graphdata.vocab import Vocabulary

if TYPE_CHECKING:
    from torch_geometric.data import Data, HeteroData

    from kgmm.schema import Entity, Relation
    from kgmm.store.base import GraphStore

FORMAT = "kgmm.graph-tensors/1"
TENSORS_FILE = "tensors.pt"
ENTITIES_FILE = "entities.json"
RELATIONS_FILE = "relations.json"
ENTITY_TYPES_FILE = "entity_types.json"
NAMES_FILE = "entity_names.json"
META_FILE = "graph.json"
MISSING_TYPE = -1


@dataclass
class GraphTensors:
    """A graph's tensors and vocabularies without PyG (torch only): what :func:`graph_to_data` puts in a ``Data``.

    Code that needs only the edges (the QA reasoner) uses this and skips importing ``torch_geometric`` (about
    a second of every cold start); :meth:`to_data` gives the PyG ``Data``.

    Shapes:
        edge_index ``[2, E]``; edge_type, edge_confidence ``[E]``; node_type ``[num_nodes]``.
    """

    edge_index: Any
    edge_type: Any
    edge_confidence: Any
    node_type: Any
    num_nodes: int
    entity_vocab: Vocabulary
    relation_vocab: Vocabulary
    entity_type_vocab: Vocabulary
    entity_names: list[str]
    entity_aliases: dict[int, list[str]] = field(default_factory=dict)  # node -> its other names (stores only)

    def to_data(self) -> Data:
        """Return these tensors as a PyG ``Data`` (the same tensors, not copies)."""
        from torch_geometric.data import Data

        return Data(
            edge_index=self.edge_index, edge_type=self.edge_type, edge_confidence=self.edge_confidence,
            node_type=self.node_type, num_nodes=self.num_nodes, entity_vocab=self.entity_vocab,
            relation_vocab=self.relation_vocab, entity_type_vocab=self.entity_type_vocab,
            entity_names=self.entity_names,
        )


def graph_to_data(
    entities: Iterable[Entity],
    relations: Iterable[Relation],
    *,
    entity_vocab: Vocabulary | None = None,
    relation_vocab: Vocabulary | None = None,
    entity_type_vocab: Vocabulary | None = None,
) -> Data:
    """Build a homogeneous PyG ``Data`` from entities and relations.

    Args:
        entities (iterable of Entity): every entity of the graph.
        relations (iterable of Relation): every relation; heads and tails must be among ``entities``.
        entity_vocab (Vocabulary, optional): entity id -> index to extend (copied, never changed in place).
        relation_vocab (Vocabulary, optional): relation type -> index to extend.
        entity_type_vocab (Vocabulary, optional): entity type -> index to extend.

    Returns:
        ``Data`` with ``edge_index``, ``edge_type``, ``edge_confidence``, ``node_type``, ``num_nodes`` and the
        attributes ``entity_vocab``, ``relation_vocab``, ``entity_type_vocab`` and ``entity_names``.

    Shapes:
        edge_index ``[2, E]``; edge_type, edge_confidence ``[E]``; node_type ``[num_nodes]``.

    Raises:
        ValidationError: when a relation names an entity that is not listed.
    """
    return graph_tensors(entities, relations, entity_vocab=entity_vocab, relation_vocab=relation_vocab,
                         entity_type_vocab=entity_type_vocab).to_data()


def graph_tensors(
    entities: Iterable[Entity],
    relations: Iterable[Relation],
    *,
    entity_vocab: Vocabulary | None = None,
    relation_vocab: Vocabulary | None = None,
    entity_type_vocab: Vocabulary | None = None,
) -> GraphTensors:
    """Build the :class:`GraphTensors` of entities and relations (see :func:`graph_to_data`); the entities'
    aliases go to ``entity_aliases``."""
    ids: list[str] = []
    names: list[str] = []
    types: list[str] = []
    aliases: dict[str, list[str]] = {}
    for entity in entities:
        ids.append(entity.id)
        names.append(entity.name)
        types.append(entity.type)
        if entity.aliases:
            aliases[entity.id] = list(entity.aliases)
    heads: list[str] = []
    tails: list[str] = []
    relation_types: list[str] = []
    confidences: list[float] = []
    for relation in relations:
        heads.append(relation.head)
        tails.append(relation.tail)
        relation_types.append(relation.type)
        confidences.append(relation.confidence)
    built = _build(ids, names, types, heads, relation_types, tails, confidences,
                   entity_vocab, relation_vocab, entity_type_vocab)
    index = built.entity_vocab.index_map()
    built.entity_aliases = {index[entity_id]: more for entity_id, more in aliases.items()}
    return built


def store_tensors(
    store: GraphStore,
    *,
    entity_vocab: Vocabulary | None = None,
    relation_vocab: Vocabulary | None = None,
    entity_type_vocab: Vocabulary | None = None,
) -> GraphTensors:
    """Read a graph store (any backend) into :class:`GraphTensors`, aliases included, without PyG."""
    return graph_tensors(store.iter_entities(), store.iter_relations(), entity_vocab=entity_vocab,
                         relation_vocab=relation_vocab, entity_type_vocab=entity_type_vocab)


def store_to_data(
    store: GraphStore,
    *,
    entity_vocab: Vocabulary | None = None,
    relation_vocab: Vocabulary | None = None,
    entity_type_vocab: Vocabulary | None = None,
) -> Data:
    """Read a graph store (any backend, through ``iter_entities``/``iter_relations``) into a ``Data``.

    See :func:`graph_to_data` for the arguments and attributes.
    """
    return store_tensors(store, entity_vocab=entity_vocab, relation_vocab=relation_vocab,
                         entity_type_vocab=entity_type_vocab).to_data()


def triples_to_data(
    path: str | Path,
    *,
    entity_vocab: Vocabulary | None = None,
    relation_vocab: Vocabulary | None = None,
    entity_type_vocab: Vocabulary | None = None,
    domain: str | None = None,
    entity_type: str | None = None,
) -> Data:
    """Read a ``head|relation|tail`` (or TAB-separated) triples file into a ``Data``.

    Entity ids and relation types are those of :func:`kgmm.sources.triples.read_triples`, so they match a
    store the same file was ingested into. See :func:`graph_to_data` for the vocabularies.

    Args:
        path (str or Path): the triples file (MetaQA's ``kb.txt``: 129k lines in about a second).
        domain (str, optional): the entities' domain (default: that of ``read_triples``).
        entity_type (str, optional): the entities' type (default: that of ``read_triples``).
    """
    return triples_tensors(path, entity_vocab=entity_vocab, relation_vocab=relation_vocab,
                           entity_type_vocab=entity_type_vocab, domain=domain, entity_type=entity_type).to_data()


def triples_tensors(
    path: str | Path,
    *,
    entity_vocab: Vocabulary | None = None,
    relation_vocab: Vocabulary | None = None,
    entity_type_vocab: Vocabulary | None = None,
    domain: str | None = None,
    entity_type: str | None = None,
) -> GraphTensors:
    """Read a triples file into :class:`GraphTensors` (see :func:`triples_to_data`)."""
    from kgmm.sources.triples import read_triples
    from kgmm.utils import paused_gc

    options = {key: value for key, value in (("domain", domain), ("entity_type", entity_type)) if value is not None}
    triples = read_triples(path, **options)
    with paused_gc():
        return graph_tensors(triples.entities, triples.relations, entity_vocab=entity_vocab,
                             relation_vocab=relation_vocab, entity_type_vocab=entity_type_vocab)


def _build(
    ids: list[str], names: list[str], types: list[str], heads: list[str], relation_types: list[str],
    tails: list[str], confidences: list[float], entity_vocab: Vocabulary | None,
    relation_vocab: Vocabulary | None, entity_type_vocab: Vocabulary | None,
) -> GraphTensors:
    import torch

    entity_vocab = _extended(entity_vocab, ids, "entities")
    relation_vocab = _extended(relation_vocab, relation_types, "relations")
    entity_type_vocab = _extended(entity_type_vocab, types, "entity_types")
    num_nodes = len(entity_vocab)

    node_index = torch.tensor(entity_vocab.indices(ids), dtype=torch.long)
    node_type = torch.full((num_nodes,), MISSING_TYPE, dtype=torch.long)
    node_type[node_index] = torch.tensor(entity_type_vocab.indices(types), dtype=torch.long)
    entity_names = [""] * num_nodes
    for position, name in zip(node_index.tolist(), names, strict=True):
        entity_names[position] = name

    listed = dict.fromkeys(ids)  # only the entities of this graph, not every key of a given vocabulary
    index = entity_vocab.index_map()
    try:
        head_index = [index[head] if head in listed else _dangling(head) for head in heads]
        tail_index = [index[tail] if tail in listed else _dangling(tail) for tail in tails]
    except KeyError as e:
        raise ValidationError(
            f"a relation names the entity {e.args[0]!r}, which the graph does not list; upsert the entity "
            "before its relations (or pass its Entity to graph_to_data)"
        ) from None
    edge_index = torch.tensor([head_index, tail_index], dtype=torch.long).view(2, -1)
    edge_type = torch.tensor(relation_vocab.indices(relation_types), dtype=torch.long)
    edge_confidence = torch.tensor(confidences, dtype=torch.float)
    edge_index, edge_type, edge_confidence = _unique_edges(edge_index, edge_type, edge_confidence, num_nodes,
                                                           len(relation_vocab))
    return GraphTensors(
        edge_index=edge_index, edge_type=edge_type, edge_confidence=edge_confidence, node_type=node_type,
        num_nodes=num_nodes, entity_vocab=entity_vocab, relation_vocab=relation_vocab,
        entity_type_vocab=entity_type_vocab, entity_names=entity_names,
    )


def _dangling(key: str) -> int:
    raise KeyError(key)


def _extended(vocabulary: Vocabulary | None, keys: list[str], name: str) -> Vocabulary:
    result = Vocabulary(vocabulary.keys if vocabulary is not None else (), name=name)
    known = result.index_map()
    result.extend(sorted({key for key in keys if key not in known}))
    return result


def _unique_edges(edge_index, edge_type, edge_confidence, num_nodes: int, num_relations: int):
    """Keep the first occurrence of every (head, relation, tail), in input order, with its highest confidence."""
    import numpy as np
    import torch

    if edge_index.size(1) < 2:
        return edge_index, edge_type, edge_confidence
    key = ((edge_index[0] * max(num_relations, 1) + edge_type) * max(num_nodes, 1) + edge_index[1]).numpy()
    # numpy's unique is ~10x faster than torch.unique on CPU for this size
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    if first.size == key.size:
        return edge_index, edge_type, edge_confidence
    inverse = torch.from_numpy(inverse.reshape(-1)).long()
    best = torch.zeros(first.size).scatter_reduce(0, inverse, edge_confidence, reduce="amax")
    order = torch.from_numpy(np.argsort(first, kind="stable"))
    kept = torch.from_numpy(first).long()[order]
    return edge_index[:, kept], edge_type[kept], best[order]


def to_hetero_data(data: Data) -> HeteroData:
    """Split a ``Data`` from this module into a ``HeteroData``: one node type per entity type.

    Each node type ``T`` holds ``num_nodes``, ``node_index`` (the global node index of each local node, i.e.
    its index in ``entity_vocab``) and ``entity_ids``; each edge type ``(head type, RELATION, tail type)``
    present holds ``edge_index`` (local indices), ``edge_confidence`` and ``edge_id`` (the edge's column in
    ``data.edge_index``). Nodes without a type (``node_type`` -1) are left out. The vocabularies are kept.

    Args:
        data (Data): a graph built by :func:`graph_to_data`, :func:`store_to_data` or :func:`triples_to_data`.
    """
    import torch
    from torch_geometric.data import HeteroData

    entity_ids = data.entity_vocab.keys
    type_names = data.entity_type_vocab.keys
    relation_names = data.relation_vocab.keys
    node_type = data.node_type
    local = torch.full_like(node_type, -1)
    hetero = HeteroData()
    for type_index, type_name in enumerate(type_names):
        members = (node_type == type_index).nonzero().view(-1)
        if members.numel() == 0:
            continue
        local[members] = torch.arange(members.numel())
        store = hetero[type_name]
        store.num_nodes = members.numel()
        store.node_index = members
        store.entity_ids = [entity_ids[i] for i in members.tolist()]
    head, tail = data.edge_index
    num_types = max(len(type_names), 1)
    num_relations = max(len(relation_names), 1)
    group = (node_type[head] * num_relations + data.edge_type) * num_types + node_type[tail]
    order = torch.argsort(group, stable=True)
    groups, counts = torch.unique_consecutive(group[order], return_counts=True)
    for group_key, edge_ids in zip(groups.tolist(), torch.split(order, counts.tolist()), strict=True):
        head_type, rest = divmod(group_key, num_relations * num_types)
        relation, tail_type = divmod(rest, num_types)
        store = hetero[type_names[head_type], relation_names[relation], type_names[tail_type]]
        store.edge_index = torch.stack([local[head[edge_ids]], local[tail[edge_ids]]])
        store.edge_confidence = data.edge_confidence[edge_ids]
        store.edge_id = edge_ids
    hetero.entity_vocab = data.entity_vocab
    hetero.relation_vocab = data.relation_vocab
    hetero.entity_type_vocab = data.entity_type_vocab
    return hetero


def store_to_hetero_data(store: GraphStore, **vocabularies: Vocabulary | None) -> HeteroData:
    """Read a graph store into a ``HeteroData`` (see :func:`to_hetero_data` and :func:`store_to_data`)."""
    return to_hetero_data(store_to_data(store, **vocabularies))


def load_vocabularies(directory: str | Path) -> dict[str, Vocabulary]:
    """Load the vocabularies saved in ``directory`` (a model's or a graph's folder), by argument name.

    Returns a dict with those of ``entity_vocab``, ``relation_vocab`` and ``entity_type_vocab`` found there,
    ready to pass on: ``store_to_data(store, **load_vocabularies(model_dir))``.
    """
    directory = Path(directory)
    found = {}
    for argument, file_name in (("entity_vocab", ENTITIES_FILE), ("relation_vocab", RELATIONS_FILE),
                                ("entity_type_vocab", ENTITY_TYPES_FILE)):
        if (directory / file_name).is_file():
            found[argument] = Vocabulary.load(directory / file_name)
    if not found:
        raise ValidationError(f"no vocabularies in {directory} (expected {ENTITIES_FILE}, {RELATIONS_FILE}); "
                              "point at a folder written by save_graph_tensors or a trained model")
    return found


def save_graph_tensors(data: Data, directory: str | Path) -> Path:
    """Save a graph's tensors (``tensors.pt``, plain tensors only) and vocabularies (JSON) to ``directory``.

    Reload with :func:`load_graph_tensors`; ``torch.load(path, weights_only=True)`` reads the tensors.
    """
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        "edge_index": data.edge_index.contiguous(),
        "edge_type": data.edge_type.contiguous(),
        "edge_confidence": data.edge_confidence.contiguous(),
        "node_type": data.node_type.contiguous(),
    }
    temporary = directory / (TENSORS_FILE + ".tmp")
    torch.save(tensors, temporary)
    temporary.replace(directory / TENSORS_FILE)
    data.entity_vocab.save(directory / ENTITIES_FILE)
    data.relation_vocab.save(directory / RELATIONS_FILE)
    data.entity_type_vocab.save(directory / ENTITY_TYPES_FILE)
    _write_json(directory / NAMES_FILE, list(data.entity_names))
    _write_json(directory / META_FILE, {"format": FORMAT, "num_nodes": int(data.num_nodes),
                                        "num_edges": int(data.edge_index.size(1)),
                                        "num_relations": len(data.relation_vocab)})
    return directory


def load_graph_tensors(directory: str | Path, *, mmap: bool = False) -> Data:
    """Load a graph saved by :func:`save_graph_tensors` as a ``Data`` with its vocabularies.

    Args:
        directory (str or Path): the folder.
        mmap (bool, optional): memory-map the tensors instead of reading them (default False).

    Raises:
        ValidationError: when the folder is not a saved graph or its parts disagree.
    """
    import torch

    directory = Path(directory)
    try:
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError(f"no saved graph in {directory} (no {META_FILE}); write one with save_graph_tensors") from None
    if meta.get("format") != FORMAT:
        raise ValidationError(f"{directory / META_FILE} is not a kgmm graph (expected format {FORMAT!r}, "
                              f"got {meta.get('format')!r}); save it again with save_graph_tensors")
    tensors = torch.load(directory / TENSORS_FILE, weights_only=True, mmap=mmap)
    entity_vocab = Vocabulary.load(directory / ENTITIES_FILE)
    names = json.loads((directory / NAMES_FILE).read_text(encoding="utf-8"))
    num_nodes = int(meta["num_nodes"])
    if len(entity_vocab) != num_nodes or len(names) != num_nodes or tensors["node_type"].numel() != num_nodes:
        raise ValidationError(f"the saved graph in {directory} is inconsistent: {num_nodes} nodes in {META_FILE}, "
                              f"{len(entity_vocab)} in {ENTITIES_FILE}, {len(names)} names; save it again")
    return GraphTensors(
        edge_index=tensors["edge_index"], edge_type=tensors["edge_type"],
        edge_confidence=tensors["edge_confidence"], node_type=tensors["node_type"], num_nodes=num_nodes,
        entity_vocab=entity_vocab, relation_vocab=Vocabulary.load(directory / RELATIONS_FILE),
        entity_type_vocab=Vocabulary.load(directory / ENTITY_TYPES_FILE), entity_names=names,
    ).to_data()


def _write_json(path: Path, value) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    temporary.replace(path)
