"""Subgraph retrieval: k-hop search both ways, PageRank and query pruning, ids and re-indexed edges."""

from __future__ import annotations

import pytest
import torch

from kgmm.errors import ValidationError
from kgmm.graphdata.retrieval import SubgraphRetriever, retrieve_subgraph
from kgmm.graphdata.tensors import graph_to_data
from kgmm.schema import Entity, Relation


def film_graph():
    """A film (seed) with a director and two actors; one actor is in a second film; a genre hub links ten films.

    heat -DIRECTED_BY-> mann; heat -STARRED-> pacino, deniro; insider -STARRED-> pacino;
    heat, f0..f8 -HAS_GENRE-> crime; far -STARRED-> nobody (not connected to heat).
    """
    names = ["heat", "mann", "pacino", "deniro", "insider", "crime", "far", "nobody"] + [f"f{i}" for i in range(9)]
    entities = [Entity(f"g:c:{name}", name, "Concept", "g") for name in names]
    relations = [
        Relation("g:c:heat", "DIRECTED_BY", "g:c:mann", 1.0, "t"),
        Relation("g:c:heat", "STARRED", "g:c:pacino", 1.0, "t"),
        Relation("g:c:heat", "STARRED", "g:c:deniro", 1.0, "t"),
        Relation("g:c:insider", "STARRED", "g:c:pacino", 1.0, "t"),
        Relation("g:c:heat", "HAS_GENRE", "g:c:crime", 1.0, "t"),
        Relation("g:c:far", "STARRED", "g:c:nobody", 1.0, "t"),
        *[Relation(f"g:c:f{i}", "HAS_GENRE", "g:c:crime", 1.0, "t") for i in range(9)],
    ]
    return graph_to_data(entities, relations)


def test_retrieve_k_hop_both_directions_with_original_ids_and_edges():
    data = film_graph()
    sub = retrieve_subgraph(data, ["g:c:pacino"], hops=2)
    # pacino <- heat, insider (inverse direction); then heat's other neighbours, at two hops
    assert set(sub.entity_ids) == {"g:c:pacino", "g:c:heat", "g:c:insider", "g:c:mann", "g:c:deniro", "g:c:crime"}
    assert sub.num_candidates == 6
    assert sub.entity_ids[0] == "g:c:pacino" and sub.seed_mask.tolist() == [True] + [False] * 5
    assert [data.entity_vocab.key(i) for i in sub.node_index.tolist()] == sub.entity_ids
    got = {(sub.entity_ids[h], data.relation_vocab.key(r), sub.entity_ids[t])
           for (h, t), r in zip(sub.edge_index.t().tolist(), sub.edge_type.tolist(), strict=True)}
    assert got == {("g:c:heat", "DIRECTED_BY", "g:c:mann"), ("g:c:heat", "STARRED", "g:c:pacino"),
                   ("g:c:heat", "STARRED", "g:c:deniro"), ("g:c:insider", "STARRED", "g:c:pacino"),
                   ("g:c:heat", "HAS_GENRE", "g:c:crime")}
    assert torch.equal(data.edge_index[:, sub.edge_id], sub.node_index[sub.edge_index])


def test_retrieve_pagerank_prunes_to_max_nodes_keeping_seed_and_nearest():
    data = film_graph()
    sub = retrieve_subgraph(data, ["g:c:heat"], hops=2, max_nodes=5)
    assert sub.num_candidates == 15  # all but far and nobody
    assert sub.num_nodes == 5
    assert sub.entity_ids[0] == "g:c:heat"
    # the four direct neighbours outrank every film reached only through the genre hub
    assert set(sub.entity_ids[1:]) == {"g:c:mann", "g:c:pacino", "g:c:deniro", "g:c:crime"}
    assert torch.all(sub.scores[1:-1] >= sub.scores[2:])
    assert "g:c:far" not in retrieve_subgraph(data, ["g:c:heat"], hops=4, max_nodes=50).entity_ids


