"""The entity-and-relation extraction network: a BERT encoder with a BIO tagger and an entity-pair classifier.

:class:`ExtractionNet` is built from an :class:`ExtractionNetConfig`. :meth:`ExtractionNet.encode` runs the
encoder over padded windows of word pieces and gives tag logits per piece (the encoder output beside a
word-shape embedding and, optionally, lexicon match flags); :meth:`ExtractionNet.score_pairs` pools mentions
into entities (log-sum-exp of their mean piece vectors) and scores each candidate pair of a
:class:`PairBatch` per relation type. The training, decoding and pair building around it live in
:mod:`kgmm.tasks.extraction`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kgmm.utils import cpu_bf16_supported

__all__ = ["ExtractionNet", "ExtractionNetConfig", "PairBatch"]


@dataclass
class ExtractionNetConfig:
    """What an :class:`ExtractionNet` is built from.

    Args:
        encoder_config (dict): ``transformers.BertConfig`` keyword arguments of the encoder.
        n_tags (int): BIO tags, ``O`` included.
        n_types (int): entity types (the type embedding has at least one row).
        n_relations (int): relation types (the pair classifier has at least one output).
        n_lexicon (int, optional): lexicon match flags per piece fed to the tagger; 0 for none. (default: 0)
        n_shapes (int, optional): word-shape ids, padding included. (default: 8)
        n_pair_features (int, optional): document and prior features per candidate pair. (default: 20)
    """

    encoder_config: dict
    n_tags: int
    n_types: int
    n_relations: int
    n_lexicon: int = 0
    n_shapes: int = 8
    n_pair_features: int = 20


@dataclass
class PairBatch:
    """Index tensors locating mentions, entities, contexts and candidate pairs in a batch of encoder rows.

    Shapes:
        mention_row, mention_start, mention_end: [M]; the row and ``[start, end)`` pieces of each mention.
        group_members: [G, W]; mention indices of each entity, padded with -1; group_mask: [G, W].
        context_row, context_start, context_end: [C]; pieces between close mentions of a pair.
        pair_contexts: [P, K]; context indices of each pair (C, the "no context" row, where it has none);
            pair_context_mask: [P, K].
        pair_head, pair_tail, head_type, tail_type: [P]; entity indices and entity type ids of each pair.
        features: [P, n_pair_features]. labels: [P, n_relations] or ``None``.
    """

    mention_row: Tensor
    mention_start: Tensor
    mention_end: Tensor
    group_members: Tensor
    group_mask: Tensor
    context_row: Tensor
    context_start: Tensor
    context_end: Tensor
    pair_contexts: Tensor
    pair_context_mask: Tensor
    pair_head: Tensor
    pair_tail: Tensor
    head_type: Tensor
    tail_type: Tensor
    features: Tensor
    labels: Tensor | None
    pair_owner: list[int]  # index of the text in the batch each pair belongs to


class ExtractionNet(nn.Module):
    """Encoder + BIO tagger + entity-pair classifier.

    Args:
        config (ExtractionNetConfig): sizes of the encoder, the tag set, the types and the pair features.
    """

    def __init__(self, config: ExtractionNetConfig) -> None:
        from transformers import BertConfig, BertModel

        super().__init__()
        self.config = config
        bert_config = BertConfig(**config.encoder_config)
        bert_config._attn_implementation = "eager"  # faster than sdpa for padded bf16 batches on CPU
        self.encoder = BertModel(bert_config, add_pooling_layer=False)
        self.bf16 = cpu_bf16_supported()
        hidden = self.encoder.config.hidden_size
        self.shape_embedding = nn.Embedding(config.n_shapes, 16)
        self.dropout = nn.Dropout(0.1)
        self.n_lexicon = config.n_lexicon
        self.tagger = nn.Linear(hidden + 16 + config.n_lexicon, config.n_tags)
        self.type_embedding = nn.Embedding(max(config.n_types, 1), 32)
        self.pair_mlp = nn.Sequential(
            nn.Linear(4 * hidden + 64 + config.n_pair_features, 256),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.Linear(256, max(config.n_relations, 1)),
        )

    def encode(
        self, input_ids: Tensor, attention_mask: Tensor, shape_ids: Tensor, lexicon: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Encode padded windows and tag their pieces (bf16 autocast on CPUs that support it).

        Args:
            input_ids (Tensor): word-piece ids, ``[CLS]`` and ``[SEP]`` included.
            attention_mask (Tensor): 1 on real pieces, 0 on padding.
            shape_ids (Tensor): word-shape id of each piece (0 on specials and padding).
            lexicon (Tensor, optional): lexicon match flags; zeros when the net has flags and none are given.

        Shapes:
            input_ids, attention_mask, shape_ids: [R, L]; lexicon: [R, L, n_lexicon].
            returns: hidden [R, L, H] (float32) and tag logits [R, L, n_tags].
        """
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16 and input_ids.device.type == "cpu"):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        hidden = hidden.float()
        parts = [self.dropout(hidden), self.shape_embedding(shape_ids)]
        if self.n_lexicon:
            parts.append(lexicon if lexicon is not None else hidden.new_zeros(*hidden.shape[:2], self.n_lexicon))
        tag_input = torch.cat(parts, dim=-1)
        return hidden, self.tagger(tag_input)

    def score_pairs(self, hidden: Tensor, batch: PairBatch) -> Tensor:
        """Relation logits of each candidate pair in ``batch``.

        Args:
            hidden (Tensor): encoder output of the rows ``batch`` points into.
            batch (PairBatch): mentions, entities, contexts and pairs located in those rows.

        Shapes:
            hidden: [R, L, H]; returns: [P, max(n_relations, 1)].
        """
        prefix = torch.cat([hidden.new_zeros(hidden.shape[0], 1, hidden.shape[2]), hidden.cumsum(1)], dim=1)
        mention = (prefix[batch.mention_row, batch.mention_end] - prefix[batch.mention_row, batch.mention_start])
        mention = mention / (batch.mention_end - batch.mention_start).clamp(min=1).unsqueeze(-1)
        members = mention[batch.group_members.clamp(min=0)]
        members = members.masked_fill(~batch.group_mask.unsqueeze(-1), float("-inf"))
        entity = torch.logsumexp(members, dim=1)
        context = (prefix[batch.context_row, batch.context_end] - prefix[batch.context_row, batch.context_start])
        context = context / (batch.context_end - batch.context_start).clamp(min=1).unsqueeze(-1)
        context = torch.cat([context, hidden.new_zeros(1, hidden.shape[2])])  # last row: "no context"
        pair_context = context[batch.pair_contexts].masked_fill(~batch.pair_context_mask.unsqueeze(-1), float("-inf"))
        pair_context = pair_context.max(dim=1).values
        pair_context = torch.where(torch.isinf(pair_context), torch.zeros_like(pair_context), pair_context)
        head, tail = entity[batch.pair_head], entity[batch.pair_tail]
        pair_input = torch.cat([
            head, tail, head * tail, pair_context,
            self.type_embedding(batch.head_type), self.type_embedding(batch.tail_type), batch.features,
        ], dim=-1)
        return self.pair_mlp(self.dropout(pair_input))
