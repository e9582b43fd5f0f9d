"""Knowledge-graph embedding link predictors that score every candidate tail at once (1-vs-all).

:class:`KGELinkPredictor` wraps one of PyG's ``torch_geometric.nn.kge`` models (``TransE``, ``DistMult``,
``ComplEx``, ``RotatE``: their embedding tables and score functions) or, for ``rgcn``, an R-GCN encoder
(:class:`kgmm.nn.rgcn.RGCNEncoder`) with a DistMult decoder (Schlichtkrull et al., 2018). PyG's models
score one (head, relation, tail) at a time; :meth:`KGELinkPredictor.score_tails` computes the same score
for every entity as tail in one matrix product (or one ``cdist`` for the distance models), which is what
1-vs-all training with cross-entropy and ranking evaluation need.

Relations are reciprocal: the model holds ``2 * num_relations`` relation embeddings, where relation
``r + num_relations`` is the inverse of ``r``. Predicting the head of ``(?, r, t)`` is predicting the
tail of ``(t, r⁻¹, ?)`` (:meth:`KGELinkPredictor.score_heads`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from kgmm.errors import ValidationError

__all__ = ["KGE_MODELS", "KGEConfig", "KGELinkPredictor"]

KGE_MODELS = ("complex", "distmult", "rotate", "transe", "rgcn")
_PYG_MODELS = {"transe": "TransE", "distmult": "DistMult", "complex": "ComplEx", "rotate": "RotatE"}


@dataclass
class KGEConfig:
    """What a :class:`KGELinkPredictor` is built from (saved as JSON beside its weights).

    Args:
        model (str): one of ``complex``, ``distmult``, ``rotate``, ``transe``, ``rgcn``.
        num_nodes (int): number of entities.
        num_relations (int): number of relation types, without their inverses.
        hidden_channels (int): embedding size (per real and per imaginary part for ``complex``/``rotate``).
        dropout (float, optional): dropout on the query (head ∘ relation) before it meets the tails, during
            training. (default: ``0.0``)
        margin (float, optional): ``transe``/``rotate``: the score is ``margin - distance``. (default: ``1.0``)
        p_norm (float, optional): ``transe``: the norm of the distance. (default: ``1.0``)
        num_layers (int, optional): ``rgcn``: message-passing layers. (default: ``2``)
        num_bases (int, optional): ``rgcn``: basis decomposition of the relation weights. (default: ``None``)
        encoder_dropout (float, optional): ``rgcn``: dropout inside the encoder. (default: ``0.0``)
    """

    model: str
    num_nodes: int
    num_relations: int
    hidden_channels: int
    dropout: float = 0.0
    margin: float = 1.0
    p_norm: float = 1.0
    num_layers: int = 2
    num_bases: int | None = None
    encoder_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.model not in KGE_MODELS:
            raise ValidationError(f"no KGE model {self.model!r}; available: {', '.join(KGE_MODELS)}")
        for name in ("num_nodes", "num_relations", "hidden_channels"):
            if int(getattr(self, name)) < 1:
                raise ValidationError(f"expected {name} >= 1, got {getattr(self, name)}; the graph needs at least one "
                                      "entity and one relation, and embeddings at least one channel")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> KGEConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(f"unknown KGE config keys {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**data)


class KGELinkPredictor(torch.nn.Module):
    """Scores (head, relation, tail) triples, one at a time or against every tail at once.

    Args:
        config (KGEConfig): the model and its sizes.

    Shapes:
        - **forward:** head_index :math:`(B)`, rel_type :math:`(B)`, tail_index :math:`(B)` -> :math:`(B)`
        - **score_tails:** head_index :math:`(B)`, rel_type :math:`(B)` -> :math:`(B, N)`
        - **set_graph (rgcn):** edge_index :math:`(2, E)`, edge_type :math:`(E)`
    """

    def __init__(self, config: KGEConfig) -> None:
        super().__init__()
        self.config = config
        self.num_nodes = config.num_nodes
        self.num_relations = config.num_relations
        num_relation_embeddings = 2 * config.num_relations  # each relation and its inverse
        if config.model == "rgcn":
            from kgmm.nn.rgcn import RGCNEncoder

            self.kge = None
            self.encoder = RGCNEncoder(
                config.num_nodes, config.num_relations, config.hidden_channels,
                num_layers=config.num_layers, num_bases=config.num_bases, dropout=config.encoder_dropout,
            )
            self.relation_diagonal = torch.nn.Embedding(num_relation_embeddings, config.hidden_channels)
            torch.nn.init.xavier_uniform_(self.relation_diagonal.weight)
            self.register_buffer("edge_index", torch.empty(2, 0, dtype=torch.long), persistent=False)
            self.register_buffer("edge_type", torch.empty(0, dtype=torch.long), persistent=False)
        else:
            import torch_geometric.nn.kge as pyg_kge

            cls = getattr(pyg_kge, _PYG_MODELS[config.model])
            options = {}
            if config.model in ("transe", "rotate", "distmult"):
                options["margin"] = config.margin
            if config.model == "transe":
                options["p_norm"] = config.p_norm
            self.kge = cls(config.num_nodes, num_relation_embeddings, config.hidden_channels, **options)
        self.query_dropout = torch.nn.Dropout(config.dropout)

    def reset_parameters(self) -> None:
        if self.kge is not None:
            self.kge.reset_parameters()
        else:
            self.encoder.reset_parameters()
            torch.nn.init.xavier_uniform_(self.relation_diagonal.weight)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.config.model}, {self.num_nodes}, num_relations={self.num_relations}, "
                f"hidden_channels={self.config.hidden_channels})")

    def set_graph(self, edge_index: Tensor, edge_type: Tensor) -> None:
        """Set the (training) graph the ``rgcn`` encoder passes messages over; other models ignore it.

        Args:
            edge_index (Tensor): head and tail index of each edge, shape ``[2, E]``.
            edge_type (Tensor): relation index of each edge (without inverses), shape ``[E]``.
        """
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValidationError(f"expected edge_index of shape [2, E], got {list(edge_index.shape)}")
        if edge_type.shape != (edge_index.size(1),):
            raise ValidationError(f"expected edge_type of shape [{edge_index.size(1)}], got {list(edge_type.shape)}")
        if self.kge is None:
            self.edge_index = edge_index.long().to(self.relation_diagonal.weight.device)
            self.edge_type = edge_type.long().to(self.relation_diagonal.weight.device)

    def entity_states(self) -> tuple[Tensor, ...]:
        """Return the entity representations the score functions use: ``(real,)`` or ``(real, imaginary)``.

        For ``rgcn`` this runs the encoder over the graph of :meth:`set_graph`; compute it once and pass it to
        :meth:`score_tails` when scoring many batches without gradients.
        """
        if self.kge is None:
            if self.edge_index.numel() == 0:
                raise ValidationError("the rgcn link predictor has no graph to encode; call set_graph(edge_index, "
                                      "edge_type) with the training triples first")
            return (self.encoder(self.edge_index, self.edge_type),)
        if self.config.model in ("complex", "rotate"):
            return self.kge.node_emb.weight, self.kge.node_emb_im.weight
        return (self.kge.node_emb.weight,)

    def _relation(self, rel_type: Tensor) -> Tensor:
        table = self.relation_diagonal if self.kge is None else self.kge.rel_emb
        return table(rel_type)

    def forward(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor) -> Tensor:
        """Score each triple (the same value as PyG's ``model(head, rel, tail)`` for the wrapped model)."""
        if self.kge is not None:
            return self.kge(head_index, rel_type, tail_index)
        (x,) = self.entity_states()
        return (x[head_index] * self._relation(rel_type) * x[tail_index]).sum(-1)

    def score_tails(self, head_index: Tensor, rel_type: Tensor, states: tuple[Tensor, ...] | None = None) -> Tensor:
        """Score every entity as the tail of each ``(head, relation, ?)`` query: a ``[B, num_nodes]`` matrix.

        Args:
            head_index (Tensor): head entity indices, shape ``[B]``.
            rel_type (Tensor): relation indices in ``[0, 2 * num_relations)``, shape ``[B]``.
            states (tuple of Tensor, optional): :meth:`entity_states`, when already computed.
        """
        states = self.entity_states() if states is None else states
        model = self.config.model
        relation = self._relation(rel_type)
        if model in ("distmult", "rgcn"):
            (x,) = states
            return self.query_dropout(x[head_index] * relation) @ x.t()
        if model == "complex":
            x_re, x_im = states
            rel_im = self.kge.rel_emb_im(rel_type)
            head_re, head_im = x_re[head_index], x_im[head_index]
            query_re = self.query_dropout(head_re * relation - head_im * rel_im)
            query_im = self.query_dropout(head_im * relation + head_re * rel_im)
            return query_re @ x_re.t() + query_im @ x_im.t()
        if model == "transe":
            (x,) = states
            p = self.config.p_norm
            x = F.normalize(x, p=p, dim=-1)
            query = self.query_dropout(x[head_index]) + relation
            return -_cdist(query, x, p)
        # rotate: rotate the head by the relation's phases, then L2 distance over real and imaginary parts
        x_re, x_im = states
        cos, sin = torch.cos(relation), torch.sin(relation)
        head_re, head_im = x_re[head_index], x_im[head_index]
        query = torch.cat([cos * head_re - sin * head_im, cos * head_im + sin * head_re], dim=-1)
        return self.config.margin - _cdist(self.query_dropout(query), torch.cat([x_re, x_im], dim=-1), 2.0)

    def score_heads(self, rel_type: Tensor, tail_index: Tensor, states: tuple[Tensor, ...] | None = None) -> Tensor:
        """Score every entity as the head of each ``(?, relation, tail)`` query, through the inverse relation.

        Args:
            rel_type (Tensor): relation indices in ``[0, num_relations)``, shape ``[B]``.
            tail_index (Tensor): tail entity indices, shape ``[B]``.
        """
        return self.score_tails(tail_index, rel_type + self.num_relations, states)

    def n3_penalty(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                   states: tuple[Tensor, ...] | None = None) -> Tensor:
        """The N3 regulariser of Lacroix et al. (2018): the mean over the batch of the summed cubed moduli of the
        head, relation and tail factors (entity factors only for ``rotate``, whose relations are phases)."""
        states = self.entity_states() if states is None else states
        model = self.config.model
        if model in ("complex", "rotate"):
            x_re, x_im = states
            modulus = torch.sqrt(x_re**2 + x_im**2 + 1e-12)
            penalty = modulus[head_index].pow(3).sum() + modulus[tail_index].pow(3).sum()
            if model == "complex":
                rel = torch.sqrt(self.kge.rel_emb(rel_type) ** 2 + self.kge.rel_emb_im(rel_type) ** 2 + 1e-12)
                penalty = penalty + rel.pow(3).sum()
        else:
            (x,) = states
            penalty = (x[head_index].abs().pow(3).sum() + x[tail_index].abs().pow(3).sum()
                       + self._relation(rel_type).abs().pow(3).sum())
        return penalty / max(head_index.numel(), 1)


def _cdist(query: Tensor, keys: Tensor, p: float) -> Tensor:
    # The exact (not matrix-product) Euclidean path, so scores match the one-at-a-time forward.
    return torch.cdist(query.unsqueeze(0), keys.unsqueeze(0), p=p,
                       compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)