def test_retrieve_pagerank_ranks_a_shared_neighbour_above_a_hub_neighbour():
    data = film_graph()
    sub = retrieve_subgraph(data, ["g:c:mann", "g:c:deniro"], hops=2, max_nodes=3)
    assert set(sub.entity_ids) == {"g:c:mann", "g:c:deniro", "g:c:heat"}
    assert sub.seed_mask.sum() == 2
    sub = retrieve_subgraph(data, ["g:c:mann"], hops=3, max_nodes=6)
    # at three hops insider (via pacino) beats f0..f8 (via the genre hub, degree 10)
    assert "g:c:insider" in sub.entity_ids and not any(e.startswith("g:c:f") for e in sub.entity_ids)


def test_retrieve_by_query_embedding_ranks_by_cosine():
    data = film_graph()
    features = torch.zeros(data.num_nodes, 4)
    features[:, 3] = 1.0
    wanted = data.entity_vocab.index("g:c:f7")
    features[wanted] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    retriever = SubgraphRetriever(data, node_features=features)
    query = torch.tensor([1.0, 0.0, 0.0, 0.0])
    sub = retriever.retrieve(["g:c:heat"], hops=2, max_nodes=2, query=query, connected=False)
    assert sub.entity_ids == ["g:c:heat", "g:c:f7"]
    assert sub.scores[1].item() == pytest.approx(1.0)
    assert sub.edge_index.size(1) == 0  # f7 reaches heat only through the pruned genre
    data_out = sub.to_data(features)
    assert data_out.x.shape == (2, 4) and torch.equal(data_out.x[1], features[wanted])
    # connected (the default): f7 comes with crime, the node it is reached through
    sub = retriever.retrieve(["g:c:heat"], hops=2, max_nodes=3, query=query)
    assert sub.entity_ids == ["g:c:heat", "g:c:crime", "g:c:f7"]
    assert sub.scores[2] > sub.scores[1]  # the nodes' own scores, not the capped ones
    assert retriever.retrieve(["g:c:heat"], hops=2, max_nodes=2, query=query).entity_ids == ["g:c:heat", "g:c:crime"]


def test_every_retrieved_node_has_a_path_to_a_seed_inside_the_subgraph():
    import networkx as nx

    generator = torch.Generator().manual_seed(0)
    entities = [Entity(f"g:c:n{i}", f"n{i}", "Concept", "g") for i in range(300)]
    heads = torch.randint(0, 300, (900,), generator=generator).tolist()
    tails = torch.randint(0, 300, (900,), generator=generator).tolist()
    relations = [Relation(f"g:c:n{h}", "R", f"g:c:n{t}", 1.0, "t") for h, t in zip(heads, tails, strict=True) if h != t]
    data = graph_to_data(entities, relations)
    features = torch.randn(data.num_nodes, 8, generator=generator)
    retriever = SubgraphRetriever(data, node_features=features)
    for seed in range(0, 300, 37):
        for query in (None, torch.randn(8, generator=generator)):
            sub = retriever.retrieve([f"g:c:n{seed}"], hops=3, max_nodes=25, query=query)
            graph = nx.Graph()
            graph.add_nodes_from(range(sub.num_nodes))
            graph.add_edges_from(sub.edge_index.t().tolist())
            assert nx.is_connected(graph), (seed, query is None)


def test_retrieve_accepts_indices_and_reports_bad_seeds():
    data = film_graph()
    retriever = SubgraphRetriever(data)
    heat = data.entity_vocab.index("g:c:heat")
    assert retriever.retrieve([heat], hops=1).entity_ids == retriever.retrieve(["g:c:heat"], hops=1).entity_ids
    assert retriever.retrieve(torch.tensor([heat]), hops=0).entity_ids == ["g:c:heat"]
    with pytest.raises(ValidationError, match="g:c:nope"):
        retriever.retrieve(["g:c:nope"])
    with pytest.raises(ValidationError, match=r"0\.\.16"):
        retriever.retrieve([99])
    with pytest.raises(ValidationError, match="max_nodes"):
        retriever.retrieve(["g:c:heat", "g:c:mann"], max_nodes=1)
    with pytest.raises(ValidationError, match="node features"):
        retriever.retrieve(["g:c:heat"], query=torch.ones(4))
