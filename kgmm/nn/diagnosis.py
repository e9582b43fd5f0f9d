"""Diagnosis model: graph evidence over the label -> finding graph, added to a fusion of the case's modalities.

    support[b, c] = sum over edges (c -> f) of present[b, f] * w_plus(e)
    against[b, c] = sum over edges (c -> f) of absent[b, f]  * w_minus(e)
    graph[b, c]   = support - against                                 (one round of findings -> labels messages)
    logits        = fusion(findings, text, image, ...).logits + graph

The edge weights start where a noisy naive-Bayes reading of the graph puts them: a finding the label explains
is present with probability ``p1`` (about one in three), one it does not explain with ``p0`` (rare), so a
present linked finding is worth ``log(p1 / p0)`` and an absent expected one costs ``log((1 - p0) / (1 - p1))``,
per relation type, with a learned correction per edge; untrained (knowledge-only), support grows by
``log(C / labels linked to the finding)`` (a finding half the labels explain says less than one only this label
explains) (``exp`` keeps support positive and cost positive, so
the explanation of a label always reads "these findings speak for it, these expected ones are missing").
Untrained, the module alone is the knowledge-only ranking; trained, the same weights explain the prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from kgmm.nn.fusion import build_fusion

P_LINKED = 0.3
P_UNLINKED = 0.01


def prior_weights(p_linked: float = P_LINKED, p_unlinked: float = P_UNLINKED) -> tuple[float, float]:
    """``(support, cost)`` of one linked finding, present or absent, under the noisy naive-Bayes reading."""
    return math.log(p_linked / p_unlinked), math.log((1 - p_unlinked) / (1 - p_linked))


class GraphEvidence(torch.nn.Module):
    """Findings -> labels message passing over the knowledge graph's label -> finding edges.

    Args:
        edges (Tensor): ``[3, E]`` long: label index, finding index, relation-type index of each edge.
        num_labels (int): ``C``.
        num_findings (int): ``F``.
        num_relations (int): ``R``.
        specificity (bool): start each edge's support higher the fewer labels its finding is linked to (the
            knowledge-only ranking, which has nothing else to go on; a trained model learns its weights).
    """

    def __init__(self, edges: Tensor, num_labels: int, num_findings: int, num_relations: int, *,
                 specificity: bool = False) -> None:
        super().__init__()
        self.num_labels, self.num_findings, self.num_relations = num_labels, num_findings, num_relations
        self.register_buffer("edges", edges.long().reshape(3, -1))
        support, cost = prior_weights()
        self.relation_support = torch.nn.Parameter(torch.full((num_relations,), math.log(support)))
        self.relation_cost = torch.nn.Parameter(torch.full((num_relations,), math.log(cost)))
        edge_support = torch.zeros(self.edges.size(1))
        if specificity:
            # A finding most labels explain says little: support log(p1/p0) + log(C / labels linked to it).
            linked = torch.zeros(num_findings).index_add_(0, self.edges[1], torch.ones(self.edges.size(1)))
            specific = torch.log(num_labels / linked.clamp(min=1.0))[self.edges[1]].clamp(min=0.0)
            edge_support = torch.log1p(specific / support)
        self.edge_support = torch.nn.Parameter(edge_support)
        self.edge_cost = torch.nn.Parameter(torch.zeros(self.edges.size(1)))

    def edge_weights(self) -> tuple[Tensor, Tensor]:
        """``(support, cost)`` per edge, both ``[E]`` and positive."""
        relation = self.edges[2]
        return ((self.relation_support[relation] + self.edge_support).exp(),
                (self.relation_cost[relation] + self.edge_cost).exp())

    def contributions(self, present: Tensor, absent: Tensor) -> tuple[Tensor, Tensor]:
        """Per-edge ``(support, cost)`` for each case: ``[B, E]`` each (zero where the finding is not observed)."""
        finding = self.edges[1]
        support, cost = self.edge_weights()
        return present[:, finding] * support, absent[:, finding] * cost

    def forward(self, present: Tensor, absent: Tensor) -> Tensor:
        """``[B, C]`` graph scores from ``present`` / ``absent`` ``[B, F]`` (1 where observed so)."""
        support, cost = self.contributions(present, absent)
        scores = torch.zeros(present.size(0), self.num_labels, dtype=present.dtype, device=present.device)
        return scores.index_add_(1, self.edges[0], support - cost)


class DiagnosisNet(torch.nn.Module):
    """Graph evidence plus a fusion strategy over the case's modalities.

    Args:
        modality_dims (dict of str to int): modality -> width (``findings``, ``text``, ``image`` ...).
        num_labels (int): ``C``.
        edges (Tensor): ``[3, E]`` label -> finding edges (see :class:`GraphEvidence`); ``E`` may be 0.
        num_findings (int): ``F``, the width of the ``present`` / ``absent`` vectors.
        num_relations (int): relation types on the edges.
        fusion (str): a fusion strategy name (``kgmm.nn.fusion``).
        use_graph (bool): add the graph evidence (False: the fusion alone, the "without the graph" model).
        specificity (bool): see :class:`GraphEvidence` (the knowledge-only model).
        fusion_options: passed to :func:`kgmm.nn.fusion.build_fusion` (``hidden_channels``, ``dropout`` ...).
    """

    def __init__(self, modality_dims: Mapping[str, int], num_labels: int, edges: Tensor, num_findings: int,
                 num_relations: int, *, fusion: str = "early-concat", use_graph: bool = True,
                 specificity: bool = False, **fusion_options) -> None:
        super().__init__()
        self.fusion = build_fusion(fusion, modality_dims, num_labels, **fusion_options) if modality_dims else None
        self.graph = (GraphEvidence(edges, num_labels, num_findings, max(1, num_relations), specificity=specificity)
                      if use_graph else None)
        self.label_bias = torch.nn.Parameter(torch.zeros(num_labels))

    def forward(self, features: Mapping[str, Tensor], present: Tensor, absent: Tensor,
                masks: Mapping[str, Tensor] | None = None) -> Tensor:
        """``[B, C]`` label scores (before the temperature)."""
        logits = self.label_bias.expand(present.size(0), -1)
        if self.fusion is not None and features:
            logits = logits + self.fusion(features, present=masks).logits
        if self.graph is not None:
            logits = logits + self.graph(present, absent)
        return logits


def graph_edges(edges: Sequence[tuple[int, int, int]]) -> Tensor:
    """``[3, E]`` long tensor from ``(label, finding, relation)`` index triples."""
    if not edges:
        return torch.zeros(3, 0, dtype=torch.long)
    return torch.tensor(list(edges), dtype=torch.long).t().contiguous()


__all__ = ["DiagnosisNet", "GraphEvidence", "P_LINKED", "P_UNLINKED", "graph_edges", "prior_weights"]
