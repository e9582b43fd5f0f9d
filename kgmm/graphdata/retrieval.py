"""Subgraph retrieval: the k-hop neighbourhood of seed entities, pruned to the most relevant nodes.

The neighbourhood is found by breadth-first search over a CSR index of the graph with every relation read
both ways, built once per graph (:class:`SubgraphRetriever`). It is pruned to at most ``max_nodes`` nodes
by personalised PageRank from the seeds or, when a query embedding is given, by cosine similarity between
the query and the node features. Seeds are always kept, and by default the kept nodes stay connected to
them: a node ranks at least as high as the best node reached through it (its search descendants), and a
parent comes before its children, so a node is kept only with its path back to a seed (a query-relevant
film two hops out comes with the actor that leads to it). Pure torch: no pyg-lib, torch-sparse or
torch-scatter.

PageRank runs locally: a few power iterations over the edges the search walked (those leaving nodes nearer
than ``hops``), each edge weighted by 1 / (degree of its tail in the whole graph), so a node reached through
a hub (a genre, a year) scores low, and walks leaving the neighbourhood are dropped rather than renormalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kgmm.errors import ValidationError

if TYPE_CHECKING:
    from torch import Tensor
    from torch_geometric.data import Data


@dataclass
class RetrievedSubgraph:
    """A pruned neighbourhood, with both local and global indices.

    Args:
        node_index (Tensor): ``[n]`` global node indices, best score first (seeds lead).
        entity_ids (list[str]): the entity id of each node, aligned with ``node_index``.
        edge_index (Tensor): ``[2, m]`` edges among the nodes, in local indices (head, tail as stored).
        edge_type (Tensor): ``[m]`` relation indices (into the graph's ``relation_vocab``).
        edge_id (Tensor): ``[m]`` each edge's column in the graph's ``edge_index``.
        scores (Tensor): ``[n]`` personalised PageRank (or cosine similarity to the query) of each node.
        seed_mask (Tensor): ``[n]`` True for the seeds.
        num_candidates (int): nodes in the whole k-hop neighbourhood before pruning.
    """

    node_index: Tensor
    entity_ids: list[str]
    edge_index: Tensor
    edge_type: Tensor
    edge_id: Tensor
    scores: Tensor
    seed_mask: Tensor
    num_candidates: int

    @property
    def num_nodes(self) -> int:
        return int(self.node_index.numel())

    def to_data(self, x: Tensor | None = None) -> Data:
        """Return the subgraph as a PyG ``Data`` (``x`` is the full graph's feature matrix, sliced here)."""
        from torch_geometric.data import Data

        data = Data(edge_index=self.edge_index, edge_type=self.edge_type, num_nodes=self.num_nodes,
                    node_index=self.node_index, scores=self.scores, seed_mask=self.seed_mask)
        if x is not None:
            data.x = x[self.node_index]
        return data


class SubgraphRetriever:
    """Retrieve pruned k-hop subgraphs of one graph; builds its CSR index once (about 30 ms for MetaQA).

    Args:
        data (Data): a graph from :mod:`kgmm.graphdata.tensors` (``edge_index``, ``edge_type``, ``num_nodes``,
            and ``entity_vocab`` to accept entity ids as seeds).
        node_features (Tensor, optional): ``[num_nodes, d]`` features used to rank by a query embedding.

    Shapes:
        node_features ``[num_nodes, d]``; a query ``[d]``.
    """

    def __init__(self, data: Data, *, node_features: Tensor | None = None) -> None:
        import torch

        edge_index = data.edge_index
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValidationError(f"expected edge_index of shape [2, E], got {list(edge_index.shape)}")
        self.num_nodes = int(data.num_nodes)
        self.entity_vocab = getattr(data, "entity_vocab", None)
        self.edge_type = data.edge_type
        num_edges = edge_index.size(1)
        row = torch.cat([edge_index[0], edge_index[1]])
        col = torch.cat([edge_index[1], edge_index[0]])
        edge_id = torch.arange(num_edges).repeat(2)
        order = torch.argsort(row, stable=True)
        self.col = col[order]
        self.csr_edge_id = edge_id[order]
        self.forward = order < num_edges  # the entry reads the edge head -> tail
        counts = torch.bincount(row, minlength=self.num_nodes)
        self.rowptr = torch.zeros(self.num_nodes + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=self.rowptr[1:])
        self.inverse_degree = 1.0 / counts.clamp(min=1).float()
        self.edge_head = edge_index[0]
        self.edge_tail = edge_index[1]
        self.node_features = None
        if node_features is not None:
            self.set_node_features(node_features)

    def set_node_features(self, node_features: Tensor) -> None:
        """Attach ``[num_nodes, d]`` features (any float dtype) for ranking by a query embedding.

        Rows are L2-normalised once here (no copy when they already are, as text embeddings from
        :mod:`kgmm.graphdata.features` are), so a query costs one gather and one matrix-vector product.
        """
        import torch

        if node_features.dim() != 2 or node_features.size(0) != self.num_nodes:
            raise ValidationError(f"expected node_features of shape [{self.num_nodes}, d], "
                                  f"got {list(node_features.shape)}")
        norms = node_features.float().norm(dim=1)
        if not bool(torch.all(((norms - 1).abs() < 1e-3) | (norms == 0))):
            node_features = torch.nn.functional.normalize(node_features.float(), dim=1)
        self.node_features = node_features

    def seed_indices(self, seeds: Sequence[str | int] | Tensor) -> Tensor:
        """Return the global node indices of ``seeds`` (entity ids or node indices), without repeats."""
        import torch

        if isinstance(seeds, torch.Tensor):
            index = seeds.reshape(-1).long()
        else:
            seeds = list(seeds)
            if seeds and all(isinstance(seed, str) for seed in seeds):
                if self.entity_vocab is None:
                    raise ValidationError("seeds given as entity ids but the graph has no entity_vocab; "
                                          "pass node indices or build the graph with kgmm.graphdata.tensors")
                index = torch.tensor(self.entity_vocab.indices(seeds), dtype=torch.long)
            elif all(isinstance(seed, int) for seed in seeds):
                index = torch.tensor(seeds, dtype=torch.long)
            else:
                raise ValidationError(f"expected seeds as entity ids (str) or node indices (int), got {seeds!r}")
        if index.numel() == 0:
            raise ValidationError("expected at least one seed entity")
        if int(index.min()) < 0 or int(index.max()) >= self.num_nodes:
            raise ValidationError(f"seed node indices must be in 0..{self.num_nodes - 1}, "
                                  f"got {int(index.min())}..{int(index.max())}")
        return torch.unique(index)

    def _neighbours(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        """Return the CSR positions of every neighbour entry of ``nodes`` and the node each belongs to."""
        import torch

        start = self.rowptr[nodes]
        count = self.rowptr[nodes + 1] - start
        total = int(count.sum())
        offsets = torch.cumsum(count, 0) - count
        positions = torch.repeat_interleave(start - offsets, count, output_size=total) + torch.arange(total)
        owners = torch.repeat_interleave(nodes, count, output_size=total)
        return positions, owners

    def retrieve(
        self,
        seeds: Sequence[str | int] | Tensor,
        *,
        hops: int = 2,
        max_nodes: int = 200,
        query: Tensor | None = None,
        alpha: float = 0.15,
        iterations: int = 10,
        connected: bool = True,
    ) -> RetrievedSubgraph:
        """Return the ``hops``-neighbourhood of ``seeds`` pruned to at most ``max_nodes`` nodes.

        Args:
            seeds (list of str or int, or Tensor): entity ids or global node indices.
            hops (int, optional): search depth, relations read both ways (default 2).
            max_nodes (int, optional): most nodes kept, seeds included (default 200).
            query (Tensor, optional): ``[d]`` embedding; when given, nodes are ranked by cosine similarity to
                their features (set with ``node_features``) instead of PageRank.
            alpha (float, optional): PageRank restart probability (default 0.15).
            iterations (int, optional): PageRank power iterations (default 10).
            connected (bool, optional): rank a node by the best of itself and the nodes reached through it,
                parents first, so every kept node has a path to a seed inside the subgraph (default True);
                False keeps the top-scoring nodes wherever they are. ``scores`` are each node's own score.

        Raises:
            ValidationError: for unknown seeds, more seeds than ``max_nodes``, or a query without features.
        """
        import torch

        if hops < 0:
            raise ValidationError(f"expected hops >= 0, got {hops}")
        seed_index = self.seed_indices(seeds)
        if seed_index.numel() > max_nodes:
            raise ValidationError(f"{seed_index.numel()} seeds do not fit in max_nodes={max_nodes}; "
                                  "raise max_nodes or pass fewer seeds")
        inside = torch.zeros(self.num_nodes, dtype=torch.bool)
        inside[seed_index] = True
        frontier = seed_index
        walked_heads, walked_positions, levels = [], [], []
        parent = torch.full((self.num_nodes,), -1, dtype=torch.long) if connected else None
        for _ in range(hops):
            positions, owners = self._neighbours(frontier)
            walked_positions.append(positions)
            walked_heads.append(owners)
            tails = self.col[positions]
            reached = torch.zeros(self.num_nodes, dtype=torch.bool)
            reached[tails] = True
            reached &= ~inside
            frontier = reached.nonzero().view(-1)
            if frontier.numel() == 0:
                break
            if parent is not None:
                new = reached[tails]
                parent[tails[new]] = owners[new]
                levels.append(frontier)
            inside |= reached
        candidates = inside.nonzero().view(-1)

        if query is not None:
            scores = self._query_scores(candidates, query)
        else:
            scores = self._pagerank(seed_index, walked_heads, walked_positions, alpha, iterations)[candidates]
        is_seed = torch.zeros(self.num_nodes, dtype=torch.bool)
        is_seed[seed_index] = True
        rank = torch.where(is_seed[candidates], torch.full_like(scores, float("inf")), scores)
        keep = min(max_nodes, candidates.numel())
        if parent is not None and levels:
            order = self._connected_order(candidates, rank, parent, levels)[:keep]
        elif keep < candidates.numel():
            order = torch.topk(rank, keep, sorted=True).indices
        else:
            order = torch.argsort(rank, descending=True, stable=True)
        node_index = candidates[order]
        return self._induced(node_index, scores[order], is_seed[node_index], candidates.numel())

    def _connected_order(self, candidates: Tensor, rank: Tensor, parent: Tensor, levels: list[Tensor]) -> Tensor:
        """Order candidates by the best rank below them (themselves included), parents first.

        Every prefix of the order is closed under search parents, hence connected to the seeds.
        """
        import torch

        best = torch.full((self.num_nodes,), float("-inf"))
        best[candidates] = rank
        depth = torch.zeros(self.num_nodes, dtype=torch.long)
        for level, nodes in reversed(list(enumerate(levels, 1))):
            best.scatter_reduce_(0, parent[nodes], best[nodes], reduce="amax")
            depth[nodes] = level
        by_depth = torch.argsort(depth[candidates], stable=True)
        return by_depth[torch.argsort(best[candidates][by_depth], descending=True, stable=True)]

    def _pagerank(self, seed_index: Tensor, walked_heads: list[Tensor], walked_positions: list[Tensor],
                  alpha: float, iterations: int) -> Tensor:
        import torch

        restart = torch.zeros(self.num_nodes)
        restart[seed_index] = 1.0 / seed_index.numel()
        if not walked_positions:
            return restart
        heads = torch.cat(walked_heads)
        tails = self.col[torch.cat(walked_positions)]
        weight = self.inverse_degree[heads] * (1.0 - alpha)
        scores = restart
        restart = restart * alpha
        for _ in range(iterations):
            scores = restart.index_add(0, tails, scores[heads] * weight)
        return scores

    def _query_scores(self, candidates: Tensor, query: Tensor) -> Tensor:
        import torch

        if self.node_features is None:
            raise ValidationError("a query embedding needs node features: pass node_features to SubgraphRetriever "
                                  "(see kgmm.graphdata.features.node_features)")
        query = query.reshape(-1).float()
        if query.numel() != self.node_features.size(1):
            raise ValidationError(f"expected a query of {self.node_features.size(1)} values (the node features' "
                                  f"width), got {query.numel()}")
        query = torch.nn.functional.normalize(query, dim=0)
        return self.node_features[candidates].float() @ query

    def _induced(self, node_index: Tensor, scores: Tensor, seed_mask: Tensor, num_candidates: int) -> RetrievedSubgraph:
        import torch

        local = torch.full((self.num_nodes,), -1, dtype=torch.long)
        local[node_index] = torch.arange(node_index.numel())
        positions, _ = self._neighbours(node_index)
        tails = self.col[positions]
        kept = self.forward[positions] & (local[tails] >= 0)
        edge_id, _ = torch.sort(self.csr_edge_id[positions[kept]])
        edge_index = torch.stack([local[self.edge_head[edge_id]], local[self.edge_tail[edge_id]]])
        entity_ids = ([self.entity_vocab.key(i) for i in node_index.tolist()] if self.entity_vocab is not None
                      else [str(i) for i in node_index.tolist()])
        return RetrievedSubgraph(node_index=node_index, entity_ids=entity_ids, edge_index=edge_index,
                                 edge_type=self.edge_type[edge_id], edge_id=edge_id, scores=scores,
                                 seed_mask=seed_mask, num_candidates=num_candidates)


def retrieve_subgraph(
    data: Data,
    seeds: Sequence[str | int] | Tensor,
    *,
    hops: int = 2,
    max_nodes: int = 200,
    query: Tensor | None = None,
    node_features: Tensor | None = None,
    alpha: float = 0.15,
    iterations: int = 10,
) -> RetrievedSubgraph:
    """Retrieve one pruned subgraph (builds a :class:`SubgraphRetriever`; keep one to retrieve many).

    See :meth:`SubgraphRetriever.retrieve` for the arguments.
    """
    retriever = SubgraphRetriever(data, node_features=node_features)
    return retriever.retrieve(seeds, hops=hops, max_nodes=max_nodes, query=query, alpha=alpha,
                              iterations=iterations)
