"""Question-conditioned graph reasoning: a question (and an image) decides which relations to follow, step by step.

The model holds no entity parameters, so a trained model answers over any graph with the same relation types
(a grown store, a KB it never saw). It has two parts:

- **Instructions**: a fusion strategy of :mod:`kgmm.nn.fusion` reads the question's contextual token states, the
  seed entities' relation profile (how many edges of each relation and direction leave them: what kind of
  entity the question starts from) and the image's features when there is one, and emits, for each of ``steps`` reasoning steps, a distribution over
  the relations in both directions (``r`` and its inverse ``r + R``), plus a distribution over the steps (how
  many hops the question takes).
- **Propagation** (:class:`RelationGraph`): a relation-weighted message passing over the knowledge graph. Scores
  start on the question's seed entities (its linked topic entities, or the entities an image resembles) and
  each step moves every node's score along each edge, weighted by that step's relation weight; a node's new
  score is the sum of what reaches it, capped at 1; the seeds themselves are never walked through again (a
  chain of facts does not come back through the question's own entity). The answer score of a node is its score after each step,
  weighted by the step distribution. Only edges leaving a node that holds score, of a relation with weight,
  count: the subgraph walked is pruned by the question itself, and :func:`trace_path` reads the
  strongest chain of facts back from an answer to a seed.

This is the TransferNet scheme (Shi et al., EMNLP 2021) with kgmm's fusion modules as the question reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from kgmm.errors import ValidationError
from kgmm.nn.fusion import build_fusion

DEFAULT_STEPS = 3
DEFAULT_FUSION = "early-concat"
FRONTIER_BATCH = 8  # at most this many questions at once (outside training) walk only their frontier's edges
FRONTIER_BUDGET = 16_000_000  # so does a larger batch while (frontier edges x questions) stays under this
PRUNE = 1e-4  # scores and relation weights below this are not propagated


class RelationGraph:
    """A knowledge graph's edges in both directions, for question-conditioned propagation.

    Args:
        edge_index (Tensor): ``[2, E]`` head and tail node indices.
        edge_type (Tensor): ``[E]`` relation indices in ``[0, num_relations)``; edges of a larger index (relation
            types the model never saw) are left out.
        num_nodes (int): number of nodes ``N``.
        num_relations (int): the model's number of relation types ``R``; relation ``r`` followed backwards is
            ``r + R``.
    """

    def __init__(self, edge_index: Tensor, edge_type: Tensor, num_nodes: int, num_relations: int) -> None:
        known = edge_type < num_relations
        head, tail = edge_index[0][known], edge_index[1][known]
        relation = edge_type[known]
        self.source = torch.cat([head, tail])
        self.target = torch.cat([tail, head])
        self.relation = torch.cat([relation, relation + num_relations])
        self.num_nodes = int(num_nodes)
        self.num_relations = 2 * int(num_relations)
        self.num_edges = int(head.numel())
        self._degree: Tensor | None = None
        self._matrix: tuple[Tensor, Tensor, Tensor] | None = None
        self._by_source: tuple[Tensor, Tensor] | None = None

    def relation_profile(self, seeds: Tensor) -> Tensor:
        """How many edges of each relation (and direction) leave the seeds: what the first step can follow.

        Shapes:
            seeds ``[N, B]`` -> ``[B, 2R]`` (``log1p`` of the seed-weighted counts).
        """
        if self._degree is None:
            degree = torch.zeros(self.num_nodes, self.num_relations)
            degree.index_put_((self.source, self.relation), torch.ones(self.source.numel()), accumulate=True)
            self._degree = degree
        nodes = (seeds > 0).any(dim=1).nonzero().view(-1)
        return torch.log1p(seeds[nodes].t() @ self._degree[nodes])

    @classmethod
    def from_data(cls, data, num_relations: int | None = None) -> RelationGraph:
        """Build from a ``Data`` of :mod:`kgmm.graphdata` (``num_relations`` defaults to its relation vocabulary's)."""
        count = len(data.relation_vocab) if num_relations is None else num_relations
        return cls(data.edge_index, data.edge_type, int(data.num_nodes), count)

    def _stacked(self) -> tuple[Tensor, Tensor, Tensor]:
        """The edges as one sparse CSR matrix ``[rows, N]`` with a row per (relation, target node) pair, that
        row's relation and its target node (built once)."""
        if self._matrix is None:
            import warnings

            keys = self.relation * self.num_nodes + self.target
            rows, inverse = torch.unique(keys, return_inverse=True)
            with torch.sparse.check_sparse_tensor_invariants(False), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                matrix = torch.sparse_coo_tensor(torch.stack([inverse, self.source]),
                                                 torch.ones(self.source.numel()),
                                                 (rows.numel(), self.num_nodes)).coalesce().to_sparse_csr()
            self._matrix = (matrix, rows // self.num_nodes, rows % self.num_nodes)
        return self._matrix

    def step(self, scores: Tensor, weights: Tensor) -> Tensor:
        """One propagation step: ``out[v] = min(1, sum over edges u -r-> v of scores[u] * weights[r])``.

        Every (relation, target) pair sums its sources' scores in one sparse product; each pair's sum is then
        weighted by its relation and added to its target; outside training, pairs whose sum or relation weight
        is below ``PRUNE`` for every question are dropped first. Outside training, a batch of at most
        ``FRONTIER_BATCH`` questions, or a larger one whose frontier is small (edges leaving scored nodes times
        questions within ``FRONTIER_BUDGET``), instead walks only the edges leaving nodes that hold score, of
        relations weighted above ``PRUNE`` (the question's own pruned subgraph).

        Shapes:
            scores ``[N, B]`` (in [0, 1]), weights ``[B, 2R]`` -> ``[N, B]``.
        """
        import warnings

        if not torch.is_grad_enabled() and (scores.size(1) <= FRONTIER_BATCH
                                            or self._frontier_size(scores) * scores.size(1) <= FRONTIER_BUDGET):
            return self._frontier_step(scores, weights)
        matrix, row_relation, row_node = self._stacked()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            sums = torch.sparse.mm(matrix, scores)
        row_weights = weights.t()[row_relation]
        if not torch.is_grad_enabled():
            keep = (row_weights > PRUNE).any(dim=1) & (sums > PRUNE).any(dim=1)
            sums, row_weights, row_node = sums[keep], row_weights[keep], row_node[keep]
        out = torch.zeros_like(scores).index_add(0, row_node, sums * row_weights)
        return out.clamp(max=1.0)

    def _sources(self) -> tuple[Tensor, Tensor]:
        """Edge ids sorted by source node, and each node's first position in that order (built once)."""
        if self._by_source is None:
            order = torch.argsort(self.source, stable=True)
            pointer = torch.zeros(self.num_nodes + 1, dtype=torch.long)
            pointer[1:] = torch.cumsum(torch.bincount(self.source, minlength=self.num_nodes), 0)
            self._by_source = (order, pointer)
        return self._by_source

    def _frontier_size(self, scores: Tensor) -> int:
        """How many edges leave the nodes that hold score in some column."""
        _, pointer = self._sources()
        nodes = (scores > PRUNE).any(dim=1).nonzero().view(-1)
        return int((pointer[nodes + 1] - pointer[nodes]).sum())

    def _frontier_step(self, scores: Tensor, weights: Tensor) -> Tensor:
        """The same step touching only the edges that leave nodes holding score (asking one question: the
        question's own pruned subgraph, not the whole graph; a batch: while its frontier is small)."""
        order, pointer = self._sources()
        nodes = (scores > PRUNE).any(dim=1).nonzero().view(-1)
        counts = pointer[nodes + 1] - pointer[nodes]
        starts = torch.repeat_interleave(pointer[nodes], counts)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        edges = order[starts + offsets]
        relation = self.relation[edges]
        kept = (weights > PRUNE).any(dim=0)[relation]
        edges, relation = edges[kept], relation[kept]
        messages = scores[self.source[edges]] * weights.t()[relation]
        out = torch.zeros_like(scores).index_add_(0, self.target[edges], messages)
        return out.clamp(max=1.0)

    def reachable(self, seeds: Tensor, hops: int) -> Tensor:
        """Nodes within ``hops`` edges (either direction, any relation) of each column's seeds.

        Shapes:
            seeds ``[N, B]`` -> ``[N, B]`` bool (seeds excluded unless reached again).
        """
        weights = torch.ones(seeds.size(1), self.num_relations)
        scores, reached = seeds.float(), torch.zeros_like(seeds, dtype=torch.bool)
        for _ in range(hops):
            scores = (self.step(scores, weights) > 0).float()
            reached |= scores.bool()
        return reached


@dataclass
class Reasoning:
    """What :meth:`GraphQA.forward` returns.

    Args:
        scores (Tensor): ``[N, B]`` answer scores in [0, 1] (seeds set to 0).
        steps (list of Tensor): ``steps + 1`` tensors ``[N, B]``: the seed scores, then the scores after each step.
        relation_weights (Tensor): ``[B, T, 2R]`` the relations each step follows.
        hop_weights (Tensor): ``[B, T]`` how much each step's scores count in the answer.
    """

    scores: Tensor
    steps: list[Tensor]
    relation_weights: Tensor
    hop_weights: Tensor


class GraphQA(torch.nn.Module):
    """Answer questions over a knowledge graph by question-conditioned relation propagation.

    Args:
        num_relations (int): relation types ``R`` of the graph (the model follows ``2R``: each both ways).
        question_dim (int): width of the question's token states.
        steps (int, optional): reasoning steps ``T``, the most hops an answer may be away (default 3).
        fusion (str, optional): the fusion strategy that reads the question (and image): a key of
            ``kgmm.nn.fusion.FUSION_STRATEGIES`` (default ``cross-attention``).
        image_dim (int, optional): width of image features; None for a text-only model.
        hidden_channels (int, optional): the fusion's width (default 256).
        dropout (float, optional): dropout in the fusion (default 0.1).
        reader_layers (int, optional): transformer layers re-reading the question's tokens before the steps attend
            over them (default 0: the text encoder's states as they are).
        relation_feedback (bool, optional): each step's query also sees the relations the step before it chose, so
            a chain is read as a chain ("the films whose directors also directed X": back along the relation the
            first step followed; default False).
        hops_from_steps (bool, optional): how many hops a question takes is read from what its steps read as well
            as from the whole question (default False: from the whole question alone).
    """

    def __init__(self, num_relations: int, question_dim: int, *, steps: int = DEFAULT_STEPS,
                 fusion: str = DEFAULT_FUSION, image_dim: int | None = None, hidden_channels: int = 256,
                 dropout: float = 0.1, reader_layers: int = 0, relation_feedback: bool = False,
                 hops_from_steps: bool = False) -> None:
        super().__init__()
        if num_relations < 1 or steps < 1:
            raise ValidationError(f"GraphQA needs at least one relation and one step, got {num_relations} and {steps}")
        self.num_relations = 2 * num_relations
        self.steps = steps
        dims = {"question": question_dim, "graph": self.num_relations}
        if image_dim:
            dims["image"] = image_dim
        self.fusion_name = fusion
        self.fusion = build_fusion(fusion, dims, hidden_channels, hidden_channels=hidden_channels, dropout=dropout,
                                   modality_dropout=0.0)
        self.token_projection = torch.nn.Linear(question_dim, hidden_channels)
        self.reader = _token_reader(hidden_channels, reader_layers, dropout)
        self.relation_feedback = (torch.nn.Linear(self.num_relations, hidden_channels, bias=False)
                                  if relation_feedback else None)
        self.hops_from_steps = bool(hops_from_steps)
        self.step_queries = torch.nn.ModuleList(torch.nn.Linear(2 * hidden_channels, hidden_channels)
                                                for _ in range(steps))
        self.relation_head = torch.nn.Linear(2 * hidden_channels, self.num_relations)
        self.hop_head = torch.nn.Linear(hidden_channels, steps)

    def instructions(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None = None,
                     present: Tensor | Mapping[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Return the relation weights ``[B, T, 2R]`` and step weights ``[B, T]`` for a batch of questions.

        The fusion strategy reads every modality into one vector; each step then attends over the question's
        tokens with a query built from that vector and the previous step's reading (so "the films directed by
        the director of X" is read in order), and picks relations from what it read.
        """
        fused = self.fusion(features, masks, present).logits
        tokens = features["question"]
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(1)
        token_mask = (masks or {}).get("question")
        if token_mask is None:
            token_mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        keys = self.token_projection(tokens)
        if self.reader is not None:
            keys = self.reader(keys, src_key_padding_mask=~token_mask)
        context = torch.zeros_like(fused)
        chosen = fused.new_zeros(fused.size(0), self.num_relations)
        relation_weights, read = [], fused
        for query_layer in self.step_queries:
            query = query_layer(torch.cat([fused, context], dim=-1))
            if self.relation_feedback is not None:
                query = query + self.relation_feedback(chosen)
            attention = (keys @ torch.tanh(query).unsqueeze(-1)).squeeze(-1) / keys.size(-1) ** 0.5
            attention = attention.masked_fill(~token_mask, float("-inf")).softmax(dim=-1)
            context = (attention.unsqueeze(-1) * keys).sum(dim=1)
            chosen = self.relation_head(torch.cat([context, fused], dim=-1)).softmax(dim=-1)
            relation_weights.append(chosen)
            if self.hops_from_steps:
                read = read + context / len(self.step_queries)
        return torch.stack(relation_weights, dim=1), self.hop_head(read).softmax(dim=-1)

    def forward(self, graph: RelationGraph, seeds: Tensor, features: Mapping[str, Tensor],
                masks: Mapping[str, Tensor] | None = None,
                present: Tensor | Mapping[str, Tensor] | None = None) -> Reasoning:
        """Score every node of ``graph`` as the answer of each question.

        Shapes:
            seeds ``[N, B]`` (the seed entities' weights, e.g. 1.0 on each topic entity) -> :class:`Reasoning`.
        """
        if graph.num_relations != self.num_relations:
            raise ValidationError(f"the graph has {graph.num_relations // 2} relation types, the model was built "
                                  f"for {self.num_relations // 2}; build the RelationGraph with the model's count")
        features = {**features, "graph": graph.relation_profile(seeds)}
        relation_weights, hop_weights = self.instructions(features, masks, present)
        scores = seeds
        steps = [seeds]
        answer = torch.zeros_like(seeds)
        topic = seeds > 0
        for t in range(self.steps):
            # A chain of facts never comes back through the question's own entity: "films that share actors
            # with X" are the other films, and their years are not X's year.
            scores = graph.step(scores, relation_weights[:, t]).masked_fill(topic, 0.0)
            steps.append(scores)
            answer = answer + scores * hop_weights[:, t]
        return Reasoning(answer, steps, relation_weights, hop_weights)


def _token_reader(width: int, layers: int, dropout: float):
    """``layers`` transformer encoder layers over the question's projected tokens (None for 0)."""
    if layers <= 0:
        return None
    layer = torch.nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=2 * width, dropout=dropout,
                                             batch_first=True)
    return torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def trace_path(graph: RelationGraph, reasoning: Reasoning, column: int, node: int) -> list[tuple[int, int, int]]:
    """Read back the strongest chain of facts from a seed to ``node`` for question ``column`` of a batch.

    Returns:
        ``(source, relation, target)`` steps in reading order, each an edge as followed (``relation >= R``: the
        stored edge ``target -r-> source`` read backwards); empty when ``node`` was not reached.
    """
    with torch.no_grad():
        return _trace(graph, reasoning, column, node)


def _trace(graph: RelationGraph, reasoning: Reasoning, column: int, node: int) -> list[tuple[int, int, int]]:
    if float(reasoning.scores[node, column]) <= 0:  # not reached, or a seed
        return []
    hops = reasoning.hop_weights[column]
    contributions = torch.stack([reasoning.steps[t + 1][node, column] * hops[t] for t in range(hops.numel())])
    if float(contributions.max()) <= 0:
        return []
    hop = int(contributions.argmax()) + 1
    path: list[tuple[int, int, int]] = []
    current = node
    for t in range(hop, 0, -1):
        incoming = (graph.target == current).nonzero().view(-1)
        previous = reasoning.steps[t - 1][graph.source[incoming], column]
        weight = reasoning.relation_weights[column, t - 1][graph.relation[incoming]]
        strength = previous * weight
        if incoming.numel() == 0 or float(strength.max()) <= 0:
            return []
        best = incoming[int(strength.argmax())]
        path.append((int(graph.source[best]), int(graph.relation[best]), current))
        current = int(graph.source[best])
    return path[::-1]


__all__ = ["DEFAULT_FUSION", "DEFAULT_STEPS", "GraphQA", "Reasoning", "RelationGraph", "trace_path"]
