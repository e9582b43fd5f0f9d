"""Writing a stored graph to files other tools read: networkx pickle, GraphML, PyG tensors."""

from __future__ import annotations

import pickle
from pathlib import Path

from kgmm.errors import ValidationError
from kgmm.store.base import GraphStore

EXPORT_FORMATS = ("networkx", "graphml", "pyg", "html")


def export_graph(store: GraphStore, fmt: str, out: str | Path, *, around=None) -> dict:
    """Write the whole graph of ``store`` to ``out`` in ``fmt``; return what was written.

    ``html`` writes the interactive view of :mod:`kgmm.app.viz` as one offline HTML file: of the whole store, or of
    ``around`` (a :class:`kgmm.schema.Subgraph`, e.g. an entity's neighbourhood).

    ``pyg`` writes a dict of tensors and vocabularies with ``torch.save``, loadable with
    ``torch.load(path, weights_only=True)`` (for a folder that reloads as a ``Data`` with its vocabularies, use
    :func:`kgmm.graphdata.save_graph_tensors`).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValidationError(f"no export format {fmt!r}; available: {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        from kgmm.app.viz import write_html

        return write_html(around if around is not None else store, out, store=store)
    if fmt == "pyg":
        import torch

        from kgmm.graphdata import store_to_data

        data = store_to_data(store)
        payload = {
            "edge_index": data.edge_index,
            "edge_type": data.edge_type,
            "node_type": data.node_type,
            "edge_confidence": data.edge_confidence,
            "entity_ids": data.entity_vocab.keys,
            "entity_names": list(data.entity_names),
            "entity_types": data.entity_type_vocab.keys,
            "relation_types": data.relation_vocab.keys,
        }
        torch.save(payload, out)
        return {"format": fmt, "path": str(out), "nodes": len(payload["entity_ids"]), "edges": int(data.edge_index.shape[1])}
    graph = store.to_networkx()
    if fmt == "networkx":
        with out.open("wb") as handle:
            pickle.dump(graph, handle, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        import networkx as nx

        nx.write_graphml(_graphml_safe(graph), out)
    return {"format": fmt, "path": str(out), "nodes": graph.number_of_nodes(), "edges": graph.number_of_edges()}


def _graphml_safe(graph):
    """Return a copy whose list attributes are joined with ``|`` (GraphML holds scalars only)."""
    safe = graph.copy()
    for _, attrs in safe.nodes(data=True):
        for key, value in list(attrs.items()):
            if isinstance(value, (list, tuple)):
                attrs[key] = "|".join(map(str, value))
    for *_, attrs in safe.edges(keys=True, data=True):
        for key, value in list(attrs.items()):
            if isinstance(value, (list, tuple)):
                attrs[key] = "|".join(map(str, value))
    return safe
